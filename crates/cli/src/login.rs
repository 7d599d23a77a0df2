//! `kubeauth login` and `kubeauth logout`, and the login behind `kubeauth token` for clusters with a client-side
//! provider (oidc, google, aks).

use std::path::Path;
use std::process::ExitCode;

use kubeauth::login::{
    Flow, Login, LoginError, LoginSettings, Prompt, SendToken, Session, SessionStore, configured_logins,
    default_session_dir, login_name, login_settings,
};
use kubeauth::{AppConfig, ClusterDetails, Credential, RequestAuth, ResolveContext};

use crate::context::{find, load_config, locate, registry};
use crate::exec_credential::rfc3339;
use crate::failure::Failure;

/// How the user is prompted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PromptOptions {
    /// Device flow instead of the browser.
    pub(crate) device: bool,
    /// Only print the URL; do not start a browser.
    pub(crate) no_browser: bool,
}

impl PromptOptions {
    fn flow(self) -> Flow {
        if self.device { Flow::Device } else { Flow::Browser }
    }
}

/// What to log in to or out of.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The identity provider a cluster needs.
    Cluster(&'a str),
    /// An identity provider by name: `oidc.<name>`, `google`, `aks`.
    Provider(&'a str),
    /// The only configured one.
    Default,
}

/// `kubeauth login`: a full interactive login, stored as the session.
pub(crate) async fn run_login(
    config: Option<&Path>,
    target: Target<'_>,
    options: PromptOptions,
) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let name = resolve_target(&loaded.config, target).await?;
    let login = open(&loaded.config, &name)?;
    let prompt = prompter(&name, options);
    let session = login.login(options.flow(), &prompt).await.map_err(|e| Failure::runtime(&e))?;
    println!("Logged in to {name} as {}; the token is valid until {}.", session.user(), rfc3339(session.expires_at()));
    Ok(ExitCode::SUCCESS)
}

/// `kubeauth logout`: forgets one identity provider's session, or all of them.
pub(crate) async fn run_logout(config: Option<&Path>, target: Option<Target<'_>>) -> Result<ExitCode, Failure> {
    let Some(target) = target else {
        let store = SessionStore::new(default_session_dir());
        let removed = store.remove_all().map_err(|e| Failure::Runtime(format!("cannot remove the sessions: {e}")))?;
        println!("Removed {removed} session(s) from {}.", store.dir().display());
        return Ok(ExitCode::SUCCESS);
    };
    let loaded = load_config(config)?;
    let name = resolve_target(&loaded.config, target).await?;
    let login = open(&loaded.config, &name)?;
    let removed = login.logout().map_err(|e| Failure::runtime(&e))?;
    println!("{}", if removed { format!("Logged out of {name}.") } else { format!("Not logged in to {name}.") });
    Ok(ExitCode::SUCCESS)
}

/// The credential of a client-side cluster for `kubeauth token`: the session's token (stored, refreshed, or —
/// when `interactive` — from a new login), handed to the cluster's provider as Backstage's frontend would.
pub(crate) async fn credential(
    config: &AppConfig,
    registry: &kubeauth::Registry,
    cluster: &ClusterDetails,
    name: &str,
    interactive: Option<PromptOptions>,
) -> Result<Credential, Failure> {
    let (auth, session) = request_auth(config, cluster, name, interactive).await?;
    let credential = registry.credential(cluster, &auth).await.map_err(|e| Failure::runtime(&e))?;
    Ok(credential.with_expiry(session.expires_at()))
}

/// The request auth of a client-side cluster from the user's session (identity provider `name`): the stored
/// token, else a refreshed one, else — when `interactive` — a new login; and the session it came from.
pub(crate) async fn request_auth(
    config: &AppConfig,
    cluster: &ClusterDetails,
    name: &str,
    interactive: Option<PromptOptions>,
) -> Result<(RequestAuth, Session), Failure> {
    let login = open(config, name)?;
    let prompt = interactive.map(|options| (options, prompter(name, options)));
    let session = login
        .session(prompt.as_ref().map(|(options, prompt)| (options.flow(), prompt as kubeauth::login::PromptFn<'_>)))
        .await
        .map_err(|e| match e {
            LoginError::NotLoggedIn { .. } => Failure::Runtime(format!(
                "cluster '{}': {e}; run `kubeauth login --cluster {}` (kubectl did not allow prompting here)",
                cluster.name, cluster.name
            )),
            other => Failure::Runtime(format!("cluster '{}': {}", cluster.name, kubeauth::report(&other))),
        })?;
    let token = token_of(&session, login.settings())?;
    Ok((kubeauth::login::request_auth_for(name, token), session))
}

fn token_of(session: &Session, settings: &LoginSettings) -> Result<String, Failure> {
    match settings.send {
        SendToken::IdToken => session
            .id_token
            .clone()
            .ok_or_else(|| Failure::Runtime(format!("{}: the session has no ID token", settings.name))),
        SendToken::AccessToken => Ok(session.access_token.clone()),
    }
}

fn open(config: &AppConfig, name: &str) -> Result<Login, Failure> {
    let settings =
        login_settings(config, &ResolveContext::from_process_env(), name).map_err(|e| Failure::config(&e))?;
    Login::new(settings, SessionStore::new(default_session_dir())).map_err(|e| Failure::config(&e))
}

async fn resolve_target(config: &AppConfig, target: Target<'_>) -> Result<String, Failure> {
    match target {
        Target::Provider(name) => Ok(name.to_owned()),
        Target::Cluster(cluster) => {
            let registry = registry(config)?;
            let clusters = locate(config, &registry).await?;
            let cluster = find(&clusters, cluster)?;
            login_name(cluster).ok_or_else(|| {
                Failure::Config(format!(
                    "cluster '{}': its authProvider {} uses the application's identity; there is nothing to log in to",
                    cluster.name,
                    cluster.auth_provider().unwrap_or("(none)")
                ))
            })
        }
        Target::Default => match configured_logins(config).as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Failure::Config(
                "kubeauth.login: no identity provider is configured (see docs/providers/oidc.md)".into(),
            )),
            many => Err(Failure::Config(format!(
                "kubeauth.login has several identity providers ({}): choose one with --provider or --cluster",
                many.join(", ")
            ))),
        },
    }
}

/// Shows prompts on stderr (stdout is the ExecCredential's), and starts the browser unless told not to.
fn prompter(name: &str, options: PromptOptions) -> impl Fn(Prompt<'_>) + Send + Sync + 'static {
    let name = name.to_owned();
    move |prompt| match prompt {
        Prompt::OpenUrl(url) => {
            eprintln!("kubeauth: to log in to {name}, open this URL in a browser:\n\n    {url}\n");
            if !options.no_browser {
                open_browser(url);
            }
        }
        Prompt::EnterCode { uri, code, complete } => {
            eprintln!("kubeauth: to log in to {name}, visit {uri} and enter the code {code}");
            if let Some(complete) = complete {
                eprintln!("kubeauth: or open {complete}");
            }
        }
        _ => {}
    }
}

/// Starts the user's browser where there is one: `open` on macOS, `xdg-open` under a graphical session.
fn open_browser(url: &str) {
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some() {
        "xdg-open"
    } else {
        return;
    };
    let started = std::process::Command::new(program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = started {
        tracing::debug!(program, error = %e, "cannot start the browser");
    }
}
