use std::path::{Path, PathBuf};

use kubeauth::{AppConfig, ClusterDetails, Kubeauth, ResolveContext};

use crate::failure::Failure;

/// The config a command runs on, and where it came from.
pub(crate) struct LoadedConfig {
    pub(crate) config: AppConfig,
    /// The files, absolute, in the order they were merged; none for the embedded default.
    pub(crate) files: Vec<PathBuf>,
}

impl LoadedConfig {
    /// The files for messages (`app-config.yaml + app-config.production.yaml`), or `the embedded default`.
    pub(crate) fn described(&self) -> String {
        if self.files.is_empty() {
            return "the embedded default".into();
        }
        self.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" + ")
    }
}

/// The config of `--config` (or `$KUBEAUTH_CONFIG`), else the embedded default. Several files are merged in
/// order, with `APP_CONFIG_` variables over them, as Backstage's config loader does. A file in the working
/// folder is never read unasked: a cloned repository's `app-config.yaml` could send the catalog token, or the
/// user's credentials, wherever it likes.
pub(crate) fn load_config(explicit: &[PathBuf]) -> Result<LoadedConfig, Failure> {
    if !explicit.is_empty() {
        // Messages name the files as they were given; a kubeconfig gets them absolute.
        let config = AppConfig::from_files(explicit, std::env::vars()).map_err(|e| Failure::config(&e))?;
        let files = explicit.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())).collect();
        return Ok(LoadedConfig { config, files });
    }
    if Path::new("app-config.yaml").is_file() {
        tracing::info!("./app-config.yaml is not read unless named: pass --config app-config.yaml");
    }
    // Inside a pod, the pod's own cluster; elsewhere the localKubectlProxy locator.
    let config =
        AppConfig::embedded_default_here(|name| std::env::var(name).ok(), Path::new(kubeauth::core::IN_CLUSTER_DIR));
    tracing::debug!(methods = ?config.kubernetes.cluster_locator_methods.iter().map(|m| &m.kind).collect::<Vec<_>>(), "no config given: using the embedded default");
    Ok(LoadedConfig { config, files: Vec::new() })
}

/// The toolkit every command uses: the default providers set up from the config, its locators and logins.
pub(crate) fn toolkit(config: &AppConfig) -> Result<Kubeauth, Failure> {
    Kubeauth::from_config(config, &ResolveContext::from_process_env()).map_err(|e| Failure::config(&e))
}

/// The located clusters. A config the locators refuse is a config failure (exit 2); a locator that fails at
/// run time (an API it asks) is a run-time failure (exit 1).
pub(crate) async fn locate(kubeauth: &Kubeauth) -> Result<Vec<ClusterDetails>, Failure> {
    let located = kubeauth.clusters().await.map_err(|e| match e {
        kubeauth::Error::Locator(kubeauth::LocatorError::Locator { .. }) => Failure::runtime(&e),
        _ => Failure::config(&e),
    })?;
    Ok(located.to_vec())
}

/// The cluster called `name`, or a usage failure that lists the names there are.
pub(crate) fn find<'a>(clusters: &'a [ClusterDetails], name: &str) -> Result<&'a ClusterDetails, Failure> {
    clusters.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
        Failure::Config(format!(
            "no cluster named '{name}' (located: {})",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        ))
    })
}

/// How a cluster's API server certificate is checked, for listings.
pub(crate) fn tls_mode(cluster: &ClusterDetails) -> &'static str {
    if cluster.url.starts_with("http://") {
        "none (http)"
    } else if cluster.skip_tls_verify {
        "skip verify"
    } else if cluster.ca_data.is_some() {
        "caData"
    } else if cluster.ca_file.is_some() {
        "caFile"
    } else {
        "system roots"
    }
}

/// The names of the clusters a config names itself (its `config` methods' clusters, and `localKubectlProxy`'s),
/// without running a locator: what shell completion offers.
pub(crate) fn configured_cluster_names(config: &AppConfig) -> Vec<String> {
    let ctx = config.resolve_context(&ResolveContext::from_process_env());
    let mut names = Vec::new();
    for method in &config.kubernetes.cluster_locator_methods {
        let prefix =
            method.name_prefix.as_ref().and_then(|p| p.resolve_optional(&ctx).ok().flatten()).unwrap_or_default();
        match method.kind.as_str() {
            "config" => names.extend(
                method
                    .clusters
                    .iter()
                    .flatten()
                    .filter_map(|c| c.value.name.as_ref()?.resolve(&ctx).ok())
                    .map(|name| format!("{prefix}{name}")),
            ),
            "localKubectlProxy" => {
                names.push(format!("{prefix}{}", kubeauth::LocalKubectlProxyLocator::CLUSTER_NAME));
            }
            _ => {}
        }
    }
    names
}
