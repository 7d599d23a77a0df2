use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
#[cfg(any(feature = "gke", feature = "catalog"))]
use std::time::Duration;

use kubeauth_core::{ClusterDetails, ProviderSide};

use crate::error::MethodName;
use crate::{AppConfig, ConfigLocator, LocalKubectlProxyLocator, LocatorError, ResolveContext};
#[cfg(feature = "gke")]
use crate::{GkeLocator, GkeSettings, LocatorMethodConfig};

/// Where the gke locator gets the Google access token it lists clusters with (the googleServiceAccount
/// provider's identity; the facade wires it).
pub trait AccessTokenSource: Send + Sync + 'static {
    /// A token with the `cloud-platform` scope; `context` names the caller in errors.
    fn access_token<'a>(&'a self, context: &'a str) -> kubeauth_core::CredentialFuture<'a>;
}

/// The error of a method whose locator this build leaves out.
#[cfg(any(not(feature = "gke"), not(feature = "catalog"), not(feature = "kubeconfig")))]
fn left_out(kind: &str) -> String {
    format!(
        "type {kind} needs the `{kind}` feature of kubeauth-cluster-locator (and of kubeauth), which this build leaves out"
    )
}

/// What some locator methods need from outside the config: the gke method's Google token, the registry's word
/// on the catalog's clusters.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct LocatorServices {
    /// The token the gke method lists clusters with.
    pub google_token: Option<Arc<dyn AccessTokenSource>>,
    /// The catalog method's check of each entity's provider.
    pub provider_check: Option<ProviderCheck>,
}

/// The toolkit's registry on one cluster: the side of its provider, or why it cannot be served (no such
/// provider, a wrong setting). The catalog method skips the entities it refuses.
pub type ProviderCheck = Arc<dyn Fn(&ClusterDetails) -> Result<ProviderSide, String> + Send + Sync>;

impl std::fmt::Debug for LocatorServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocatorServices")
            .field("google_token", &self.google_token.is_some())
            .field("provider_check", &self.provider_check.is_some())
            .finish()
    }
}

/// A list of located clusters, shared: a locator whose list did not change hands out the same one again,
/// which lets its users skip work (`Arc::ptr_eq`). Make one from a `Vec` with `.into()`.
pub type Located = Arc<[ClusterDetails]>;

/// The future a locator returns: the clusters it found.
pub type ClustersFuture<'a> = Pin<Box<dyn Future<Output = Result<Located, LocatorError>> + Send + 'a>>;

/// Finds clusters. Implement it for a method of your own and add it to a [`CombinedLocator`].
pub trait ClusterLocator: Send + Sync {
    /// The clusters found now. Locators that ask a remote API keep their last good answer themselves, and
    /// hand out the same list while it is unchanged.
    fn clusters(&self) -> ClustersFuture<'_>;
}

/// Every configured locator method, run together.
///
/// With `clusterLocatorContinueOnError: false` (the default) one failing method fails the lookup; with `true`
/// it is logged and the others' clusters are returned. A cluster found under a name already taken (a second
/// `config` entry, a catalog entity or a GKE cluster named like a config cluster) is skipped with a warning naming
/// both sources, as Backstage goes on: the first one stays.
#[derive(Clone, Default)]
pub struct CombinedLocator {
    methods: Vec<Method>,
    continue_on_error: bool,
    last: Arc<Mutex<Option<LastCombined>>>,
}

/// One method: its name in messages, the prefix of its clusters' names (`namePrefix`), its locator.
#[derive(Clone)]
struct Method {
    name: String,
    prefix: String,
    locator: Arc<dyn ClusterLocator>,
}

/// The last combined list, and the methods' lists it was made from.
type LastCombined = (Vec<Located>, Located);

impl std::fmt::Debug for CombinedLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CombinedLocator")
            .field("methods", &self.methods.iter().map(|m| &m.name).collect::<Vec<_>>())
            .field("continue_on_error", &self.continue_on_error)
            .finish()
    }
}

impl CombinedLocator {
    /// The locators of `kubernetes.clusterLocatorMethods`. Every value is resolved and every `config` cluster
    /// checked here, so a wrong config is an error now, not at the first request.
    pub fn from_config(config: &AppConfig, ctx: &ResolveContext) -> Result<Self, LocatorError> {
        Self::from_config_with(config, ctx, &LocatorServices::default())
    }

