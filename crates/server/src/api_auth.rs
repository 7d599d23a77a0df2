//! Protection of the API (`kubeauth.server.auth`): callers present one of the configured bearer tokens, or a
//! Backstage token (see [`crate::backstage_auth`]); the handlers learn who called from the [`Caller`] in the
//! request's extensions.
//!
//! Static tokens are kept as SHA-256 digests and compared in constant time. The caller's `Authorization` header is
//! never forwarded upstream (the proxy removes it), so the API token cannot reach a cluster.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use kubeauth::core::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::backstage_auth::{BackstageCaller, BackstageTokens};

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

    /// The position of `token` in the list, if it is one of them.
    fn position(&self, token: &str) -> Option<usize> {
        let presented = digest(token);
        // Every digest is compared in full, whatever matches.
        self.digests
            .iter()
            .enumerate()
            .fold(None, |found, (i, d)| if constant_time_eq(d, &presented) { found.or(Some(i)) } else { found })
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who is calling the API, as checked by the API auth: in the request's extensions for every handler.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Caller {
    /// The API is open (no `kubeauth.server.auth`): a local caller, as the browser guard lets through.
    Local,
    /// A caller with one of the static API tokens (`bearerTokens`): its position in the list.
    ApiToken(usize),
    /// A caller with a verified Backstage token.
    Backstage(BackstageCaller),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("local"),
            Self::ApiToken(i) => write!(f, "bearerTokens[{i}]"),
            Self::Backstage(BackstageCaller::User { entity_ref, .. }) => f.write_str(entity_ref),
            Self::Backstage(BackstageCaller::Plugin { plugin, on_behalf_of: Some(user) }) => {
                write!(f, "plugin:{plugin} on behalf of {user}")
            }
            Self::Backstage(BackstageCaller::Plugin { plugin, on_behalf_of: None }) => write!(f, "plugin:{plugin}"),
        }
    }
}

/// The API auth: static tokens, Backstage tokens, or neither (the API is open).
#[derive(Debug, Default)]
pub(crate) struct ApiAuth {
    pub(crate) tokens: ApiTokens,
    pub(crate) backstage: Option<BackstageTokens>,
}

impl ApiAuth {
    /// Whether any caller is let in (no static token, no Backstage).
    pub(crate) fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.backstage.is_none()
    }

    async fn caller(&self, presented: Option<&str>) -> Result<Caller, String> {
        if self.is_open() {
            return Ok(Caller::Local);
        }
        let token =
            presented.ok_or("this API needs `Authorization: Bearer <token>` with a token of kubeauth.server.auth")?;
        if let Some(index) = self.tokens.position(token) {
            return Ok(Caller::ApiToken(index));
        }
        match &self.backstage {
            Some(backstage) if BackstageTokens::looks_like_jwt(token) => backstage
                .verify(token)
                .await
                .map(Caller::Backstage)
                .map_err(|e| format!("Backstage token refused: {e}")),
            _ => Err("the token is not one of kubeauth.server.auth".into()),
        }
    }
}

pub(crate) async fn authenticate(State(auth): State<Arc<ApiAuth>>, mut request: Request, next: Next) -> Response {
    let presented = request.headers().get(header::AUTHORIZATION).and_then(crate::headers::bearer_token);
    match auth.caller(presented).await {
        Ok(caller) => {
            tracing::debug!(%caller, path = %request.uri().path(), "caller");
            if let Some(record) = request.extensions().get::<crate::audit::AuditRecord>() {
                record.caller(&caller);
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(reason) => {
            tracing::info!(path = %request.uri().path(), %reason, "refused a request without a valid API token");
            let message = format!("kubeauth: {reason}");
            let mut answer = crate::error::status_response(StatusCode::UNAUTHORIZED, message);
            answer.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            answer
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_tokens_are_accepted() {
        let tokens = ApiTokens::new(["first".to_owned().into(), "second".to_owned().into()]);
        assert_eq!((tokens.position("first"), tokens.position("second")), (Some(0), Some(1)));
        assert!(["", "firs", "first "].iter().all(|t| tokens.position(t).is_none()));
        assert!(!format!("{tokens:?}").contains("first"));
        assert!(ApiTokens::default().is_empty());
    }
}
