use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::{ClusterDetails, Credential, Error, LoginName, LoginPreset, RequestAuth, ValidationIssue};

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
/// Errors need not name the cluster or the provider: the registry fills both in (see [`Error::failed`]).
/// For a provider in a few lines, see [`server_side_fn`](crate::server_side_fn).
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

    /// Whether an [`Anonymous`](Credential::Anonymous) credential from this provider is accepted: a request
    /// sent with no credential at all. Default `false`: the registry turns an anonymous credential into an
    /// error, never a silent unauthenticated request. Only a provider whose clusters add the credential
    /// themselves (`localKubectlProxy`: `kubectl proxy` does) says `true`.
    fn allows_anonymous(&self) -> bool {
        false
    }

    /// The cluster as this provider's credential must reach it, when not at its located `url` and CA: Backstage's
    /// `serviceAccount` provider, running in a pod with no token configured, talks to the pod's own API server
    /// with the pod's CA. The connections are then built for the returned cluster. Default: `None` (as located).
    fn endpoint(&self, _cluster: &ClusterDetails) -> Option<ClusterDetails> {
        None
    }
}

/// A provider that authenticates as the signed-in user (`oidc`, `google`, `aks`), from the user's token in
/// the request's [`RequestAuth`].
///
/// On a workstation, the user's token comes from a login instead of a browser request: a provider that says
/// which login its clusters need ([`user_login`](Self::user_login)) and that login's defaults
/// ([`login_preset`](Self::login_preset)) takes part in `kubeauth login` and `kubeauth token`, a custom one
/// too. For a provider in a few lines, see [`client_side_fn`](crate::client_side_fn).
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

    /// The login that gives `cluster` its user token on a workstation: the place of the token in the request
    /// auth this provider reads (`oidc.okta` for `auth.oidc.okta`). Default `None`: tokens only come with
    /// requests.
    fn user_login(&self, _cluster: &ClusterDetails) -> Option<LoginName> {
        None
    }

    /// The defaults of the identity provider behind `login`, when `login` is one of this provider's (its key
    /// is the one this provider reads). Default `None`.
    fn login_preset(&self, _login: &LoginName) -> Option<LoginPreset> {
        None
    }

    /// Whether an anonymous credential from this provider is accepted. Default `false` (see
    /// [`ServerSideProvider::allows_anonymous`]).
    fn allows_anonymous(&self) -> bool {
        false
    }
}
