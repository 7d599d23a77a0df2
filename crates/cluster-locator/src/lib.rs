//! Cluster locators: where kubeauth finds the clusters it authenticates to.
//!
//! The methods of Backstage's `kubernetes.clusterLocatorMethods`, read from an app-config.yaml as it is:
//! - [`ConfigLocator`] (`type: config`): clusters listed in the config;
//! - [`LocalKubectlProxyLocator`] (`type: localKubectlProxy`): one cluster, `local`, at `http://localhost:8001`;
//! - [`GkeLocator`] (`type: gke`): the clusters of a Google Cloud project, from the GKE API;
//! - [`KubeconfigLocator`] (`type: kubeconfig`, kubeauth): the contexts of kubectl's kubeconfig files, served
//!   by the [`KubeconfigProvider`];
//!
//! and [`CombinedLocator`], which runs every configured method, honours `clusterLocatorContinueOnError`, and
//! refuses two clusters of the same name.
//!
//! ```
//! use kubeauth_cluster_locator::{AppConfig, CombinedLocator, ResolveContext};
//!
//! let config = AppConfig::from_yaml_str(
//!     r#"
//! app: { title: ignored }
//! kubernetes:
//!   clusterLocatorMethods:
//!     - type: config
//!       clusters:
//!         - name: prod
//!           url: https://10.0.0.1:6443
//!           authProvider: serviceAccount
//!           serviceAccountToken: ${PROD_TOKEN}
//! "#,
//!     None,
//! )?;
//! let env = |name: &str| (name == "PROD_TOKEN").then(|| "t0ken".to_owned());
//! let locator = CombinedLocator::from_config(&config, &ResolveContext::new(env))?;
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # let clusters = rt.block_on(locator.clusters())?;
//! # assert_eq!(clusters[0].name, "prod");
//! # Ok::<(), kubeauth_cluster_locator::LocatorError>(())
//! ```

#[cfg(feature = "catalog")]
pub mod catalog;
mod combined;
mod config;
mod config_locator;
mod error;
#[cfg(feature = "gke")]
mod gke;
#[cfg(feature = "kubeconfig")]
pub mod kubeconfig;
mod layered;
mod local_kubectl_proxy;
#[cfg(any(feature = "gke", feature = "catalog"))]
mod refreshed;
mod unknown;
mod value;

pub use combined::{
    AccessTokenSource, ClusterLocator, ClustersFuture, CombinedLocator, Located, LocatorServices, ProviderCheck,
};
pub use config::{
    AccessRuleConfig, AppConfig, AuditConfig, BackstageAuthConfig, CatalogConfig, ClusterConfig, CorsConfig,
    ImpersonatedConfig, ImpersonationConfig, KubeauthConfig, KubernetesConfig, LimitsConfig, LocatorMethodConfig,
    LoginConfig, LoginEntry, LoginProviderConfig, ResourceLabel, ServerAuthConfig, ServerConfig, ServiceLocatorMethod,
};
pub use config_locator::ConfigLocator;
pub use error::LocatorError;
#[cfg(feature = "gke")]
pub use gke::{GkeLocator, GkeSettings};
#[cfg(feature = "kubeconfig")]
pub use kubeconfig::{KubeconfigLocator, KubeconfigProvider, KubeconfigSettings};
pub use local_kubectl_proxy::LocalKubectlProxyLocator;
pub use unknown::{UnknownKey, unknown_keys};
pub use value::{ConfigBool, ConfigString, MAX_FILE_VALUE, ResolveContext};

/// The config an application runs on inside a Kubernetes pod when it is given none: the pod's own cluster,
/// through the `serviceAccount` provider with the pod's token (which, in a pod, reaches the pod's API server with
/// the pod's CA).
pub const EMBEDDED_IN_CLUSTER_CONFIG: &str = "\
kubernetes:
  clusterLocatorMethods:
    - type: config
      clusters:
        - name: in-cluster
          title: This cluster
          url: https://kubernetes.default.svc
          authProvider: serviceAccount
";

/// The config an application runs on when it is given none: the `localKubectlProxy` locator, so that a
/// `kubectl proxy` on the default port is reachable out of the box.
pub const EMBEDDED_DEFAULT_CONFIG: &str = "\
kubernetes:
  clusterLocatorMethods:
    - type: localKubectlProxy
";

/// The JSON Schema of an app-config.yaml's `kubernetes` section as kubeauth reads it. Secret fields carry
/// `"writeOnly": true`.
pub fn config_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(AppConfig)).unwrap_or_default()
}

/// [`config_schema`] as the text of `docs/config.schema.json`.
pub fn config_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&config_schema()).unwrap_or_default();
    text.push('\n');
    text
}
