//! The `googleServiceAccount` provider: Google OAuth access tokens (scope `cloud-platform`) as the
//! application's Google identity, for GKE.
//!
//! Where the identity comes from, in order:
//! 1. the service-account key given as `kubernetes.googleServiceAccountCredentials` (the JSON key as a string,
//!    as in Backstage);
//! 2. Application Default Credentials: the file `GOOGLE_APPLICATION_CREDENTIALS` names, else gcloud's
//!    `~/.config/gcloud/application_default_credentials.json`, else the metadata server (GKE workload identity,
//!    GCE, Cloud Run).
//!
//! For a service-account key the provider makes the OAuth access token itself with the RFC 7523 jwt-bearer grant
//! at the key's `token_uri` (what GKE accepts, and it gives the exact expiry); tokens are cached and replaced a
//! minute before they expire. Every other kind of ADC goes through the official `google-cloud-auth` crate, which
//! caches and refreshes its tokens itself and does not tell their expiry: kubeauth never caches those, so a token
//! is never served past its real expiry.

mod jwt_bearer;

use std::time::Duration;

use kubeauth_core::{ClusterDetails, Credential, CredentialCache, CredentialFuture, Error, ServerSideProvider};
use serde::Deserialize;

pub use jwt_bearer::ServiceAccountKey;

/// The provider key, as written in `authProvider`.
pub const KEY: &str = "googleServiceAccount";

/// The OAuth scope of the tokens.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The `googleServiceAccount` provider. See the [crate docs](crate).
pub struct GoogleServiceAccountProvider {
    source: tokio::sync::OnceCell<Source>,
    inline_key: Option<ServiceAccountKey>,
    /// Built on first use: building one reads the system's CA certificates, which `kubeauth token` for other
    /// providers should not pay for.
    http: std::sync::Arc<std::sync::OnceLock<reqwest::Client>>,
    cache: CredentialCache,
}

enum Source {
    Key(ServiceAccountKey),
    Adc(google_cloud_auth::credentials::AccessTokenCredentials),
}

impl std::fmt::Debug for GoogleServiceAccountProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleServiceAccountProvider")
            .field("inline_key", &self.inline_key.as_ref().map(|k| k.client_email.as_str()))
            .finish_non_exhaustive()
    }
}

impl Default for GoogleServiceAccountProvider {
    fn default() -> Self {
        Self::new(None)
    }
}

#[derive(Deserialize)]
struct KeyType {
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl GoogleServiceAccountProvider {
    /// The provider; `inline_key` is the service-account key from `kubernetes.googleServiceAccountCredentials`.
    pub fn new(inline_key: Option<ServiceAccountKey>) -> Self {
        Self {
            source: tokio::sync::OnceCell::new(),
            inline_key,
            http: std::sync::Arc::default(),
            cache: CredentialCache::new(Duration::from_secs(60)),
        }
    }

    /// The provider with the key given as JSON text (`kubernetes.googleServiceAccountCredentials`). The error
    /// says what is wrong with the key, never its contents.
    pub fn with_key_json(json: &str) -> Result<Self, String> {
        Ok(Self::new(Some(ServiceAccountKey::from_json(json)?)))
    }

    async fn source(&self, context: &str) -> Result<&Source, Error> {
        self.source
            .get_or_try_init(|| async {
                if let Some(key) = &self.inline_key {
                    return Ok(Source::Key(key.clone()));
                }
                // A service-account key in the ADC file gets the jwt-bearer grant too.
                if let Some(path) = adc_file()
                    && let Ok(text) = std::fs::read_to_string(&path)
                    && serde_json::from_str::<KeyType>(&text).ok().and_then(|k| k.kind).as_deref()
                        == Some("service_account")
                {
                    let key = ServiceAccountKey::from_json(&text).map_err(|message| Error::Config {
                        cluster: context.to_owned(),
                        key: "GOOGLE_APPLICATION_CREDENTIALS".into(),
                        message: format!("{}: {message}", path.display()),
                    })?;
                    return Ok(Source::Key(key));
                }
                let adc = google_cloud_auth::credentials::Builder::default()
                    .with_scopes([SCOPE])
                    .build_access_token_credentials()
                    .map_err(|e| Error::Provider {
                        cluster: context.to_owned(),
                        provider: KEY.into(),
                        source: format!("no Google Application Default Credentials: {e}").into(),
                    })?;
                Ok(Source::Adc(adc))
            })
            .await
    }

    /// An access token for the provider's own identity; `context` (a cluster's name, or a locator) names it in
    /// errors.
    pub async fn access_token(&self, context: &str) -> Result<Credential, Error> {
        match self.source(context).await? {
            Source::Key(key) => {
                let http = self.http.get_or_init(|| {
                    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default()
                });
                let fetched = self.cache.get(|| key.exchange(http, context)).await?;
                Ok(fetched.credential)
            }
            Source::Adc(adc) => {
                let token = adc.access_token().await.map_err(|e| Error::Provider {
                    cluster: context.to_owned(),
                    provider: KEY.into(),
                    source: format!("Application Default Credentials gave no token: {e}").into(),
                })?;
                Ok(Credential::bearer(token.token))
            }
        }
    }
}

/// The ADC file, as google-cloud-auth finds it.
fn adc_file() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some(path.into());
    }
    let home = std::env::var_os("HOME")?;
    Some(std::path::PathBuf::from(home).join(".config/gcloud/application_default_credentials.json"))
}

impl ServerSideProvider for GoogleServiceAccountProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(self.access_token(&cluster.name))
    }
}
