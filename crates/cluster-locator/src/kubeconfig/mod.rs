//! kubectl's kubeconfig files as a cluster locator (`type: kubeconfig`) and a provider (`authProvider:
//! kubeconfig`): every context a cluster, every user's credential presented as kubectl presents it.
//!
//! ```
//! use kubeauth_cluster_locator::{ClusterLocator as _, KubeconfigLocator, KubeconfigSettings};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("config");
//! std::fs::write(&path, "
//! clusters: [{name: dev, cluster: {server: 'https://10.0.0.1:6443'}}]
//! users: [{name: dev, user: {token: s3cret}}]
//! contexts: [{name: dev, context: {cluster: dev, user: dev}}]
//! ")?;
//! let locator = KubeconfigLocator::new(KubeconfigSettings::file(path), "kubeconfig")?;
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let clusters = rt.block_on(locator.clusters())?;
//! assert_eq!((clusters[0].name.as_str(), clusters[0].auth_provider()), ("dev", Some("serviceAccount")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod exec;
mod file;
mod locator;
mod oidc;
mod provider;

pub use locator::{KubeconfigLocator, KubeconfigSettings};
pub use oidc::{OidcRefresh, OidcRefreshRequest, RefreshFuture, RefreshedTokens};
pub use provider::KubeconfigProvider;