    /// Like [`from_config`](Self::from_config), with what methods such as gke need (the facade's
    /// `kubeauth::locator` wires it).
    pub fn from_config_with(
        config: &AppConfig,
        ctx: &ResolveContext,
        services: &LocatorServices,
    ) -> Result<Self, LocatorError> {
        #[cfg(not(any(feature = "gke", feature = "catalog")))]
        let _ = services;
        let origin = config.origin.as_deref();
        let ctx = config.resolve_context(ctx);
        let k = &config.kubernetes;
        let continue_on_error = match &k.cluster_locator_continue_on_error {
            Some(v) => {
                v.resolve_optional(&ctx).map(Option::unwrap_or_default).map_err(|message| LocatorError::Key {
                    origin: origin.map(Path::to_owned),
                    key: "kubernetes.clusterLocatorContinueOnError".into(),
                    message,
                })?
            }
            None => false,
        };
        let mut combined = Self { methods: Vec::new(), continue_on_error, last: Arc::default() };
        // The names the config fixes (config clusters, localKubectlProxy's), and where: one twice is said at once.
        let mut config_names: HashMap<String, String> = HashMap::new();
        for (index, method) in k.cluster_locator_methods.iter().enumerate() {
            let name = MethodName(index, &method.kind).to_string();
            let method_error =
                |message: String| LocatorError::Method { origin: origin.map(Path::to_owned), index, message };
            let prefix = match &method.name_prefix {
                Some(prefix) => prefix
                    .resolve_optional(&ctx)
                    .map_err(|m| method_error(format!("namePrefix: {m}")))?
                    .unwrap_or_default(),
                None => String::new(),
            };
            let locator: Arc<dyn ClusterLocator> = match method.kind.as_str() {
                "config" => {
                    let clusters = method
                        .clusters
                        .as_deref()
                        .ok_or_else(|| method_error("type config needs a `clusters` list".into()))?;
                    let locator = ConfigLocator::new(index, clusters, &ctx, origin)?;
                    for cluster in locator.list().iter() {
                        let source = if cluster.source.is_empty() { name.clone() } else { cluster.source.clone() };
                        fixed_name(&mut config_names, &format!("{prefix}{}", cluster.name), source);
                    }
                    Arc::new(locator)
                }
                "localKubectlProxy" => {
                    if method.clusters.is_some() || method.project_id.is_some() {
                        return Err(method_error("type localKubectlProxy takes no `clusters`".into()));
                    }
                    let local = format!("{prefix}{}", LocalKubectlProxyLocator::CLUSTER_NAME);
                    fixed_name(&mut config_names, &local, name.clone());
                    Arc::new(LocalKubectlProxyLocator::new(name.clone()))
                }
                #[cfg(not(feature = "gke"))]
                "gke" => return Err(method_error(left_out("gke"))),
                #[cfg(not(feature = "catalog"))]
                "catalog" => return Err(method_error(left_out("catalog"))),
                #[cfg(not(feature = "kubeconfig"))]
                "kubeconfig" => return Err(method_error(left_out("kubeconfig"))),
                #[cfg(feature = "kubeconfig")]
                "kubeconfig" => {
                    if method.clusters.is_some() || method.project_id.is_some() {
                        return Err(method_error("type kubeconfig takes no `clusters` or `projectId`".into()));
                    }
                    let settings = match &method.path {
                        Some(path) => crate::KubeconfigSettings::file(
                            ctx.path(&path.resolve(&ctx).map_err(|m| method_error(format!("path: {m}")))?),
                        ),
                        None => crate::KubeconfigSettings::kubectl_default(|name| ctx.var(name)),
                    };
                    let settings = settings.with_contexts(method.contexts.clone().unwrap_or_default());
                    Arc::new(crate::KubeconfigLocator::new(settings, name.clone())?)
                }
                #[cfg(feature = "gke")]
                "gke" => {
                    let settings = gke_settings(method, &ctx).map_err(&method_error)?;
                    let token = services.google_token.clone().ok_or_else(|| {
                        method_error(
                            "type gke needs a Google token source: build the locator with kubeauth::locator".into(),
                        )
                    })?;
                    Arc::new(GkeLocator::new(settings, name.clone(), token))
                }
                #[cfg(feature = "catalog")]
                "catalog" => {
                    if method.clusters.is_some() || method.project_id.is_some() {
                        return Err(method_error("type catalog takes no `clusters` or `projectId`".into()));
                    }
                    let client = crate::catalog::client_from_config(config, &ctx)?;
                    let allow_skip = match &method.dangerously_allow_skip_tls_verify {
                        Some(v) => v
                            .resolve_optional(&ctx)
                            .map_err(|m| method_error(format!("dangerouslyAllowSkipTLSVerify: {m}")))?
                            .unwrap_or_default(),
                        None => false,
                    };
                    let auth_metadata = method.dangerously_allow_auth_metadata.clone().unwrap_or_default();
                    if let Some((i, key)) =
                        auth_metadata.iter().enumerate().find(|(_, k)| !k.starts_with("kubernetes.io/"))
                    {
                        return Err(method_error(format!(
                            "dangerouslyAllowAuthMetadata[{i}]: `{key}` is not a kubernetes.io/ annotation"
                        )));
                    }
                    let rules = crate::catalog::CatalogRules {
                        allowed_urls: method.dangerously_allow_cluster_urls.clone().unwrap_or_default(),
                        allow_skip_tls_verify: allow_skip,
                        server_side_urls: method.dangerously_allow_server_side_providers.clone().unwrap_or_default(),
                        auth_metadata,
                    };
                    let refresh = Duration::from_secs(60 * method.refresh_interval_minutes.unwrap_or(5));
                    let mut locator = crate::catalog::CatalogLocator::new(client, rules, refresh, name.clone());
                    if let Some(check) = &services.provider_check {
                        locator = locator.with_provider_check(check.clone());
                    }
                    Arc::new(locator)
                }
                other => {
                    return Err(method_error(format!(
                        "unknown type `{other}`; expected config, localKubectlProxy, catalog, gke or kubeconfig"
                    )));
                }
            };
            combined.methods.push(Method { name, prefix, locator });
        }
        Ok(combined)
    }

