use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::{ClusterDetails, Credential, Error, RequestAuth, ValidationIssue};

/// The future a provider returns: a credential for one cluster, or why there is none.
pub type CredentialFuture<'a> = Pin<Box<dyn Future<Output = Result<Credential, Error>> + Send + 'a>>;

/// Whose identity a provider presents to the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderSide {
    /// The application's own identity: every user of the application gets the same access.
    Server,
    /// The signed-in user's identity, from a token that travels with the request.
    Client,
}

impl std::fmt::Display for ProviderSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Server => "server side",
            Self::Client => "client side",
        })
    }
}

/// A provider that authenticates as the application itself (`aws`, `azure`, `serviceAccount`, …).
///
/// It never sees the user's request: a server-side provider cannot leak one user's token to another.
///
/// ```
/// use kubeauth_core::{ClusterDetails, Credential, CredentialFuture, ServerSideProvider};
///
/// /// Sends one fixed token to every cluster.
/// struct FixedToken(String);
///
/// impl ServerSideProvider for FixedToken {
///     fn credential<'a>(&'a self, _cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
///         Box::pin(async move { Ok(Credential::bearer(self.0.clone())) })
///     }
/// }
/// ```
pub trait ServerSideProvider: Send + Sync + 'static {
    /// A credential for `cluster`. Called for every request that is not served from a cache: cache what is
    /// expensive to get (see [`CredentialCache`](crate::CredentialCache)).
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a>;

    /// Provider-specific problems with a cluster's configuration, found at startup. Default: none.
    fn validate_cluster(&self, _cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        Vec::new()
    }

    /// The auth metadata that may be shown to users of the clusters list. Default: nothing.
    fn present_auth_metadata(&self, _cluster: &ClusterDetails) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// A provider that authenticates as the signed-in user (`oidc`, `google`, `aks`), from the user's token in
/// the request's [`RequestAuth`].
pub trait ClientSideProvider: Send + Sync + 'static {
    /// A credential for `cluster` from the user's tokens in `auth`.
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails, auth: &'a RequestAuth) -> CredentialFuture<'a>;

    /// Provider-specific problems with a cluster's configuration, found at startup. Default: none.
    fn validate_cluster(&self, _cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        Vec::new()
    }

    /// The auth metadata that may be shown to users of the clusters list. Default: nothing.
    fn present_auth_metadata(&self, _cluster: &ClusterDetails) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}
