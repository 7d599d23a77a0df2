/// What can go wrong in the facade: a credential, a locator, the registry, or building a client.
///
/// Messages name the cluster and, where one is at fault, the config key; never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No credential could be had, or the cluster's configuration is wrong.
    #[error(transparent)]
    Auth(#[from] kubeauth_core::Error),
    /// The clusters could not be located.
    #[error(transparent)]
    Locator(#[from] kubeauth_cluster_locator::LocatorError),
    /// A provider could not be registered.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The Kubernetes client could not be built (TLS settings, certificate or key that do not parse).
    #[error("cluster '{cluster}': cannot build a Kubernetes client")]
    Client {
        /// The cluster's name.
        cluster: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// A workstation login failed, or the user is not logged in.
    #[cfg(feature = "login")]
    #[error(transparent)]
    Login(#[from] kubeauth_oidc::login::LoginError),
    /// The private file store cannot be used.
    #[cfg(feature = "login")]
    #[error(transparent)]
    Store(#[from] kubeauth_core::store::StoreError),
}

/// Why a provider could not be added to a [`Registry`](crate::Registry).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Provider keys travel in header names (`Backstage-Kubernetes-Authorization-<key>`), split on dashes.
    #[error("provider key \"{key}\" is not valid: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// A provider is already registered under the key; replacing one is explicit (`replace_*`).
    #[error(
        "a provider is already registered under \"{key}\"; use Registry::replace_server_side or replace_client_side to replace it"
    )]
    KeyTaken {
        /// The key.
        key: String,
    },
}
