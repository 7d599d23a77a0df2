//! Providers from async functions: a custom provider in a few lines, without a type of its own.

use std::future::Future;

use crate::{
    ClientSideProvider, ClusterDetails, Credential, CredentialFuture, Error, LoginName, LoginPreset, RequestAuth,
    ServerSideProvider, ValidationIssue,
};

/// Checks of a cluster's configuration, run at startup: every problem found, each with its config key.
pub trait ClusterCheck: Fn(&ClusterDetails) -> Vec<ValidationIssue> + Send + Sync + 'static {}

impl<T: Fn(&ClusterDetails) -> Vec<ValidationIssue> + Send + Sync + 'static> ClusterCheck for T {}

type Validate = Box<dyn ClusterCheck>;

/// A server-side provider from an async function of the cluster (see [`server_side_fn`]).
pub struct ServerSideFn<F> {
    fetch: F,
    validate: Option<Validate>,
}

/// A client-side provider from an async function of the cluster and the user's request auth (see
/// [`client_side_fn`]).
pub struct ClientSideFn<F> {
    fetch: F,
    validate: Option<Validate>,
    login: Option<(LoginName, LoginPreset)>,
}

impl<F> std::fmt::Debug for ServerSideFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSideFn").finish_non_exhaustive()
    }
}

impl<F> std::fmt::Debug for ClientSideFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSideFn").finish_non_exhaustive()
    }
}

/// A server-side provider from an async function that gets a credential for a cluster. The function gets its
/// own copy of the cluster; its errors need not name the cluster or the provider (the registry fills them in).
///
/// ```
/// use kubeauth_core::{Credential, Error, server_side_fn};
///
/// // The token of a cluster from a file the cluster's authMetadata names.
/// let provider = server_side_fn(|cluster| async move {
///     let path = cluster.auth_metadata.get("example.com/token-file").ok_or_else(|| Error::config("authMetadata.example.com/token-file", "missing"))?;
///     let token = tokio::fs::read_to_string(path).await.map_err(Error::failed)?;
///     Ok(Credential::bearer(token.trim()))
/// });
/// # let _ = provider;
/// ```
pub fn server_side_fn<F, Fut>(fetch: F) -> ServerSideFn<F>
where
    F: Fn(ClusterDetails) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credential, Error>> + Send + 'static,
{
    ServerSideFn { fetch, validate: None }
}

/// A client-side provider from an async function of the cluster and the user's request auth. Its errors need
/// not name the cluster or the provider.
///
/// ```
/// use kubeauth_core::{Credential, Error, LoginName, client_side_fn};
///
/// // The user's token for the corporate gateway, from `auth.gateway` of the request.
/// let provider = client_side_fn(|cluster, auth| async move {
///     auth.user_credential(&cluster, &LoginName::new("gateway"))
/// });
/// # let _ = provider;
/// ```
pub fn client_side_fn<F, Fut>(fetch: F) -> ClientSideFn<F>
where
    F: Fn(ClusterDetails, RequestAuth) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credential, Error>> + Send + 'static,
{
    ClientSideFn { fetch, validate: None, login: None }
}

impl<F> ServerSideFn<F> {
    /// Checks of a cluster's configuration, run at startup for every cluster of this provider.
    #[must_use]
    pub fn with_validation(mut self, validate: impl ClusterCheck) -> Self {
        self.validate = Some(Box::new(validate));
        self
    }
}

impl<F> ClientSideFn<F> {
    /// On a workstation, every cluster of this provider gets its user token from the login `login` (settings
    /// under `kubeauth.login.<login>` over `preset`): the provider takes part in `kubeauth login` and
    /// `kubeauth token`. Read the token from the same place (`auth.user_credential(&cluster, &login)`).
    #[must_use]
    pub fn with_login(mut self, login: LoginName, preset: LoginPreset) -> Self {
        self.login = Some((login, preset));
        self
    }

    /// Checks of a cluster's configuration, run at startup for every cluster of this provider.
    #[must_use]
    pub fn with_validation(mut self, validate: impl ClusterCheck) -> Self {
        self.validate = Some(Box::new(validate));
        self
    }
}

impl<F, Fut> ServerSideProvider for ServerSideFn<F>
where
    F: Fn(ClusterDetails) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credential, Error>> + Send + 'static,
{
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin((self.fetch)(cluster.clone()))
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        self.validate.as_ref().map(|v| v(cluster)).unwrap_or_default()
    }
}

impl<F, Fut> ClientSideProvider for ClientSideFn<F>
where
    F: Fn(ClusterDetails, RequestAuth) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Credential, Error>> + Send + 'static,
{
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails, auth: &'a RequestAuth) -> CredentialFuture<'a> {
        Box::pin((self.fetch)(cluster.clone(), auth.clone()))
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        self.validate.as_ref().map(|v| v(cluster)).unwrap_or_default()
    }

    fn user_login(&self, _cluster: &ClusterDetails) -> Option<LoginName> {
        self.login.as_ref().map(|(name, _)| name.clone())
    }

    fn login_preset(&self, login: &LoginName) -> Option<LoginPreset> {
        self.login.as_ref().filter(|(name, _)| name == login).map(|(_, preset)| preset.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExposeSecret as _, LoginName};

    #[tokio::test]
    async fn functions_become_providers() {
        let server = server_side_fn(|cluster| async move { Ok(Credential::bearer(format!("for-{}", cluster.name))) })
            .with_validation(|c| {
                if c.url.ends_with(":6443") { vec![] } else { vec![ValidationIssue::new("url", "not on port 6443")] }
            });
        let cluster = ClusterDetails::new("prod", "https://10.0.0.1:6443");
        match server.credential(&cluster).await.unwrap() {
            Credential::BearerToken { token, .. } => assert_eq!(token.expose_secret(), "for-prod"),
            other => panic!("{other:?}"),
        }
        assert!(server.validate_cluster(&cluster).is_empty());
        assert_eq!(server.validate_cluster(&ClusterDetails::new("x", "https://h"))[0].key, "url");

        let client =
            client_side_fn(|cluster, auth| async move { auth.user_credential(&cluster, &LoginName::new("gateway")) });
        let mut auth = RequestAuth::none();
        auth.insert_login(&LoginName::new("gateway"), "user-token");
        assert!(client.credential(&cluster, &auth).await.is_ok());
        let err = client.credential(&cluster, &RequestAuth::none()).await.unwrap_err();
        assert!(err.to_string().contains("`auth.gateway`"), "{err}");
    }
}
