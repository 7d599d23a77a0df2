//! Signing the user in on a workstation: OpenID Connect with `openidconnect` over one reqwest client.
//!
//! - Authorization code with PKCE (S256) and a loopback redirect (`http://127.0.0.1:<port>/callback`): the
//!   user's browser is sent to the issuer, the issuer sends it back to a one-shot listener here.
//! - Device authorization grant (RFC 8628) for machines without a browser: the user types a code elsewhere.
//! - Refresh with the refresh token; a full login only when that fails.
//!
//! Every ID token is verified (signature against the issuer's JWKS, issuer, audience, expiry, and the nonce of
//! the login that asked for it). Sessions live in a [`SessionStore`]: one file per (provider, issuer, client,
//! scopes), mode 0600, with a lock so that parallel kubectl calls refresh once.
//!
//! The engine knows no identity provider by name: a client-side provider gives a [`LoginPreset`] (Google's
//! issuer and scopes, Entra ID's tenant issuer, a generic OIDC issuer, or one of your own) and the config's
//! `kubeauth.login` entry completes it (see [`LoginSettings::from_preset`]).

mod callback;
mod session;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use kubeauth_core::SendToken;
use kubeauth_core::{ExposeSecret as _, LoginName, LoginPreset, SecretString};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreDeviceAuthorizationResponse, CoreGrantType, CoreIdToken, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, ProviderMetadata, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

pub use session::{Session, SessionStore};

/// A session is used without refreshing while its token stays valid this much longer.
pub const FRESHNESS_MARGIN: Duration = Duration::from_secs(60);

/// How one identity provider is signed in to.
#[derive(Clone)]
#[non_exhaustive]
pub struct LoginSettings {
    /// The login's name, for messages and the session file (`oidc.okta`, `google`, `aks`).
    pub name: String,
    /// The config key these settings came from, for messages (`kubeauth.login.oidc.okta`).
    pub config_key: String,
    /// The issuer URL (discovery is at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// The client (application) id registered at the issuer.
    pub client_id: String,
    /// The client secret, for issuers that require one even for installed applications (Google) (secret).
    pub client_secret: Option<SecretString>,
    /// The scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (Google's `access_type=offline`).
    pub extra_params: Vec<(String, String)>,
    /// The loopback port of the redirect (`http://127.0.0.1:<port>/callback`); 0 for any free port.
    pub redirect_port: u16,
    /// Which token is sent to the cluster.
    pub send: SendToken,
    /// A PEM file of CA certificates trusted for the issuer besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM CA certificates trusted for the issuer besides the system's (and `ca_file`'s).
    pub ca_pem: Option<Vec<u8>>,
    /// How long a login may wait for the user.
    pub login_timeout: Duration,
}

