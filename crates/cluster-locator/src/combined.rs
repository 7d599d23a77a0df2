use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use kubeauth_core::ClusterDetails;

use crate::error::MethodName;
use crate::{AppConfig, ConfigLocator, LocalKubectlProxyLocator, LocatorError, ResolveContext};

/// The future a locator returns: the clusters it found.
pub type ClustersFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<ClusterDetails>, LocatorError>> + Send + 'a>>;

/// Finds clusters. Implement it for a method of your own and add it to a [`CombinedLocator`].
pub trait ClusterLocator: Send + Sync {
    /// The clusters found now. Locators that ask a remote API keep their last good answer themselves.
    fn clusters(&self) -> ClustersFuture<'_>;
}

/// Every configured locator method, run together.
///
/// With `clusterLocatorContinueOnError: false` (the default) one failing method fails the lookup; with `true`
/// it is logged and the others' clusters are returned. Two clusters with the same name are always an error that
/// names where each came from.
#[derive(Clone, Default)]
pub struct CombinedLocator {
    methods: Vec<(String, Arc<dyn ClusterLocator>)>,
    continue_on_error: bool,
}

impl std::fmt::Debug for CombinedLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CombinedLocator")
            .field("methods", &self.methods.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("continue_on_error", &self.continue_on_error)
            .finish()
    }
}

impl CombinedLocator {
    /// The locators of `kubernetes.clusterLocatorMethods`. Every value is resolved and every `config` cluster
    /// checked here, so a wrong config is an error now, not at the first request.
    pub fn from_config(config: &AppConfig, ctx: &ResolveContext) -> Result<Self, LocatorError> {
        let origin = config.origin.as_deref();
        let ctx = match origin.and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => ctx.clone().with_base_dir(dir),
            _ => ctx.clone(),
        };
        let k = &config.kubernetes;
        let continue_on_error = match &k.cluster_locator_continue_on_error {
            Some(v) => v.resolve(&ctx).map_err(|message| LocatorError::Key {
                origin: origin.map(Path::to_owned),
                key: "clusterLocatorContinueOnError".into(),
                message,
            })?,
            None => false,
        };
        let mut combined = Self { methods: Vec::new(), continue_on_error };
        for (index, method) in k.cluster_locator_methods.iter().enumerate() {
            let name = MethodName(index, &method.kind).to_string();
            let method_error =
                |message: String| LocatorError::Method { origin: origin.map(Path::to_owned), index, message };
            let locator: Arc<dyn ClusterLocator> = match method.kind.as_str() {
                "config" => {
                    let clusters = method
                        .clusters
                        .as_deref()
                        .ok_or_else(|| method_error("type config needs a `clusters` list".into()))?;
                    Arc::new(ConfigLocator::new(index, clusters, &ctx, origin)?)
                }
                "localKubectlProxy" => {
                    if method.clusters.is_some() {
                        return Err(method_error("type localKubectlProxy takes no `clusters`".into()));
                    }
                    Arc::new(LocalKubectlProxyLocator::new(name.clone()))
                }
                "catalog" | "gke" => {
                    return Err(method_error(format!(
                        "type `{}` is not built into this version of kubeauth; available: config, localKubectlProxy",
                        method.kind
                    )));
                }
                other => {
                    return Err(method_error(format!(
                        "unknown type `{other}`; expected config, localKubectlProxy, catalog or gke"
                    )));
                }
            };
            combined.methods.push((name, locator));
        }
        Ok(combined)
    }

    /// Adds a locator of your own; `name` identifies it in messages.
    pub fn with_locator(mut self, name: impl Into<String>, locator: Arc<dyn ClusterLocator>) -> Self {
        self.methods.push((name.into(), locator));
        self
    }

    /// Sets `clusterLocatorContinueOnError`.
    pub fn continue_on_error(mut self, yes: bool) -> Self {
        self.continue_on_error = yes;
        self
    }

    /// How many locator methods there are.
    pub fn len(&self) -> usize {
        self.methods.len()
    }

    /// Whether there is no locator method.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    /// Every cluster of every method, in method order.
    pub async fn clusters(&self) -> Result<Vec<ClusterDetails>, LocatorError> {
        let results = futures::future::join_all(self.methods.iter().map(|(_, l)| l.clusters())).await;
        let mut all: Vec<ClusterDetails> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for ((name, _), result) in self.methods.iter().zip(results) {
            let clusters = match result {
                Ok(clusters) => clusters,
                Err(error) if self.continue_on_error => {
                    tracing::warn!(locator = %name, error = %kubeauth_core::report(&error), "cluster locator failed; going on without its clusters (clusterLocatorContinueOnError)");
                    continue;
                }
                Err(error @ LocatorError::Locator { .. }) => return Err(error),
                Err(error) => return Err(LocatorError::Locator { method: name.clone(), source: Box::new(error) }),
            };
            for mut cluster in clusters {
                if cluster.source.is_empty() {
                    cluster.source = name.clone();
                }
                if let Some(first) = seen.get(&cluster.name) {
                    return Err(LocatorError::DuplicateName {
                        name: cluster.name,
                        first: first.clone(),
                        second: cluster.source,
                    });
                }
                seen.insert(cluster.name.clone(), cluster.source.clone());
                all.push(cluster);
            }
        }
        Ok(all)
    }
}

impl ClusterLocator for CombinedLocator {
    fn clusters(&self) -> ClustersFuture<'_> {
        Box::pin(CombinedLocator::clusters(self))
    }
}
