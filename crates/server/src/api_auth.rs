//! Protection of the API: callers present one of the configured bearer tokens (`kubeauth.server.auth`).
//!
//! Tokens are kept as SHA-256 digests and compared in constant time. The caller's `Authorization` header is
//! never forwarded upstream (the proxy removes it), so the API token cannot reach a cluster.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kubeauth::core::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// The accepted API tokens (digests only).
#[derive(Clone, Default)]
pub struct ApiTokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTokens").field("count", &self.digests.len()).finish()
    }
}

impl ApiTokens {
    /// Accepts these tokens.
    pub fn new(tokens: impl IntoIterator<Item = SecretString>) -> Self {
        Self { digests: tokens.into_iter().map(|t| digest(t.expose_secret())).collect() }
    }

    /// Whether no token is configured (the API is open).
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    fn accepts(&self, token: &str) -> bool {
        let presented = digest(token);
        // Every digest is compared in full, whatever matches.
        self.digests.iter().fold(false, |found, d| found | constant_time_eq(d, &presented))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn require_token(State(tokens): State<Arc<ApiTokens>>, request: Request, next: Next) -> Response {
    if tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match presented {
        Some(token) if tokens.accepts(token) => next.run(request).await,
        _ => {
            tracing::info!(path = %request.uri().path(), "refused a request without a valid API token");
            let status = serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": "kubeauth: this API needs `Authorization: Bearer <token>` with a token of kubeauth.server.auth",
                "reason": "Unauthorized",
                "code": 401,
            });
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], axum::Json(status)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_tokens_are_accepted() {
        let tokens = ApiTokens::new(["first".to_owned().into(), "second".to_owned().into()]);
        assert!(tokens.accepts("first") && tokens.accepts("second"));
        assert!(!tokens.accepts("") && !tokens.accepts("firs") && !tokens.accepts("first "));
        assert!(!format!("{tokens:?}").contains("first"));
        assert!(ApiTokens::default().is_empty());
    }
}