impl std::fmt::Debug for LoginSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field("scopes", &self.scopes)
            .field("redirect_port", &self.redirect_port)
            .field("send", &self.send)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl LoginSettings {
    /// The settings of `login` from its identity provider's defaults, with the issuer and client id to use.
    pub fn from_preset(
        login: &LoginName,
        preset: &LoginPreset,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Self {
        Self {
            name: login.to_string(),
            config_key: login.config_key(),
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: None,
            scopes: preset.scopes.clone(),
            extra_params: preset.extra_params.clone(),
            redirect_port: 0,
            send: preset.send,
            ca_file: None,
            ca_pem: None,
            login_timeout: Duration::from_secs(300),
        }
    }

    /// A generic OpenID Connect provider, the login `oidc.<name>`: the ID token is sent; `offline_access` (a
    /// refresh token) and `email` are asked for.
    pub fn oidc(name: &str, issuer: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self::from_preset(&LoginName::with_sub("oidc", name), &LoginPreset::openid_connect(), issuer, client_id)
    }

    /// The scopes as sent (without `openid`, which is always added), in order, without duplicates.
    fn scopes(&self) -> Vec<Scope> {
        let mut seen = Vec::new();
        for scope in self.scopes.iter().flat_map(|s| s.split_whitespace()) {
            if scope != "openid" && !seen.iter().any(|s: &String| s == scope) {
                seen.push(scope.to_owned());
            }
        }
        seen.into_iter().map(Scope::new).collect()
    }
}

/// Why a login, a refresh or a token lookup failed. Messages name the provider; none carries a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The settings are wrong.
    #[error("{key}: {message}")]
    Config {
        /// The config key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The issuer's discovery document could not be read.
    #[error("{provider}: cannot read the OpenID configuration of {issuer}: {message}")]
    Discovery {
        /// The provider.
        provider: String,
        /// The issuer.
        issuer: String,
        /// Why.
        message: String,
    },
    /// The issuer answered a request with an error.
    #[error("{provider}: the issuer refused the {what}: {message}")]
    Rejected {
        /// The provider.
        provider: String,
        /// Which request.
        what: &'static str,
        /// The OAuth error code and description.
        message: String,
    },
    /// A request to the issuer failed on the way.
    #[error("{provider}: the {what} request failed: {message}")]
    Http {
        /// The provider.
        provider: String,
        /// Which request.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The ID token is not acceptable (signature, issuer, audience, expiry or nonce).
    #[error("{provider}: the ID token was rejected: {message}")]
    InvalidIdToken {
        /// The provider.
        provider: String,
        /// Why.
        message: String,
    },
    /// No usable session, and the caller does not allow prompting the user.
    #[error("{provider}: not logged in ({reason})")]
    NotLoggedIn {
        /// The provider.
        provider: String,
        /// Why the stored session cannot be used.
        reason: String,
    },
    /// The user did not finish in time.
    #[error("{provider}: the login was not completed within {seconds} s")]
    Timeout {
        /// The provider.
        provider: String,
        /// The limit.
        seconds: u64,
    },
    /// The session store cannot be used (a folder that is not the user's, a file that is a link, …).
    #[error("{provider}: the login session store: {source}")]
    Store {
        /// The provider.
        provider: String,
        /// The failure.
        #[source]
        source: kubeauth_core::store::StoreError,
    },
    /// A local file or socket failed.
    #[error("{provider}: {what}: {source}")]
    Io {
        /// The provider.
        provider: String,
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// What the user is asked to do during a login.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Prompt<'a> {
    /// Open this URL in a browser (authorization code flow).
    OpenUrl(&'a str),
    /// Visit `uri` on any device and enter `code` (device flow); `complete` has the code in it already.
    EnterCode {
        /// The verification URI.
        uri: &'a str,
        /// The user code.
        code: &'a str,
        /// The verification URI with the code, when the issuer gives one.
        complete: Option<&'a str>,
    },
}

/// Which interactive flow a full login uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    /// Authorization code + PKCE through the browser and a loopback redirect.
    #[default]
    Browser,
    /// Device authorization grant.
    Device,
}

/// Shows a [`Prompt`] to the user.
pub type PromptFn<'a> = &'a (dyn Fn(Prompt<'_>) + Send + Sync);

#[derive(Clone, Debug, Deserialize, Serialize)]
struct DeviceEndpoint {
    #[serde(default)]
    device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
}
impl AdditionalProviderMetadata for DeviceEndpoint {}

type Metadata = ProviderMetadata<
    DeviceEndpoint,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type DiscoveredClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

struct Discovered {
    client: DiscoveredClient,
    device: Option<DeviceAuthorizationUrl>,
}

/// The HTTP client handed to `openidconnect`: one reqwest client, no redirects followed.
struct Http(reqwest::Client);

/// A failed HTTP exchange with the issuer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|e| HttpError(e.to_string()))?;
            let url = request.url().clone();
            let response = self.0.execute(request).await.map_err(|e| HttpError(describe(e, &url)))?;
            let mut builder = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response.bytes().await.map_err(|e| HttpError(describe(e, &url)))?;
            builder.body(body.to_vec()).map_err(|e| HttpError(e.to_string()))
        })
    }
}

/// A reqwest error with its causes, and the URL without its query (which may carry codes).
fn describe(error: reqwest::Error, url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    let error = error.without_url();
    let mut text = format!("{url}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Signs a user in to one identity provider and keeps the session.
pub struct Login {
    settings: LoginSettings,
    store: SessionStore,
    http: Http,
    discovered: OnceCell<Discovered>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("settings", &self.settings).field("store", &self.store).finish_non_exhaustive()
    }
}

/// A started authorization code flow: the URL to open and the listener waiting for the redirect.
pub struct CodeFlow {
    url: String,
    listener: tokio::net::TcpListener,
    redirect: RedirectUrl,
    csrf: CsrfToken,
    nonce: Nonce,
    verifier: openidconnect::PkceCodeVerifier,
}

impl std::fmt::Debug for CodeFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeFlow").field("redirect", &self.redirect.as_str()).finish_non_exhaustive()
    }
}

