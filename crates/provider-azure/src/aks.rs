//! The `aks` provider: the signed-in user's Entra ID access token for AKS.
//!
//! A client-side provider, as Backstage's: the cluster sees the user. The token travels with the request under
//! `auth.aks` (in the proxy, the header `Backstage-Kubernetes-Authorization-aks`); it is an access token for the
//! AKS server application (scope `6dae42f8-4368-4678-94ff-3960e28e3630/user.read`).

use kubeauth_core::{
    ClientSideProvider, ClusterDetails, CredentialFuture, LoginName, LoginPreset, RequestAuth, SendToken,
};

/// The scope of a user's token for AKS: the AKS server application, delegated.
pub const AKS_USER_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/user.read";

/// The `aks` provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct AksProvider;

impl AksProvider {
    /// The provider key, as written in `authProvider`.
    pub const KEY: &'static str = "aks";
}

impl AksProvider {
    /// The login of every aks cluster: `aks` (the token goes to `auth.aks`).
    pub fn login() -> LoginName {
        LoginName::new(Self::KEY)
    }

    /// Entra ID's sign-in: the tenant's issuer (from `tenantId`), `offline_access` and the AKS `user.read`
    /// scope, and the access token sent to the cluster.
    pub fn preset() -> LoginPreset {
        LoginPreset::openid_connect()
            .tenant_issuer("https://login.microsoftonline.com/{tenantId}/v2.0")
            .scopes(["offline_access", AKS_USER_SCOPE])
            .send(SendToken::AccessToken)
            .needs("an Entra ID application of the tenant (tenantId, clientId)")
    }
}

impl ClientSideProvider for AksProvider {
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

    use kubeauth_core::ExposeSecret as _;

    use super::*;

    #[tokio::test]
    async fn takes_the_token_under_auth_aks() {
        let cluster = ClusterDetails::new("aks-1", "https://aks-1.hcp.westeurope.azmk8s.io");
        let auth: RequestAuth = serde_json::from_str(r#"{"aks":"user-entra-token","google":"other"}"#).unwrap();
        match AksProvider.credential(&cluster, &auth).await {
            Ok(Credential::BearerToken { token, .. }) => assert_eq!(token.expose_secret(), "user-entra-token"),
            other => panic!("{other:?}"),
        }
        let err = AksProvider.credential(&cluster, &RequestAuth::none()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cluster 'aks-1': the aks provider needs the user's token under `auth.aks` of the request, and there is none"
        );
    }
}
