use axum::http::{HeaderMap, HeaderValue};
use kubeauth::RequestAuth;

const AUTH_PREFIX: &str = "backstage-kubernetes-authorization-";

/// The token of a `Bearer <token>` header value (either case of `Bearer`), trimmed.
pub(crate) fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim)
}

/// The signed-in user's tokens from `Backstage-Kubernetes-Authorization-<provider>[-<sub>]` headers, as
/// Backstage reads them: the name lowercased and split on `-`; the third segment is the provider key, the rest
/// joined with `-` is the sub-key (`…-oidc-okta` gives `{oidc: {okta: token}}`).
pub fn request_auth_from_headers(headers: &HeaderMap) -> RequestAuth {
    let mut auth = RequestAuth::none();
    for (name, value) in headers {
        let Some(rest) = name.as_str().strip_prefix(AUTH_PREFIX) else { continue };
        let Ok(token) = value.to_str() else { continue };
        let token = token.trim();
        if rest.is_empty() || token.is_empty() {
            continue;
        }
        match rest.split_once('-') {
            Some((provider, sub)) if !provider.is_empty() && !sub.is_empty() => {
                auth.insert_nested_token(provider, sub, token);
            }
            _ => auth.insert_token(rest, token),
        }
    }
    auth
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn provider_and_sub_keys_come_from_the_header_name() {
        let mut headers = HeaderMap::new();
        headers.insert("Backstage-Kubernetes-Authorization-oidc-okta", HeaderValue::from_static("id-token"));
        headers.insert("Backstage-Kubernetes-Authorization-google", HeaderValue::from_static("access-token"));
        headers.insert("Backstage-Kubernetes-Cluster", HeaderValue::from_static("c1"));
        let auth = request_auth_from_headers(&headers);
        assert_eq!(auth.nested_token("oidc", "okta"), Some("id-token"));
        assert_eq!(auth.token("google"), Some("access-token"));
        assert_eq!(auth.get("cluster"), None);
    }
}