impl CodeFlow {
    /// The authorization URL the user's browser opens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The nonce this login expects in its ID token.
    pub fn nonce(&self) -> &str {
        self.nonce.secret()
    }
}

/// What a verified ID token says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdTokenInfo {
    /// `sub`.
    pub subject: String,
    /// `email`, if present.
    pub email: Option<String>,
    /// `exp`.
    pub expires_at: SystemTime,
}

impl Login {
    /// A login for `settings`, keeping its session in `store`.
    pub fn new(settings: LoginSettings, store: SessionStore) -> Result<Self, LoginError> {
        let config = |message: String| LoginError::Config { key: settings.config_key.clone(), message };
        if settings.client_id.trim().is_empty() {
            return Err(config("clientId is missing".into()));
        }
        let issuer = reqwest::Url::parse(&settings.issuer)
            .map_err(|e| config(format!("issuer {:?} is not a URL: {e}", settings.issuer)))?;
        let loopback = matches!(issuer.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
            return Err(config(format!("issuer {} must be an https URL", settings.issuer)));
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("kubeauth/", env!("CARGO_PKG_VERSION")));
        if let Some(file) = &settings.ca_file {
            let pem = std::fs::read(file).map_err(|e| config(format!("caFile {}: {e}", file.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config(format!("caFile {}: not PEM certificates: {e}", file.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| config(format!("CA certificates: not PEM certificates: {e}")))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { settings, store, http: Http(client), discovered: OnceCell::new() })
    }

    /// The settings.
    pub fn settings(&self) -> &LoginSettings {
        &self.settings
    }

    /// The stored session, whatever its state.
    pub fn stored(&self) -> Result<Option<Session>, LoginError> {
        self.store.read(&self.settings).map_err(|e| self.store_error(e))
    }

    /// Forgets the stored session; whether there was one.
    pub fn logout(&self) -> Result<bool, LoginError> {
        self.store.remove(&self.settings).map_err(|e| self.store_error(e))
    }

    /// The token to send, from a session that stays valid for more than [`FRESHNESS_MARGIN`]: the stored one
    /// (no network), else a refreshed one, else — only when `interactive` is given — a new login with that flow.
    /// Under the session's lock, so that parallel callers refresh once.
    pub async fn session(&self, interactive: Option<(Flow, PromptFn<'_>)>) -> Result<Session, LoginError> {
        if let Some(session) = self.stored()?.filter(|s| s.is_fresh(FRESHNESS_MARGIN)) {
            return Ok(session);
        }
        let _lock = self.store.lock(&self.settings).await.map_err(|e| self.store_error(e))?;
        let stored = self.stored()?;
        if let Some(session) = stored.clone().filter(|s| s.is_fresh(FRESHNESS_MARGIN)) {
            // Another process refreshed it while this one waited for the lock.
            return Ok(session);
        }
        let reason = match &stored {
            None => "no session".to_owned(),
            Some(session) if session.refresh_token.is_none() => "the session expired and has no refresh token".into(),
            Some(session) => match self.refresh(session).await {
                Ok(session) => {
                    self.save(&session)?;
                    return Ok(session);
                }
                Err(e) => {
                    tracing::debug!(provider = %self.settings.name, error = %e, "refresh failed");
                    format!("the session expired and refreshing it failed: {e}")
                }
            },
        };
        let Some((flow, prompt)) = interactive else {
            return Err(LoginError::NotLoggedIn { provider: self.settings.name.clone(), reason });
        };
        tracing::info!(provider = %self.settings.name, %reason, "a new login is needed");
        let session = self.login_with(flow, prompt).await?;
        self.save(&session)?;
        Ok(session)
    }

    /// A full interactive login with `flow`, stored as the session.
    pub async fn login(&self, flow: Flow, prompt: PromptFn<'_>) -> Result<Session, LoginError> {
        let session = self.login_with(flow, prompt).await?;
        let _lock = self.store.lock(&self.settings).await.map_err(|e| self.store_error(e))?;
        self.save(&session)?;
        Ok(session)
    }

    async fn login_with(&self, flow: Flow, prompt: PromptFn<'_>) -> Result<Session, LoginError> {
        match flow {
            Flow::Browser => {
                let code_flow = self.start_code_flow().await?;
                prompt(Prompt::OpenUrl(code_flow.url()));
                self.finish_code_flow(code_flow).await
            }
            Flow::Device => self.device_flow(prompt).await,
        }
    }

    /// Starts an authorization code flow: binds the loopback redirect listener and builds the URL to open.
    pub async fn start_code_flow(&self) -> Result<CodeFlow, LoginError> {
        let discovered = self.discover().await?;
        let listener =
            tokio::net::TcpListener::bind(("127.0.0.1", self.settings.redirect_port)).await.map_err(|source| {
                self.io(
                    format!("cannot listen on 127.0.0.1:{} for the login redirect", self.settings.redirect_port),
                    source,
                )
            })?;
        let port = listener.local_addr().map_err(|source| self.io("cannot read the listener's port", source))?.port();
        let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/callback"))
            .map_err(|e| self.config(format!("redirect URL: {e}")))?;
        let client = discovered.client.clone().set_redirect_uri(redirect.clone());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scopes(self.settings.scopes())
            .set_pkce_challenge(challenge);
        for (name, value) in &self.settings.extra_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, csrf, nonce) = request.url();
        Ok(CodeFlow { url: url.to_string(), listener, redirect, csrf, nonce, verifier })
    }

    /// Waits for the browser's redirect, then exchanges the code (with the PKCE verifier) and verifies the ID
    /// token against the flow's nonce. Does not store the session.
    pub async fn finish_code_flow(&self, flow: CodeFlow) -> Result<Session, LoginError> {
        let provider = self.settings.name.clone();
        let wait = callback::wait(&flow.listener, flow.csrf.secret(), &provider);
        let code = tokio::time::timeout(self.settings.login_timeout, wait).await.map_err(|_| {
            LoginError::Timeout { provider: provider.clone(), seconds: self.settings.login_timeout.as_secs() }
        })??;
        let discovered = self.discover().await?;
        let client = discovered.client.clone().set_redirect_uri(flow.redirect);
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| self.config(format!("the issuer has no token endpoint: {e}")))?
            .set_pkce_verifier(flow.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error("authorization code exchange", e))?;
        self.session_from(&client, response, Some(&flow.nonce), None)
    }

    async fn device_flow(&self, prompt: PromptFn<'_>) -> Result<Session, LoginError> {
        let discovered = self.discover().await?;
        let device = discovered.device.clone().ok_or_else(|| LoginError::Discovery {
            provider: self.settings.name.clone(),
            issuer: self.settings.issuer.clone(),
            message: "no device_authorization_endpoint: this issuer does not offer the device flow".into(),
        })?;
        let client = discovered.client.clone().set_device_authorization_url(device);
        let mut request = client.exchange_device_code().add_scopes(self.settings.scopes());
        for (name, value) in &self.settings.extra_params {
            if name != "access_type" {
                request = request.add_extra_param(name.clone(), value.clone());
            }
        }
        let details: CoreDeviceAuthorizationResponse =
            request.request_async(&self.http).await.map_err(|e| self.token_error("device authorization", e))?;
        prompt(Prompt::EnterCode {
            uri: details.verification_uri().as_str(),
            code: details.user_code().secret(),
            complete: details.verification_uri_complete().map(|u| u.secret().as_str()),
        });
        let response = client
            .exchange_device_access_token(&details)
            .map_err(|e| self.config(format!("the issuer has no token endpoint: {e}")))?
            .request_async(&self.http, tokio::time::sleep, Some(self.settings.login_timeout))
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(ref r) if r.error().as_ref() == "expired_token" => {
                    LoginError::Timeout {
                        provider: self.settings.name.clone(),
                        seconds: self.settings.login_timeout.as_secs(),
                    }
                }
                other => self.token_error("device code exchange", other),
            })?;
        // A device flow has no nonce to check.
        self.session_from(&discovered.client, response, None, None)
    }

    /// Refreshes a session with its refresh token. Does not store it.
    pub async fn refresh(&self, session: &Session) -> Result<Session, LoginError> {
        let refresh = session.refresh_token.clone().ok_or_else(|| LoginError::NotLoggedIn {
            provider: self.settings.name.clone(),
            reason: "the session has no refresh token".into(),
        })?;
        self.refresh_grant(refresh, Some(session)).await
    }

    /// A session from a refresh token kept elsewhere (a kubeconfig's): the answer must carry an ID token, which
    /// is verified. Does not store it.
    pub async fn refresh_token(&self, refresh_token: &SecretString) -> Result<Session, LoginError> {
        self.refresh_grant(refresh_token.expose_secret().to_owned(), None).await
    }

    async fn refresh_grant(&self, refresh: String, session: Option<&Session>) -> Result<Session, LoginError> {
        let discovered = self.discover().await?;
        let response = discovered
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh))
            .map_err(|e| self.config(format!("the issuer has no token endpoint: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error("refresh", e))?;
        self.session_from(&discovered.client, response, None, session)
    }

    /// Verifies an ID token of this issuer and client: signature (issuer's JWKS), issuer, audience, expiry, and
    /// the nonce when one is expected.
    pub async fn verify_id_token(&self, raw: &str, nonce: Option<&str>) -> Result<IdTokenInfo, LoginError> {
        let discovered = self.discover().await?;
        let token = CoreIdToken::from_str(raw).map_err(|e| self.invalid(format!("not a JWT: {e}")))?;
        self.verify(&discovered.client, &token, nonce.map(|n| Nonce::new(n.to_owned())).as_ref())
    }

    fn verify(
        &self,
        client: &DiscoveredClient,
        token: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<IdTokenInfo, LoginError> {
        let verifier = client.id_token_verifier();
        let claims = match nonce {
            Some(nonce) => token.claims(&verifier, nonce),
            // Refreshed and device-flow ID tokens carry no nonce of ours.
            None => token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| self.invalid(e.to_string()))?;
        Ok(IdTokenInfo {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_owned()),
            expires_at: SystemTime::from(claims.expiration()),
        })
    }

    fn session_from(
        &self,
        client: &DiscoveredClient,
        response: CoreTokenResponse,
        nonce: Option<&Nonce>,
        previous: Option<&Session>,
    ) -> Result<Session, LoginError> {
        let id_token = response.id_token();
        let info = match (id_token, previous) {
            (Some(token), _) => Some(self.verify(client, token, nonce)?),
            (None, Some(_)) if self.settings.send == SendToken::AccessToken => None,
            (None, _) => return Err(self.invalid("the token response has no ID token".into())),
        };
        let access_expiry = response.expires_in().map(|d| SystemTime::now() + d);
        let expires_at = match (self.settings.send, &info) {
            (SendToken::IdToken, Some(info)) => info.expires_at,
            (SendToken::IdToken, None) => return Err(self.invalid("the token response has no ID token".into())),
            (SendToken::AccessToken, _) => access_expiry
                .or(info.as_ref().map(|i| i.expires_at))
                .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600)),
        };
        let (subject, email) = match (&info, previous) {
            (Some(info), _) => (info.subject.clone(), info.email.clone()),
            (None, Some(previous)) => (previous.subject.clone(), previous.email.clone()),
            (None, None) => return Err(self.invalid("the token response has no ID token".into())),
        };
        Ok(Session {
            issuer: self.settings.issuer.clone(),
            client_id: self.settings.client_id.clone(),
            scopes: self.settings.scopes.clone(),
            subject,
            email,
            id_token: id_token.map(|t| t.to_string()).or_else(|| previous.and_then(|p| p.id_token.clone())),
            access_token: response.access_token().secret().clone(),
            // Issuers that do not rotate refresh tokens answer a refresh without one: keep the old one.
            refresh_token: response
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            expires_at: expires_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
        })
    }

