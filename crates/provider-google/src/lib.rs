//! The `google` provider: the signed-in user's Google OAuth access token.
//!
//! A client-side provider: the cluster (GKE) sees the user. The token travels with the request under
//! `auth.google` (in the proxy, the header `Backstage-Kubernetes-Authorization-google`).

use kubeauth_core::{ClientSideProvider, ClusterDetails, CredentialFuture, RequestAuth};

/// The `google` provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleProvider;

impl GoogleProvider {
    /// The provider key, as written in `authProvider`.
    pub const KEY: &'static str = "google";
}

impl ClientSideProvider for GoogleProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails, auth: &'a RequestAuth) -> CredentialFuture<'a> {
        Box::pin(async move { auth.user_credential(cluster, Self::KEY, None) })
    }
}

#[cfg(test)]
mod tests {
    use kubeauth_core::Credential;

    use super::*;

    #[tokio::test]
    async fn takes_the_token_under_auth_google() {
        let cluster = ClusterDetails::new("gke-1", "https://35.1.2.3");
        let auth: RequestAuth = serde_json::from_str(r#"{"google":"ya29.user"}"#).unwrap();
        assert!(matches!(GoogleProvider.credential(&cluster, &auth).await, Ok(Credential::BearerToken { .. })));
        let err = GoogleProvider.credential(&cluster, &RequestAuth::none()).await.unwrap_err();
        assert!(err.to_string().contains("`auth.google`"), "{err}");
    }
}
