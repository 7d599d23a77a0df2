//! The `oidc` provider: the signed-in user's OpenID Connect ID token.
//!
//! A client-side provider: the cluster sees the user, not the application. Each cluster says which OIDC
//! provider's token it accepts (`oidcTokenProvider`, e.g. `okta`); the token travels with the request under
//! `auth.oidc.<oidcTokenProvider>` (in the proxy, the header `Backstage-Kubernetes-Authorization-oidc-okta`).

#[cfg(feature = "login")]
pub mod login;

use kubeauth_core::{
    ClientSideProvider, ClusterDetails, CredentialFuture, Error, LoginName, LoginPreset, RequestAuth, ValidationIssue,
};

/// The `oidc` provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct OidcProvider;

impl OidcProvider {
    /// The provider key, as written in `authProvider`.
    pub const KEY: &'static str = "oidc";

    /// The login of the clusters of one OIDC provider: `oidc.<oidcTokenProvider>` (the token goes to
    /// `auth.oidc.<oidcTokenProvider>`).
    pub fn login(token_provider: &str) -> LoginName {
        LoginName::with_sub(Self::KEY, token_provider)
    }
}

impl ClientSideProvider for OidcProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails, auth: &'a RequestAuth) -> CredentialFuture<'a> {
        Box::pin(async move {
            let provider = cluster.oidc_token_provider().ok_or_else(|| {
                Error::config(
                    "oidcTokenProvider",
                    "missing: the oidc provider needs to know which OIDC provider's ID token to send",
                )
            })?;
            auth.user_credential(cluster, &Self::login(provider))
        })
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        match cluster.oidc_token_provider() {
            Some(p) if !p.trim().is_empty() => vec![],
            _ => vec![ValidationIssue::new(
                "oidcTokenProvider",
                "missing: authProvider oidc needs the OIDC provider whose ID token to send, e.g. `oidcTokenProvider: okta`",
            )],
        }
    }

    fn user_login(&self, cluster: &ClusterDetails) -> Option<LoginName> {
        cluster.oidc_token_provider().filter(|p| !p.trim().is_empty()).map(Self::login)
    }

    /// A generic OpenID Connect issuer (given by the login's entry), the ID token sent.
    fn login_preset(&self, login: &LoginName) -> Option<LoginPreset> {
        (login.key() == Self::KEY && login.sub().is_some()).then(LoginPreset::openid_connect)
    }
}

#[cfg(test)]
mod tests {
    use kubeauth_core::{Credential, ExposeSecret, metadata};

    use super::*;

    fn cluster(provider: Option<&str>) -> ClusterDetails {
        let mut c = ClusterDetails::new("dev", "https://dev.example.com");
        c.set_auth_provider(OidcProvider::KEY);
        if let Some(p) = provider {
            c.auth_metadata.insert(metadata::OIDC_TOKEN_PROVIDER.into(), p.into());
        }
        c
    }

    #[test]
    fn oidc_without_a_token_provider_is_a_config_error() {
        let issues = OidcProvider.validate_cluster(&cluster(None));
        assert_eq!(issues[0].key, "oidcTokenProvider");
        assert_eq!(OidcProvider.validate_cluster(&cluster(Some("okta"))), vec![]);
    }

    #[tokio::test]
    async fn sends_the_users_token_for_the_clusters_provider() {
        let auth: RequestAuth = serde_json::from_str(r#"{"oidc":{"okta":"okta-id","dex":"dex-id"}}"#).unwrap();
        let cred = OidcProvider.credential(&cluster(Some("dex")), &auth).await.unwrap();
        match cred {
            Credential::BearerToken { token, .. } => assert_eq!(token.expose_secret(), "dex-id"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_missing_user_token_is_a_per_cluster_error() {
        let err = OidcProvider.credential(&cluster(Some("okta")), &RequestAuth::none()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster 'dev': the oidc provider needs the user's token under `auth.oidc.okta` of the request, and there is none"
        );
    }
}