    fn save(&self, session: &Session) -> Result<(), LoginError> {
        self.store.write(&self.settings, session).map_err(|e| self.store_error(e))
    }

    fn store_error(&self, source: kubeauth_core::store::StoreError) -> LoginError {
        LoginError::Store { provider: self.settings.name.clone(), source }
    }

    async fn discover(&self) -> Result<&Discovered, LoginError> {
        self.discovered
            .get_or_try_init(|| async {
                let discovery = |message: String| LoginError::Discovery {
                    provider: self.settings.name.clone(),
                    issuer: self.settings.issuer.clone(),
                    message,
                };
                let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| discovery(e.to_string()))?;
                let metadata = Metadata::discover_async(issuer, &self.http).await.map_err(|e| discovery(chain(&e)))?;
                let device = metadata.additional_metadata().device_authorization_endpoint.clone();
                let secret =
                    self.settings.client_secret.as_ref().map(|s| ClientSecret::new(s.expose_secret().to_owned()));
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(self.settings.client_id.clone()),
                    secret,
                );
                Ok(Discovered { client, device })
            })
            .await
    }

    fn token_error<RE, T>(&self, what: &'static str, error: RequestTokenError<RE, T>) -> LoginError
    where
        RE: std::error::Error + 'static,
        T: openidconnect::ErrorResponse + 'static,
    {
        let provider = self.settings.name.clone();
        match error {
            RequestTokenError::ServerResponse(response) => {
                // The error response as JSON: the code and the description, never a token.
                let message = serde_json::to_value(&response)
                    .ok()
                    .map(|v| {
                        let code = v.get("error").and_then(|e| e.as_str()).unwrap_or("error").to_owned();
                        match v.get("error_description").and_then(|e| e.as_str()) {
                            Some(description) => format!("{code}: {description}"),
                            None => code,
                        }
                    })
                    .unwrap_or_else(|| "error".into());
                LoginError::Rejected { provider, what, message }
            }
            RequestTokenError::Request(e) => LoginError::Http { provider, what, message: chain(&e) },
            RequestTokenError::Parse(e, _body) => {
                LoginError::Http { provider, what, message: format!("unreadable answer: {}", e.path()) }
            }
            RequestTokenError::Other(message) => LoginError::Http { provider, what, message },
        }
    }

    fn config(&self, message: String) -> LoginError {
        LoginError::Config { key: self.settings.config_key.clone(), message }
    }

    fn invalid(&self, message: String) -> LoginError {
        LoginError::InvalidIdToken { provider: self.settings.name.clone(), message }
    }

    fn io(&self, what: impl Into<String>, source: std::io::Error) -> LoginError {
        LoginError::Io { provider: self.settings.name.clone(), what: what.into(), source }
    }
}

/// An error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