    /// Adds a locator of your own; `name` identifies it in messages.
    pub fn with_locator(mut self, name: impl Into<String>, locator: Arc<dyn ClusterLocator>) -> Self {
        self.methods.push(Method { name: name.into(), prefix: String::new(), locator });
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

    /// Every cluster of every method, in method order. While no method's list changed, the same combined list
    /// is handed out again, without a copy.
    pub async fn clusters(&self) -> Result<Located, LocatorError> {
        let results = futures::future::join_all(self.methods.iter().map(|m| m.locator.clusters())).await;
        if results.iter().all(Result::is_ok) {
            let lists: Vec<&Located> = results.iter().flatten().collect();
            let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((inputs, combined)) = last.as_ref()
                && inputs.len() == lists.len()
                && inputs.iter().zip(&lists).all(|(a, b)| Arc::ptr_eq(a, b))
            {
                return Ok(combined.clone());
            }
        }
        let inputs: Vec<Located> = results.iter().flatten().cloned().collect();
        let complete = inputs.len() == results.len();
        let mut all: Vec<ClusterDetails> = Vec::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        for (Method { name, prefix, .. }, result) in self.methods.iter().zip(results) {
            let clusters = match result {
                Ok(clusters) => clusters,
                Err(error) if self.continue_on_error => {
                    tracing::warn!(locator = %name, error = %kubeauth_core::report(&error), "cluster locator failed; going on without its clusters (clusterLocatorContinueOnError)");
                    continue;
                }
                Err(error @ LocatorError::Locator { .. }) => return Err(error),
                Err(error) => return Err(LocatorError::Locator { method: name.clone(), source: Box::new(error) }),
            };
            for cluster in clusters.iter() {
                let mut cluster = cluster.clone();
                if !prefix.is_empty() {
                    cluster.name = format!("{prefix}{}", cluster.name);
                }
                if cluster.source.is_empty() {
                    cluster.source = name.clone();
                }
                if let Some(first) = seen.get(&cluster.name) {
                    // A cluster found later (a catalog entity named like a config cluster) never displaces
                    // nor takes down the one found first.
                    tracing::warn!(cluster = %cluster.name, first = %first, skipped = %cluster.source, "two clusters of the same name; keeping the first");
                    continue;
                }
                seen.insert(cluster.name.clone(), cluster.source.clone());
                all.push(cluster);
            }
        }
        let combined: Located = all.into();
        if complete {
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((inputs, combined.clone()));
        }
        Ok(combined)
    }
}

impl ClusterLocator for CombinedLocator {
    fn clusters(&self) -> ClustersFuture<'_> {
        Box::pin(CombinedLocator::clusters(self))
    }
}

/// Takes `name` for the cluster of `source`, or warns (at start, naming both) when a cluster of the config has
/// it already: the first one is kept when the lists are combined.
fn fixed_name(names: &mut HashMap<String, String>, name: &str, source: String) {
    match names.get(name) {
        Some(first) => {
            tracing::warn!(cluster = %name, %first, skipped = %source, "two clusters of the same name; keeping the first");
        }
        None => {
            names.insert(name.to_owned(), source);
        }
    }
}

