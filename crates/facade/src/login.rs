//! The user's login on a workstation, in one place: from the config's `kubeauth.login` entries and the
//! client-side provider's defaults, through the session store, refresh and (when allowed) a new login, to the
//! request auth the provider reads, exactly as a browser request would carry it.
//!
//! Which login a cluster needs is its provider's to say ([`ClientSideProvider::user_login`]): `oidc.okta`
//! for an oidc cluster of `oidcTokenProvider: okta`, `google`, `aks`, or a custom provider's. The login's
//! name is also where its token goes in the request auth (`auth.oidc.okta`), so the token reaches the provider
//! by the same path as in `kubeauth serve`.
//!
//! [`ClientSideProvider::user_login`]: kubeauth_core::ClientSideProvider::user_login

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use kubeauth_cluster_locator::{AppConfig, LocatorError, LoginConfig, ResolveContext};
use kubeauth_core::{ClusterDetails, RequestAuth, SecretString};
pub use kubeauth_core::{LoginName, LoginPreset, SendToken};
pub use kubeauth_oidc::login::{
    FRESHNESS_MARGIN, Flow, IdTokenInfo, Login, LoginError, LoginSettings, Prompt, PromptFn, Session, SessionStore,
};

use crate::{Error, Registry};

/// The logins of a config (`kubeauth.login`) for the client-side providers of a registry.
#[derive(Clone)]
pub struct Logins {
    entries: LoginConfig,
    origin: Option<PathBuf>,
    ctx: ResolveContext,
    registry: Arc<Registry>,
    store: Option<SessionStore>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins").field("configured", &self.configured()).field("store", &self.store).finish()
    }
}

/// The signed-in user's token for requests to one cluster, from a login session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UserAuth {
    /// The login it came from.
    pub login: LoginName,
    /// The token where the cluster's provider reads it (`auth.oidc.okta`).
    pub auth: RequestAuth,
    /// When the token stops being accepted.
    pub expires_at: SystemTime,
    /// Who signed in (e-mail address, else subject).
    pub user: String,
}

impl Logins {
    pub(crate) fn new(config: &AppConfig, env: &ResolveContext, registry: Arc<Registry>) -> Self {
        Self {
            entries: config.kubeauth.login.clone(),
            origin: config.origin.clone(),
            ctx: config.resolve_context(env),
            registry,
            store: None,
        }
    }

