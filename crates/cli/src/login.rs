//! `kubeauth login` and `kubeauth logout`, and the prompting of the login behind `kubeauth token`. Everything
//! else of the login (which one a cluster needs, its settings, the session store, refresh) is the library's
//! ([`kubeauth::login::Logins`]).

use std::path::PathBuf;
use std::process::ExitCode;

use kubeauth::login::{Flow, LoginError, LoginName, Prompt, UserAuth};
use kubeauth::{ClusterDetails, Kubeauth};

use crate::context::{find, load_config, locate, toolkit};
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
    /// The login a cluster needs.
    Cluster(&'a str),
    /// A login by name: `oidc.<name>`, `google`, `aks`, or a custom provider's.
    Provider(&'a str),
    /// The only configured one.
    Default,
}

/// `kubeauth login`: a full interactive login, stored as the session.
pub(crate) async fn run_login(
    config: &[PathBuf],
    target: Target<'_>,
    options: PromptOptions,
) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let kubeauth = toolkit(&loaded.config)?;
    let login = resolve_target(&kubeauth, target).await?;
    let engine = kubeauth.logins().open(&login).map_err(|e| Failure::config(&e))?;
    let prompt = prompter(&login, options);
    let session = engine.login(options.flow(), &prompt).await.map_err(|e| Failure::runtime(&e))?;
    println!("Logged in to {login} as {}; the token is valid until {}.", session.user(), rfc3339(session.expires_at()));
    Ok(ExitCode::SUCCESS)
}

/// `kubeauth logout`: forgets one login's session, or all of them.
pub(crate) async fn run_logout(config: &[PathBuf], target: Option<Target<'_>>) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let kubeauth = toolkit(&loaded.config)?;
    let logins = kubeauth.logins();
    let Some(target) = target else {
        let removed = logins.logout_all().map_err(|e| Failure::runtime(&e))?;
        let dir = logins.store().map(|s| s.dir().display().to_string()).unwrap_or_default();
        println!("Removed {removed} session(s) from {dir}.");
        return Ok(ExitCode::SUCCESS);
    };
    let login = resolve_target(&kubeauth, target).await?;
    let engine = logins.open(&login).map_err(|e| Failure::config(&e))?;
    let removed = engine.logout().map_err(|e| Failure::runtime(&e))?;
    println!("{}", if removed { format!("Logged out of {login}.") } else { format!("Not logged in to {login}.") });
    Ok(ExitCode::SUCCESS)
}

/// The signed-in user's token for `cluster` from the login session, prompting only when `interactive`; `None`
/// for a cluster whose provider needs no login.
pub(crate) async fn user_auth(
    kubeauth: &Kubeauth,
    cluster: &ClusterDetails,
    interactive: Option<PromptOptions>,
) -> Result<Option<UserAuth>, Failure> {
    let Some(login) = kubeauth.logins().login_for(cluster) else { return Ok(None) };
    let prompt = interactive.map(|options| (options, prompter(&login, options)));
    let interactive =
        prompt.as_ref().map(|(options, prompt)| (options.flow(), prompt as kubeauth::login::PromptFn<'_>));
    kubeauth.logins().user_auth(cluster, interactive).await.map_err(|e| match e {
        kubeauth::Error::Login(e @ LoginError::NotLoggedIn { .. }) => Failure::Runtime(format!(
            "cluster '{}': {e}; run `kubeauth login --cluster {}` (kubectl did not allow prompting here)",
            cluster.name, cluster.name
        )),
        e @ kubeauth::Error::Locator(_) => Failure::config(&e),
        other => Failure::Runtime(format!("cluster '{}': {}", cluster.name, kubeauth::report(&other))),
    })
}

async fn resolve_target(kubeauth: &Kubeauth, target: Target<'_>) -> Result<LoginName, Failure> {
    match target {
        Target::Provider(name) => name.parse().map_err(Failure::Config),
        Target::Cluster(cluster) => {
            let clusters = locate(kubeauth).await?;
            let cluster = find(&clusters, cluster)?;
            kubeauth.logins().login_for(cluster).ok_or_else(|| {
                Failure::Config(format!(
                    "cluster '{}': its authProvider {} uses the application's identity; there is nothing to log in to",
                    cluster.name,
                    cluster.auth_provider().unwrap_or("(none)")
                ))
            })
        }
        Target::Default => match kubeauth.logins().configured().as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Failure::Config("kubeauth.login: no login is configured (see docs/providers/oidc.md)".into())),
            many => Err(Failure::Config(format!(
                "kubeauth.login has several logins ({}): choose one with --provider or --cluster",
                many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ))),
        },
    }
}

/// Shows prompts on stderr (stdout is the ExecCredential's), and starts the browser unless told not to.
fn prompter(name: &LoginName, options: PromptOptions) -> impl Fn(Prompt<'_>) + Send + Sync + 'static {
    let name = name.to_string();
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

/// Starts the user's browser where there is one (see [`browser_program`]).
fn open_browser(url: &str) {
    let Some(program) = browser_program(|name| std::env::var(name).ok(), which) else { return };
    let program = program.as_str();
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

/// The program that opens a URL: `$BROWSER` when set (as git, gh and xdg-utils honour it), `open` on macOS,
/// Windows' own browser under WSL (`wslview` from wslu, else `explorer.exe`), `xdg-open` under a graphical
/// session; none on a headless machine, where the URL printed is the way.
fn browser_program(env: impl Fn(&str) -> Option<String>, on_path: impl Fn(&str) -> bool) -> Option<String> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(browser) = set("BROWSER") {
        return Some(browser);
    }
    let program = if cfg!(target_os = "macos") {
        "open"
    } else if set("WSL_DISTRO_NAME").is_some() || set("WSL_INTEROP").is_some() {
        if on_path("wslview") { "wslview" } else { "explorer.exe" }
    } else if set("DISPLAY").is_some() || set("WAYLAND_DISPLAY").is_some() {
        "xdg-open"
    } else {
        return None;
    };
    Some(program.to_owned())
}

/// Whether `program` is on the `PATH`.
fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod browser_tests {
    use super::browser_program;

    fn with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    #[cfg(not(target_os = "macos"))]
    fn the_browser_is_browser_then_wsl_then_xdg_open_else_none() {
        let nothing = |_: &str| false;
        assert_eq!(
            browser_program(with(&[("BROWSER", "firefox"), ("DISPLAY", ":0")]), nothing).as_deref(),
            Some("firefox")
        );
        assert_eq!(browser_program(with(&[("WSL_DISTRO_NAME", "Ubuntu")]), nothing).as_deref(), Some("explorer.exe"));
        assert_eq!(browser_program(with(&[("WSL_INTEROP", "/run/x")]), |p| p == "wslview").as_deref(), Some("wslview"));
        assert_eq!(browser_program(with(&[("WAYLAND_DISPLAY", "wayland-0")]), nothing).as_deref(), Some("xdg-open"));
        assert_eq!(browser_program(with(&[("BROWSER", " ")]), nothing), None, "headless: the printed URL only");
    }
}
