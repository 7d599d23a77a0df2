use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The signed-in user's tokens that travel with a request, keyed by provider: Backstage's
/// `KubernetesRequestAuth`, e.g. `{"google": "ya29…", "oidc": {"okta": "eyJ…"}}`.
///
/// `Debug` shows the keys, never the tokens.
///
/// ```
/// use kubeauth_core::RequestAuth;
///
/// let auth: RequestAuth = serde_json::from_str(r#"{"google":"ya29.a0","oidc":{"okta":"eyJ"}}"#).unwrap();
/// assert_eq!(auth.token("google"), Some("ya29.a0"));
/// assert_eq!(auth.nested_token("oidc", "okta"), Some("eyJ"));
/// assert!(!format!("{auth:?}").contains("eyJ"));
/// ```
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestAuth(Map<String, Value>);

impl RequestAuth {
    /// No tokens: what a server-side request carries.
    pub fn none() -> Self {
        Self::default()
    }

    /// The raw value under a provider's key.
    pub fn get(&self, provider: &str) -> Option<&Value> {
        self.0.get(provider)
    }

    /// The string token directly under a provider's key (`auth.google`).
    pub fn token(&self, provider: &str) -> Option<&str> {
        self.0.get(provider).and_then(Value::as_str).filter(|t| !t.is_empty())
    }

    /// The string token under a provider's key and a sub-key (`auth.oidc.okta`).
    pub fn nested_token(&self, provider: &str, sub: &str) -> Option<&str> {
        self.0.get(provider).and_then(|v| v.get(sub)).and_then(Value::as_str).filter(|t| !t.is_empty())
    }

    /// Sets the token under a provider's key.
    pub fn insert_token(&mut self, provider: impl Into<String>, token: impl Into<String>) {
        self.0.insert(provider.into(), Value::String(token.into()));
    }

    /// Sets the token under a provider's key and a sub-key.
    pub fn insert_nested_token(
        &mut self,
        provider: impl Into<String>,
        sub: impl Into<String>,
        token: impl Into<String>,
    ) {
        let entry = self.0.entry(provider.into()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(map) = entry {
            map.insert(sub.into(), Value::String(token.into()));
        }
    }

    /// The token of a login: `auth.<key>` or `auth.<key>.<sub>`.
    pub fn token_for(&self, login: &crate::LoginName) -> Option<&str> {
        match login.sub() {
            Some(sub) => self.nested_token(login.key(), sub),
            None => self.token(login.key()),
        }
    }

    /// Puts a login's token where its provider reads it: `auth.<key>` or `auth.<key>.<sub>`.
    pub fn insert_login(&mut self, login: &crate::LoginName, token: impl Into<String>) {
        match login.sub() {
            Some(sub) => self.insert_nested_token(login.key(), sub, token),
            None => self.insert_token(login.key(), token),
        }
    }

    /// What a client-side provider sends: the user's token of `login` (`auth.oidc.okta` for `oidc.okta`) as a
    /// bearer credential; without one, that cluster's [`Error::MissingUserToken`](crate::Error::MissingUserToken)
    /// (never an anonymous request).
    pub fn user_credential(
        &self,
        cluster: &crate::ClusterDetails,
        login: &crate::LoginName,
    ) -> Result<crate::Credential, crate::Error> {
        self.token_for(login).map(crate::Credential::bearer).ok_or_else(|| crate::Error::MissingUserToken {
            cluster: cluster.name.clone(),
            provider: login.key().to_owned(),
            path: login.to_string(),
        })
    }

    /// Whether no provider has a token.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for RequestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn shape(v: &Value) -> Value {
            match v {
                Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
                _ => Value::String("[redacted]".into()),
            }
        }
        write!(f, "RequestAuth({})", shape(&Value::Object(self.0.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_tokens_are_built_and_found() {
        let mut auth = RequestAuth::none();
        auth.insert_nested_token("oidc", "okta", "id-token-1");
        auth.insert_nested_token("oidc", "dex", "id-token-2");
        auth.insert_token("google", "access-1");
        assert_eq!(auth.nested_token("oidc", "dex"), Some("id-token-2"));
        assert_eq!(auth.token("google"), Some("access-1"));
        assert_eq!(auth.token("oidc"), None, "an object is not a token");
        let shown = format!("{auth:?}");
        assert!(!shown.contains("id-token") && !shown.contains("access-1"), "{shown}");
        assert!(shown.contains("okta"), "{shown}");
    }
}
