//! The user's login for clusters with a client-side provider: which identity provider a cluster needs, its
//! settings from `kubeauth.login`, and the request auth that carries the login's token to the provider.

use std::path::PathBuf;

use kubeauth_cluster_locator::{AppConfig, LocatorError, LoginProviderConfig, ResolveContext};
use kubeauth_core::{ClusterDetails, RequestAuth, SecretString};
pub use kubeauth_oidc::login::{
    FRESHNESS_MARGIN, Flow, IdTokenInfo, Login, LoginError, LoginSettings, Prompt, PromptFn, SendToken, Session,
    SessionStore,
};

use crate::Error;

/// Which identity provider a user signs in to for a cluster: `oidc.<oidcTokenProvider>`, `google` or `aks`.
/// `None` for clusters whose provider is not one of those (server-side ones).
pub fn login_name(cluster: &ClusterDetails) -> Option<String> {
    match cluster.auth_provider()? {
        "oidc" => cluster.oidc_token_provider().map(|p| format!("oidc.{p}")),
        "google" => Some("google".into()),
        "aks" => Some("aks".into()),
        _ => None,
    }
}

/// The request auth that hands `token` to the cluster's client-side provider: `auth.oidc.<p>`, `auth.google`,
/// or `auth.aks`, as Backstage's frontend sends it.
pub fn request_auth_for(login_name: &str, token: impl Into<String>) -> RequestAuth {
    let mut auth = RequestAuth::none();
    match login_name.split_once('.') {
        Some((provider, sub)) => auth.insert_nested_token(provider, sub, token),
        None => auth.insert_token(login_name, token),
    }
    auth
}

/// The names of every identity provider configured under `kubeauth.login`.
pub fn configured_logins(config: &AppConfig) -> Vec<String> {
    let login = &config.kubeauth.login;
    let mut names: Vec<String> = login.oidc.keys().map(|k| format!("oidc.{k}")).collect();
    if login.google.is_some() {
        names.push("google".into());
    }
    if login.aks.is_some() {
        names.push("aks".into());
    }
    names
}

/// The settings of one identity provider (`oidc.<name>`, `google` or `aks`) from `kubeauth.login`. A missing
/// entry or a wrong value is an error naming the key.
pub fn login_settings(config: &AppConfig, ctx: &ResolveContext, name: &str) -> Result<LoginSettings, Error> {
    let ctx = config.resolve_context(ctx);
    let login = &config.kubeauth.login;
    let key = format!("kubeauth.login.{name}");
    let invalid = |key: String, message: String| -> Error {
        LocatorError::Key { origin: config.origin.clone(), key, message }.into()
    };
    let (entry, mut settings) = match name.split_once('.') {
        Some(("oidc", sub)) => {
            let entry = login.oidc.get(sub).ok_or_else(|| {
                invalid(key.clone(), format!("missing: how to sign in to the OIDC provider '{sub}' (issuer, clientId)"))
            })?;
            let issuer = entry.issuer.as_ref().ok_or_else(|| invalid(format!("{key}.issuer"), "missing".into()))?;
            let issuer = issuer.resolve(&ctx).map_err(|m| invalid(format!("{key}.issuer"), m))?;
            (entry, LoginSettings::oidc(sub, issuer, ""))
        }
        None if name == "google" => {
            let entry = login.google.as_ref().ok_or_else(|| {
                invalid(key.clone(), "missing: a Google OAuth client (clientId, clientSecret)".into())
            })?;
            (entry, LoginSettings::google(""))
        }
        None if name == "aks" => {
            let entry = login
                .aks
                .as_ref()
                .ok_or_else(|| invalid(key.clone(), "missing: an Entra ID application (tenantId, clientId)".into()))?;
            let tenant = match (&entry.tenant_id, &entry.issuer) {
                (Some(tenant), _) => tenant.resolve(&ctx).map_err(|m| invalid(format!("{key}.tenantId"), m))?,
                (None, Some(_)) => String::new(),
                (None, None) => return Err(invalid(format!("{key}.tenantId"), "missing".into())),
            };
            (entry, LoginSettings::aks(&tenant, ""))
        }
        _ => return Err(invalid(key, "not an identity provider: use oidc.<name>, google or aks".into())),
    };
    apply(entry, &mut settings, &key, &ctx).map_err(|(k, m)| invalid(k, m))?;
    Ok(settings)
}

fn apply(
    entry: &LoginProviderConfig,
    settings: &mut LoginSettings,
    key: &str,
    ctx: &ResolveContext,
) -> Result<(), (String, String)> {
    let resolve = |field: &str, value: &kubeauth_cluster_locator::ConfigString| {
        value.resolve(ctx).map_err(|m| (format!("{key}.{field}"), m))
    };
    if let Some(issuer) = &entry.issuer {
        settings.issuer = resolve("issuer", issuer)?;
    }
    let client_id = entry.client_id.as_ref().ok_or_else(|| (format!("{key}.clientId"), "missing".to_owned()))?;
    settings.client_id = resolve("clientId", client_id)?;
    if settings.client_id.trim().is_empty() {
        return Err((format!("{key}.clientId"), "is empty".into()));
    }
    if let Some(secret) = &entry.client_secret {
        settings.client_secret = Some(SecretString::from(resolve("clientSecret", secret)?));
    }
    if let Some(scopes) = &entry.scopes {
        settings.scopes = scopes.iter().map(|s| resolve("scopes", s)).collect::<Result<_, _>>()?;
    }
    if let Some(port) = entry.redirect_port {
        settings.redirect_port = port;
    }
    if let Some(token) = &entry.token {
        settings.send = match resolve("token", token)?.as_str() {
            "idToken" => SendToken::IdToken,
            "accessToken" => SendToken::AccessToken,
            other => return Err((format!("{key}.token"), format!("{other:?}: use idToken or accessToken"))),
        };
    }
    if let Some(file) = &entry.ca_file {
        settings.ca_file = Some(ctx.path(&resolve("caFile", file)?));
    }
    Ok(())
}

/// The folder of login sessions: `$KUBEAUTH_CACHE_DIR/sessions`, else `$XDG_CACHE_HOME/kubeauth/sessions`,
/// else `~/.cache/kubeauth/sessions`.
pub fn default_session_dir() -> PathBuf {
    match std::env::var_os("KUBEAUTH_CACHE_DIR") {
        Some(dir) => PathBuf::from(dir).join("sessions"),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("kubeauth")
            .join("sessions"),
    }
}
