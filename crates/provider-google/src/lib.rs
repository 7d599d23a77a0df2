//! The `google` provider: the signed-in user's Google OAuth access token.
//!
//! A client-side provider: the cluster (GKE) sees the user. The token travels with the request under
//! `auth.google` (in the proxy, the header `Backstage-Kubernetes-Authorization-google`).

use kubeauth_core::{
    ClientSideProvider, ClusterDetails, CredentialFuture, LoginName, LoginPreset, RequestAuth, SendToken,
};

/// Google's issuer.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// The scope of a Google access token that GKE accepts.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The `google` provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoogleProvider;

impl GoogleProvider {
    /// The provider key, as written in `authProvider`.
    pub const KEY: &'static str = "google";
}

impl GoogleProvider {
    /// The login of every google cluster: `google` (the token goes to `auth.google`).
    pub fn login() -> LoginName {
        LoginName::new(Self::KEY)
    }

    /// Google's sign-in: Google's issuer, the `email` and `cloud-platform` scopes, `access_type=offline` (a
    /// refresh token), and the access token sent to the cluster (what GKE authenticates).
    pub fn preset() -> LoginPreset {
        LoginPreset::openid_connect()
            .issuer(GOOGLE_ISSUER)
            .scopes(["email", CLOUD_PLATFORM_SCOPE])
            .extra_param("access_type", "offline")
            .send(SendToken::AccessToken)
            .needs("a Google OAuth client of type Desktop app (clientId, clientSecret)")
    }
}

impl ClientSideProvider for GoogleProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails, auth: &'a RequestAuth) -> CredentialFuture<'a> {
        Box::pin(async move { auth.user_credential(cluster, &Self::login()) })
    }

    fn user_login(&self, _cluster: &ClusterDetails) -> Option<LoginName> {
        Some(Self::login())
    }

    fn login_preset(&self, login: &LoginName) -> Option<LoginPreset> {
        (*login == Self::login()).then(Self::preset)
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

    #[test]
    fn every_google_cluster_signs_in_to_google() {
        let cluster = ClusterDetails::new("gke-1", "https://35.1.2.3");
        let login = GoogleProvider.user_login(&cluster).unwrap();
        assert_eq!(login.to_string(), "google");
        let preset = GoogleProvider.login_preset(&login).unwrap();
        assert_eq!(preset.issuer.as_deref(), Some(GOOGLE_ISSUER));
        assert_eq!(preset.send, SendToken::AccessToken);
        assert!(GoogleProvider.login_preset(&"oidc.okta".parse().unwrap()).is_none());
    }
}
