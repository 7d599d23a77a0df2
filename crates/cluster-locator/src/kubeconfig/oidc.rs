//! The legacy `auth-provider: oidc` of a kubeconfig user: its `id-token`, refreshed with its `refresh-token`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use kubeauth_core::{BoxError, ClusterDetails, Credential, Error, ExposeSecret as _, SecretString};

use super::file::{AuthProviderEntry, FromFile, UserEntry};
use super::provider::config_error;

/// What [`OidcRefresh`] is asked: the refresh-token grant of one kubeconfig user.
#[derive(Clone)]
#[non_exhaustive]
pub struct OidcRefreshRequest {
    /// `idp-issuer-url` (discovery is at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// `client-id`: the ID token's audience.
    pub client_id: String,
    /// `client-secret`, if any.
    pub client_secret: Option<SecretString>,
    /// The refresh token.
    pub refresh_token: SecretString,
    /// `idp-certificate-authority[-data]`: PEM certificates trusted for the issuer besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// The user, for messages: `users[alice]`.
    pub user: String,
}

impl std::fmt::Debug for OidcRefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcRefreshRequest")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What a refresh gives: a verified ID token, its expiry, and the refresh token to use next (if it rotated).
#[non_exhaustive]
pub struct RefreshedTokens {
    /// The new ID token.
    pub id_token: SecretString,
    /// When it expires.
    pub expires_at: SystemTime,
    /// The issuer's new refresh token, when it rotates them.
    pub refresh_token: Option<SecretString>,
}

impl RefreshedTokens {
    /// The answer of a refresh.
    pub fn new(id_token: SecretString, expires_at: SystemTime, refresh_token: Option<SecretString>) -> Self {
        Self { id_token, expires_at, refresh_token }
    }
}

/// The future of [`OidcRefresh::refresh`].
pub type RefreshFuture<'a> = Pin<Box<dyn Future<Output = Result<RefreshedTokens, BoxError>> + Send + 'a>>;

/// How the `kubeconfig` provider refreshes a legacy oidc user's ID token: the facade plugs kubeauth's
/// OpenID Connect login in here (`kubeauth-oidc`'s refresh, which also verifies the new ID token), so that
/// there is one refresh path.
pub trait OidcRefresh: Send + Sync + 'static {
    /// The refresh-token grant at the issuer's token endpoint.
    fn refresh<'a>(&'a self, request: &'a OidcRefreshRequest) -> RefreshFuture<'a>;
}

/// The ID tokens refreshed here, by user; a refresh at a time.
#[derive(Default)]
pub(crate) struct OidcRefresher {
    pub(crate) refresh: Option<Arc<dyn OidcRefresh>>,
    held: tokio::sync::Mutex<HashMap<String, Held>>,
}

impl std::fmt::Debug for OidcRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcRefresher").field("refresh", &self.refresh.is_some()).finish_non_exhaustive()
    }
}

/// Tokens refreshed here, and the file's `id-token` they replace (a new one in the file wins over them).
struct Held {
    file_id_token: Option<String>,
    id_token: SecretString,
    expires_at: SystemTime,
    refresh_token: Option<SecretString>,
}

/// An ID token is refreshed this long before it expires (the credential layer's margin).
const MARGIN: Duration = Duration::from_secs(60);

impl OidcRefresher {
    pub(crate) async fn credential(
        &self,
        cluster: &ClusterDetails,
        user: &FromFile<UserEntry>,
        name: &str,
        provider: &AuthProviderEntry,
    ) -> Result<Credential, Error> {
        let bad =
            |key: &str, message: String| config_error(cluster, name, &format!("auth-provider.config.{key}"), message);
        let config = &provider.config;
        let get = |key: &str| config.get(key).filter(|v| !v.is_empty());
        let file_id_token = get("id-token").cloned();
        let key = format!("{}\0{name}", user.file.display());
        let mut held = self.held.lock().await;
        let (id_token, expires_at, refresh_token) = match held.get(&key) {
            Some(h) if h.file_id_token == file_id_token => {
                (Some(h.id_token.clone()), Some(h.expires_at), h.refresh_token.clone())
            }
            _ => (
                file_id_token.clone().map(SecretString::from),
                file_id_token.as_deref().and_then(jwt_expiry),
                get("refresh-token").cloned().map(SecretString::from),
            ),
        };
        if let (Some(token), Some(expires_at)) = (&id_token, expires_at)
            && expires_at > SystemTime::now() + MARGIN
        {
            return Ok(Credential::bearer_until(token.expose_secret(), expires_at));
        }
        let Some(refresh_token) = refresh_token else {
            let what = if id_token.is_some() { "the id-token has expired" } else { "there is no id-token" };
            return Err(bad(
                "refresh-token",
                format!("missing: {what}, and without a refresh token it cannot be renewed"),
            ));
        };
        let Some(refresher) = &self.refresh else {
            return Err(bad(
                "refresh-token",
                "the id-token has expired, and this build cannot refresh it (kubeauth's `login` feature is off)".into(),
            ));
        };
        let issuer = get("idp-issuer-url").cloned().ok_or_else(|| bad("idp-issuer-url", "missing".into()))?;
        let client_id = get("client-id").cloned().ok_or_else(|| bad("client-id", "missing".into()))?;
        let ca_pem = match (get("idp-certificate-authority-data"), get("idp-certificate-authority")) {
            (Some(data), _) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| bad("idp-certificate-authority-data", format!("not valid base64 ({e})")))?,
            ),
            (None, Some(path)) => {
                let path = user.path(path);
                Some(std::fs::read(&path).map_err(|source| Error::Io {
                    cluster: cluster.name.clone(),
                    key: format!("users[{name}].user.auth-provider.config.idp-certificate-authority"),
                    path,
                    source,
                })?)
            }
            (None, None) => None,
        };
        let request = OidcRefreshRequest {
            issuer,
            client_id,
            client_secret: get("client-secret").cloned().map(SecretString::from),
            refresh_token: refresh_token.clone(),
            ca_pem,
            user: format!("users[{name}]"),
        };
        let tokens = refresher.refresh(&request).await.map_err(|source| Error::Provider {
            cluster: cluster.name.clone(),
            provider: super::KubeconfigProvider::KEY.into(),
            source: format!("refreshing the oidc id-token of user `{name}`: {}", kubeauth_core::report(&*source))
                .into(),
        })?;
        let credential = Credential::bearer_until(tokens.id_token.expose_secret(), tokens.expires_at);
        held.insert(
            key,
            Held {
                file_id_token,
                id_token: tokens.id_token,
                expires_at: tokens.expires_at,
                refresh_token: tokens.refresh_token.or(Some(refresh_token)),
            },
        );
        Ok(credential)
    }
}

/// The `exp` of a JWT, read without verifying it (the API server verifies; kubectl reads it the same way to
/// decide when to refresh).
fn jwt_expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(claims.get("exp")?.as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_of_a_jwt_is_read_without_a_key() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!("{}.{}.sig", b64.encode(br#"{"alg":"RS256"}"#), b64.encode(br#"{"exp":2000000000}"#));
        assert_eq!(jwt_expiry(&token), Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
    }
}
