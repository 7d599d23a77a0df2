//! What a client-side provider tells the workstation login (`kubeauth login`, `kubeauth token`): which identity
//! provider its clusters need ([`LoginName`]) and that identity provider's defaults ([`LoginPreset`]).
//!
//! A [`LoginName`] is also where the signed-in user's token travels in a request's [`RequestAuth`]: the login
//! `oidc.okta` fills `auth.oidc.okta`, the login `google` fills `auth.google`, exactly as Backstage's frontend
//! sends them. So the login engine hands the token to the provider the same way a browser request does.
//!
//! [`RequestAuth`]: crate::RequestAuth

use std::fmt;
use std::str::FromStr;

/// The name of an identity provider a user signs in to, which is also the place of the user's token in a
/// request's auth: `<key>` (`auth.<key>`) or `<key>.<sub>` (`auth.<key>.<sub>`).
///
/// The key is the client-side provider's own key in the request auth (`oidc`, `google`, `aks`); the sub-key
/// tells several identity providers of one provider apart (`oidcTokenProvider: okta` gives `oidc.okta`).
/// Its settings live under `kubeauth.login.<key>[.<sub>]` in the config.
///
/// ```
/// use kubeauth_core::LoginName;
///
/// let name: LoginName = "oidc.okta".parse().unwrap();
/// assert_eq!((name.key(), name.sub()), ("oidc", Some("okta")));
/// assert_eq!(name.config_key(), "kubeauth.login.oidc.okta");
/// assert_eq!(LoginName::new("google").to_string(), "google");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoginName {
    key: String,
    sub: Option<String>,
}

impl LoginName {
    /// A login whose token goes directly under `auth.<key>`.
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into(), sub: None }
    }

    /// A login whose token goes under `auth.<key>.<sub>`.
    pub fn with_sub(key: impl Into<String>, sub: impl Into<String>) -> Self {
        Self { key: key.into(), sub: Some(sub.into()) }
    }

    /// The provider's key in the request auth.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The sub-key, if the provider has several identity providers.
    pub fn sub(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// Where the login's settings are in the config: `kubeauth.login.<key>[.<sub>]`.
    pub fn config_key(&self) -> String {
        format!("kubeauth.login.{self}")
    }
}

impl fmt::Display for LoginName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sub {
            Some(sub) => write!(f, "{}.{sub}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

impl FromStr for LoginName {
    type Err = String;

    /// `key` or `key.sub`; the sub-key may itself contain dots.
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("`{text}` is not a login name: use <provider> or <provider>.<name>, like oidc.okta");
        let (key, sub) = match text.split_once('.') {
            Some((key, sub)) => (key, Some(sub)),
            None => (text, None),
        };
        if key.is_empty() || sub.is_some_and(str::is_empty) || text.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        Ok(Self { key: key.to_owned(), sub: sub.map(str::to_owned) })
    }
}

/// Which token of a login is sent to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendToken {
    /// The ID token: what kube-apiserver's `--oidc-*` flags authenticate.
    #[default]
    IdToken,
    /// The access token: what GKE and AKS authenticate.
    AccessToken,
}

impl SendToken {
    /// The config value: `idToken` or `accessToken`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdToken => "idToken",
            Self::AccessToken => "accessToken",
        }
    }
}

impl FromStr for SendToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "idToken" => Ok(Self::IdToken),
            "accessToken" => Ok(Self::AccessToken),
            other => Err(format!("{other:?}: use idToken or accessToken")),
        }
    }
}

/// The defaults of an identity provider, which its entry under `kubeauth.login` completes or overrides: a
/// generic OpenID Connect issuer, Google, Entra ID, or one of your own.
///
/// ```
/// use kubeauth_core::{LoginPreset, SendToken};
///
/// let entra = LoginPreset::openid_connect()
///     .tenant_issuer("https://login.microsoftonline.com/{tenantId}/v2.0")
///     .scopes(["offline_access", "6dae42f8-4368-4678-94ff-3960e28e3630/user.read"])
///     .send(SendToken::AccessToken)
///     .needs("an Entra ID application of the tenant (tenantId, clientId)");
/// assert_eq!(entra.issuer_for_tenant("t1").as_deref(), Some("https://login.microsoftonline.com/t1/v2.0"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginPreset {
    /// The issuer when the entry gives none.
    pub issuer: Option<String>,
    /// An issuer made from the entry's `tenantId`: `{tenantId}` is replaced.
    pub tenant_issuer: Option<String>,
    /// The scopes asked for besides `openid` when the entry gives none.
    pub scopes: Vec<String>,
    /// Extra parameters of the authorization request.
    pub extra_params: Vec<(String, String)>,
    /// Which token is sent to the cluster when the entry does not say.
    pub send: SendToken,
    /// What the entry must give, for the message when it is missing.
    pub needs: String,
}

impl Default for LoginPreset {
    fn default() -> Self {
        Self::openid_connect()
    }
}

impl LoginPreset {
    /// A generic OpenID Connect provider: the entry gives the issuer; `offline_access` (a refresh token) and
    /// `email` are asked for; the ID token is sent.
    pub fn openid_connect() -> Self {
        Self {
            issuer: None,
            tenant_issuer: None,
            scopes: vec!["offline_access".into(), "email".into()],
            extra_params: Vec::new(),
            send: SendToken::IdToken,
            needs: "an OpenID Connect client (issuer, clientId)".into(),
        }
    }

    /// The issuer when the entry gives none.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The issuer made from the entry's `tenantId` (`{tenantId}` in `template` is replaced).
    pub fn tenant_issuer(mut self, template: impl Into<String>) -> Self {
        self.tenant_issuer = Some(template.into());
        self
    }

    /// The default scopes.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// An extra parameter of the authorization request (Google's `access_type=offline`).
    pub fn extra_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }

    /// Which token is sent by default.
    pub fn send(mut self, send: SendToken) -> Self {
        self.send = send;
        self
    }

    /// What the entry must give, for messages.
    pub fn needs(mut self, needs: impl Into<String>) -> Self {
        self.needs = needs.into();
        self
    }

    /// The issuer of `tenant`, if the preset makes issuers from tenants.
    pub fn issuer_for_tenant(&self, tenant: &str) -> Option<String> {
        self.tenant_issuer.as_ref().map(|t| t.replace("{tenantId}", tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_parse_and_print() {
        for text in ["google", "oidc.okta", "oidc.corp.example"] {
            assert_eq!(text.parse::<LoginName>().unwrap().to_string(), text);
        }
        assert_eq!("oidc.corp.example".parse::<LoginName>().unwrap().sub(), Some("corp.example"));
        for bad in ["", ".okta", "oidc.", "oidc. okta"] {
            assert!(bad.parse::<LoginName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn send_token_values() {
        assert_eq!("accessToken".parse::<SendToken>().unwrap(), SendToken::AccessToken);
        assert!("id_token".parse::<SendToken>().unwrap_err().contains("idToken or accessToken"));
    }
}
