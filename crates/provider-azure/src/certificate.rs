//! A service principal's client certificate, as a signed client assertion (RFC 7523): what azure_identity's
//! own certificate credential does with OpenSSL, done here with the crates kubeauth already uses.

use std::time::{SystemTime, UNIX_EPOCH};

use azure_core::http::ClientMethodOptions;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// The certificate and its RSA key, from a PEM file holding both (`AZURE_CLIENT_CERTIFICATE_PATH`).
pub(crate) struct CertificateAssertion {
    client_id: String,
    audience: String,
    thumbprint: String,
    key: jsonwebtoken::EncodingKey,
}

impl std::fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAssertion").field("client_id", &self.client_id).field("key", &"[redacted]").finish()
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    exp: u64,
}

impl CertificateAssertion {
    /// Reads `pem_text`; `audience` is the token endpoint (`{authority}/{tenant}/oauth2/v2.0/token`). The error
    /// says what is missing, never the key.
    pub(crate) fn new(client_id: &str, audience: String, pem_text: &str) -> Result<Self, String> {
        let blocks = pem::parse_many(pem_text).map_err(|e| format!("not PEM: {e}"))?;
        let cert = blocks.iter().find(|b| b.tag() == "CERTIFICATE").ok_or("holds no CERTIFICATE")?;
        let key = blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY")).ok_or("holds no PRIVATE KEY")?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem::encode(key).as_bytes())
            .map_err(|_| "its private key is not an RSA key".to_owned())?;
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(cert.contents()));
        Ok(Self { client_id: client_id.to_owned(), audience, thumbprint, key })
    }
}

#[async_trait::async_trait]
impl azure_identity::ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        // A unique id per assertion, against replay.
        let mut jti = [0u8; 16];
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut jti));
        let claims = Claims {
            aud: &self.audience,
            iss: &self.client_id,
            sub: &self.client_id,
            jti: format!("{now:x}-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti)),
            nbf: now,
            exp: now + 600,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("signing the client assertion: {e}"),
            )
        })
    }
}