/// The resolved settings of a gke method; errors name the key.
#[cfg(feature = "gke")]
fn gke_settings(method: &LocatorMethodConfig, ctx: &ResolveContext) -> Result<GkeSettings, String> {
    // An unset variable makes the key absent, as in Backstage; a required key then says it is missing.
    let string = |key: &str, value: &Option<crate::ConfigString>| -> Result<Option<String>, String> {
        Ok(value.as_ref().map(|v| v.resolve_optional(ctx).map_err(|m| format!("{key}: {m}"))).transpose()?.flatten())
    };
    let boolean = |key: &str, value: &Option<crate::ConfigBool>| -> Result<bool, String> {
        Ok(value
            .as_ref()
            .map(|v| v.resolve_optional(ctx).map_err(|m| format!("{key}: {m}")))
            .transpose()?
            .flatten()
            .unwrap_or_default())
    };
    if method.clusters.is_some() {
        return Err("type gke takes no `clusters`: it lists them from the GKE API".into());
    }
    let project_id = string("projectId", &method.project_id)?
        .filter(|p| !p.trim().is_empty())
        .ok_or("projectId: missing: type gke needs the Google Cloud project to list")?;
    let mut settings = GkeSettings::new(project_id);
    if let Some(auth_provider) = string("authProvider", &method.auth_provider)? {
        // As Backstage: `googleServiceAccount`, or else `google` (whatever else is written), with a warning.
        if auth_provider != "googleServiceAccount" && auth_provider != "google" {
            tracing::warn!(
                "authProvider: `{auth_provider}` is not google or googleServiceAccount; the gke clusters use google, as in Backstage"
            );
        }
        settings.auth_provider =
            if auth_provider == "googleServiceAccount" { auth_provider } else { "google".to_owned() };
    }
    if let Some(minutes) = method.refresh_interval_minutes {
        if minutes == 0 {
            return Err("refreshIntervalMinutes: must be at least 1".into());
        }
        settings.refresh_interval = Duration::from_secs(minutes * 60);
    }
    if let Some(region) = string("region", &method.region)? {
        settings.region = region;
    }
    if let Some(url) = string("apiBaseUrl", &method.api_base_url)? {
        settings.api_base_url = url;
    }
    settings.skip_tls_verify = boolean("skipTLSVerify", &method.skip_tls_verify)?;
    settings.skip_metrics_lookup = boolean("skipMetricsLookup", &method.skip_metrics_lookup)?;
    settings.expose_dashboard = boolean("exposeDashboard", &method.expose_dashboard)?;
    settings.matching_resource_labels =
        method.matching_resource_labels.iter().flatten().map(|l| (l.key.clone(), l.value.clone())).collect();
    Ok(settings)
}

#[cfg(all(test, feature = "gke"))]
mod tests {
    use super::*;

    #[test]
    fn a_gke_auth_provider_is_read_as_backstage_reads_it() {
        let provider = |value: &str| {
            let yaml = format!(
                "kubernetes:\n  clusterLocatorMethods:\n    - type: gke\n      projectId: p\n      authProvider: {value}\n"
            );
            let config = AppConfig::from_yaml_str(&yaml, None).unwrap();
            gke_settings(&config.kubernetes.cluster_locator_methods[0], &ResolveContext::new(|_| None))
                .unwrap()
                .auth_provider
        };
        assert_eq!(provider("googleServiceAccount"), "googleServiceAccount");
        assert_eq!(provider("google"), "google");
        // Anything else is google, as Backstage's gke locator has it.
        assert_eq!(provider("aws"), "google");
    }

    #[test]
    fn a_key_whose_variable_is_unset_is_absent_as_in_backstage() {
        let yaml = "kubernetes:\n  clusterLocatorMethods:\n    - type: gke\n      projectId: p\n      region: ${GKE_REGION}\n      skipTLSVerify: ${GKE_SKIP_TLS}\n";
        let config = AppConfig::from_yaml_str(yaml, None).unwrap();
        let method = &config.kubernetes.cluster_locator_methods[0];
        let unset = gke_settings(method, &ResolveContext::new(|_| None)).unwrap();
        assert_eq!((unset.region.as_str(), unset.skip_tls_verify), ("-", false));
        let set =
            gke_settings(method, &ResolveContext::new(|n| (n == "GKE_REGION").then(|| "europe-west1".into()))).unwrap();
        assert_eq!(set.region, "europe-west1");
        // A required key still says what is missing.
        let yaml = "kubernetes:\n  clusterLocatorMethods:\n    - type: gke\n      projectId: ${GKE_PROJECT}\n";
        let config = AppConfig::from_yaml_str(yaml, None).unwrap();
        let err =
            gke_settings(&config.kubernetes.cluster_locator_methods[0], &ResolveContext::new(|_| None)).unwrap_err();
        assert!(err.starts_with("projectId: missing"), "{err}");
    }
}
