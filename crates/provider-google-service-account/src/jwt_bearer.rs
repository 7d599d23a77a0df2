//! The RFC 7523 jwt-bearer grant: a service-account key signs an assertion, the key's `token_uri` answers with
//! an OAuth access token and its lifetime.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubeauth_core::{Credential, Error, ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::{KEY, SCOPE};

/// A Google service-account key (the JSON file), with the fields the grant needs. `Debug` hides the key.
#[derive(Clone)]
pub struct ServiceAccountKey {
    /// The service account's e-mail: the assertion's issuer.
    pub client_email: String,
    /// Where tokens are asked for.
    pub token_uri: String,
    /// The key's id, sent as the JWT's `kid`.
    pub private_key_id: Option<String>,
    private_key: SecretString,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl ServiceAccountKey {
    /// Reads a key from its JSON text. The error names the missing or wrong field, never a value.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(json)
            .map_err(|e| format!("not a service-account key (JSON: line {}, column {})", e.line(), e.column()))?;
        if file.kind.as_deref().is_some_and(|k| k != "service_account") {
            return Err(format!("a key of type `{}`, not `service_account`", file.kind.unwrap_or_default()));
        }
        let missing = |field: &str| format!("the key has no `{field}`");
        Ok(Self {
            client_email: file.client_email.ok_or_else(|| missing("client_email"))?,
            private_key: file.private_key.ok_or_else(|| missing("private_key"))?.into(),
            private_key_id: file.private_key_id,
            token_uri: file.token_uri.unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
        })
    }

    /// A signed assertion for the grant, made at `now`.
    pub fn assertion(&self, now: SystemTime) -> Result<String, String> {
        let iat = now.duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
        let claims = Claims { iss: &self.client_email, scope: SCOPE, aud: &self.token_uri, iat, exp: iat + 3600 };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.expose_secret().as_bytes())
            .map_err(|_| "the key's private_key is not an RSA private key in PEM".to_owned())?;
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign the assertion: {e}"))
    }

    /// The access token for this key, from its `token_uri`.
    pub(crate) async fn exchange(&self, http: &reqwest::Client, context: &str) -> Result<Credential, Error> {
        let failed = |message: String| Error::Provider {
            cluster: context.to_owned(),
            provider: KEY.into(),
            source: message.into(),
        };
        let now = SystemTime::now();
        let assertion = self.assertion(now).map_err(failed)?;
        let response = http
            .post(&self.token_uri)
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    failed(format!("the token endpoint {} did not answer in time (timed out)", self.token_uri))
                } else {
                    let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
                    failed(format!("the token endpoint {} could not be reached{cause}", self.token_uri))
                }
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| failed(format!("reading the token answer: {e}")))?;
        if !status.is_success() {
            // Google's error answers carry no secret: {"error": "invalid_grant", "error_description": "…"}.
            let reason: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            return Err(failed(format!(
                "the token endpoint refused the service account {} ({status}): {} {}",
                self.client_email,
                reason["error"].as_str().unwrap_or("no error code"),
                reason["error_description"].as_str().unwrap_or_default()
            )));
        }
        let answer: TokenAnswer = serde_json::from_str(&body)
            .map_err(|_| failed("the token endpoint's answer has no access_token and expires_in".into()))?;
        Ok(Credential::bearer_until(answer.access_token, now + Duration::from_secs(answer.expires_in)))
    }
}