    /// Keep sessions in `store` instead of the user's (`sessions/` under `$KUBEAUTH_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/kubeauth`, else `~/.cache/kubeauth`).
    #[must_use]
    pub fn with_store(mut self, store: SessionStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The session store.
    pub fn store(&self) -> Result<SessionStore, Error> {
        match &self.store {
            Some(store) => Ok(store.clone()),
            None => Ok(SessionStore::user()?),
        }
    }

    /// The name of every login of `kubeauth.login`.
    pub fn configured(&self) -> Vec<LoginName> {
        self.entries.names()
    }

    /// The login `cluster` needs, if its provider is a client-side one that names one.
    pub fn login_for(&self, cluster: &ClusterDetails) -> Option<LoginName> {
        self.registry.user_login(cluster)
    }

    /// The settings of `login`: its entry under `kubeauth.login` over its provider's defaults. A missing entry
    /// or a wrong value is an error naming the full key.
    pub fn settings(&self, login: &LoginName) -> Result<LoginSettings, Error> {
        let key = login.config_key();
        let preset = self.registry.login_preset(login).ok_or_else(|| {
            self.invalid(&key, format!("no client-side provider signs in as `{login}` (configured: {})", self.list()))
        })?;
        let entry = self
            .entries
            .entry(login)
            .ok_or_else(|| self.invalid(&key, format!("missing: {} to sign in to", preset.needs)))?;
        let resolve = |field: &str, value: &kubeauth_cluster_locator::ConfigString| {
            value.resolve(&self.ctx).map_err(|m| self.invalid(&format!("{key}.{field}"), m))
        };
        // An optional key whose variable is unset is absent, as in Backstage.
        let optional = |field: &str, value: &Option<kubeauth_cluster_locator::ConfigString>| {
            value
                .as_ref()
                .map(|v| v.resolve_optional(&self.ctx).map_err(|m| self.invalid(&format!("{key}.{field}"), m)))
                .transpose()
                .map(Option::flatten)
        };
        let issuer = match (&entry.issuer, &entry.tenant_id) {
            (Some(issuer), _) => resolve("issuer", issuer)?,
            (None, Some(tenant)) => {
                let tenant = resolve("tenantId", tenant)?;
                preset.issuer_for_tenant(&tenant).ok_or_else(|| {
                    self.invalid(&format!("{key}.tenantId"), "this login takes an issuer, not a tenant".into())
                })?
            }
            (None, None) => match (&preset.issuer, &preset.tenant_issuer) {
                (Some(issuer), _) => issuer.clone(),
                (None, Some(_)) => return Err(self.invalid(&format!("{key}.tenantId"), "missing".into())),
                (None, None) => return Err(self.invalid(&format!("{key}.issuer"), "missing".into())),
            },
        };
        let client_id =
            entry.client_id.as_ref().ok_or_else(|| self.invalid(&format!("{key}.clientId"), "missing".into()))?;
        let client_id = resolve("clientId", client_id)?;
        if client_id.trim().is_empty() {
            return Err(self.invalid(&format!("{key}.clientId"), "is empty".into()));
        }
        let mut settings = LoginSettings::from_preset(login, &preset, issuer, client_id);
        if let Some(secret) = optional("clientSecret", &entry.client_secret)? {
            settings.client_secret = Some(SecretString::from(secret));
        }
        if let Some(scopes) = &entry.scopes {
            settings.scopes = scopes.iter().map(|s| resolve("scopes", s)).collect::<Result<_, _>>()?;
        }
        if let Some(port) = entry.redirect_port {
            settings.redirect_port = port;
        }
        if let Some(token) = optional("token", &entry.token)? {
            settings.send = token.parse().map_err(|m| self.invalid(&format!("{key}.token"), m))?;
        }
        if let Some(file) = optional("caFile", &entry.ca_file)? {
            settings.ca_file = Some(self.ctx.path(&file));
        }
        Ok(settings)
    }

    /// The login engine of `login`, over the session store.
    pub fn open(&self, login: &LoginName) -> Result<Login, Error> {
        Ok(Login::new(self.settings(login)?, self.store()?)?)
    }

    /// The signed-in user's token for `cluster`: the stored session's (no network while it stays valid for
    /// more than [`FRESHNESS_MARGIN`]), else a refreshed one, else — only when `interactive` is given — one
    /// from a new login with that flow. `None` when the cluster's provider needs no login.
    pub async fn user_auth(
        &self,
        cluster: &ClusterDetails,
        interactive: Option<(Flow, PromptFn<'_>)>,
    ) -> Result<Option<UserAuth>, Error> {
        let Some(login) = self.login_for(cluster) else { return Ok(None) };
        let engine = self.open(&login)?;
        let session = engine.session(interactive).await?;
        let token = match engine.settings().send {
            SendToken::IdToken => session.id_token.clone().ok_or_else(|| LoginError::InvalidIdToken {
                provider: login.to_string(),
                message: "the session has no ID token".into(),
            })?,
            SendToken::AccessToken => session.access_token.clone(),
        };
        let mut auth = RequestAuth::none();
        auth.insert_login(&login, token);
        Ok(Some(UserAuth { auth, expires_at: session.expires_at(), user: session.user().to_owned(), login }))
    }

    /// Forgets every stored session; how many there were.
    pub fn logout_all(&self) -> Result<usize, Error> {
        Ok(self.store()?.remove_all()?)
    }

    fn list(&self) -> String {
        let names: Vec<String> = self.configured().iter().map(ToString::to_string).collect();
        if names.is_empty() { "none".into() } else { names.join(", ") }
    }

    fn invalid(&self, key: &str, message: String) -> Error {
        LocatorError::Key { origin: self.origin.clone(), key: key.to_owned(), message }.into()
    }
}

/// The refresh of a kubeconfig's legacy `auth-provider: oidc` users, through the one OpenID Connect login
/// (discovery, the refresh-token grant, the new ID token verified).
#[cfg(feature = "kubeconfig")]
pub(crate) struct KubeconfigOidcRefresh;

#[cfg(feature = "kubeconfig")]
impl kubeauth_cluster_locator::kubeconfig::OidcRefresh for KubeconfigOidcRefresh {
    fn refresh<'a>(
        &'a self,
        request: &'a kubeauth_cluster_locator::kubeconfig::OidcRefreshRequest,
    ) -> kubeauth_cluster_locator::kubeconfig::RefreshFuture<'a> {
        Box::pin(async move {
            let mut settings = LoginSettings::oidc("kubeconfig", &request.issuer, &request.client_id);
            settings.name = format!("kubeconfig {}", request.user);
            settings.config_key = format!("{}.user.auth-provider", request.user);
            settings.client_secret = request.client_secret.clone();
            settings.ca_pem = request.ca_pem.clone();
            // A refresh stores nothing: the store is never written.
            let login = Login::new(settings, SessionStore::in_dir(std::env::temp_dir()))?;
            let session = login.refresh_token(&request.refresh_token).await?;
            let id_token = session.id_token.clone().ok_or("the token response has no ID token")?;
            Ok(kubeauth_cluster_locator::kubeconfig::RefreshedTokens::new(
                id_token.into(),
                session.expires_at(),
                session.refresh_token.map(Into::into),
            ))
        })
    }
}
