//! The `kubeauth` command, as a library: [`main`] runs it with the process's arguments. The binary is
//! `src/main.rs`; the end-to-end tests build the same command from here.
//!
//! Exit codes: 0 success, 1 a failure at run time (a provider, a cluster, the network), 2 a wrong config or
//! wrong usage.

mod can_i;
mod clusters;
mod context;
mod doctor;
mod exec_credential;
mod failure;
mod kubeconfig;
mod login;
mod serve;
mod table;
mod token;
mod token_cache;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

use crate::failure::Failure;

/// Kubernetes authentication for every cluster.
#[derive(Debug, Parser)]
#[command(name = "kubeauth", version, about, propagate_version = true)]
struct Cli {
    /// The config file (a Backstage app-config.yaml); several are merged in order, as Backstage merges
    /// app-config.yaml and app-config.production.yaml. Else $KUBEAUTH_CONFIG (files separated by `:`), else the
    /// embedded default (the localKubectlProxy locator); ./app-config.yaml is read only when named.
    #[arg(long, global = true, env = "KUBEAUTH_CONFIG", value_name = "FILE", value_delimiter = ':')]
    config: Vec<PathBuf>,

    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr: no warnings, no progress.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
    /// YAML for programs and people.
    Yaml,
    /// The names alone, one a line (for `xargs` and shell loops).
    Name,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the located clusters: title, URL, auth provider, TLS mode and configuration problems.
    Clusters {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Whether a Backstage user may VERB RESOURCE through `kubeauth serve`, per cluster: by kubeauth's permission
    /// rules and by the cluster (asked as `kubeauth serve` would ask, impersonating the user where configured).
    CanI {
        /// The verb, as the API server names it: get, list, watch, create, update, patch, delete, ...
        verb: String,
        /// The resource: pods, pods/exec, deployments.apps, ...
        resource: String,
        /// The namespace (none: cluster-wide).
        #[arg(short, long)]
        namespace: Option<String>,
        /// The user's entity ref, e.g. user:default/alice.
        #[arg(long = "as", value_name = "USER")]
        user: String,
        /// An ownership ref of the user (repeat for each), e.g. group:default/team-a.
        #[arg(long = "as-group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Only this cluster.
        #[arg(long, value_name = "NAME", add = cluster_names())]
        cluster: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Check each cluster: credential, API server reachable, identity, permission to list namespaces.
    Doctor {
        /// Only this cluster.
        #[arg(long, value_name = "NAME", add = cluster_names())]
        cluster: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
        /// Give up on a cluster after this many seconds.
        #[arg(long, default_value_t = 20, value_name = "SECONDS")]
        timeout: u64,
        /// Fail (exit 2) when the config holds keys kubeauth does not read, instead of warning about them.
        #[arg(long)]
        strict: bool,
    },
    /// Print an ExecCredential for a cluster: the kubectl exec-credential plugin.
    Token {
        /// The cluster.
        #[arg(long, value_name = "NAME", add = cluster_names())]
        cluster: String,
        /// For oidc, google and aks clusters, when a new login is needed and kubectl allows prompting: use the
        /// device flow (a code to enter on another device) instead of the browser.
        #[arg(long)]
        device: bool,
        /// For oidc, google and aks clusters: print the login URL without starting a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Log in to the identity provider of oidc, google and aks clusters (`kubeauth.login` in the config).
    Login {
        /// The identity provider this cluster needs.
        #[arg(long, value_name = "NAME", conflicts_with = "provider", add = cluster_names())]
        cluster: Option<String>,
        /// The identity provider: `oidc.<name>`, `google` or `aks`. Default: the only one configured.
        #[arg(long, value_name = "NAME")]
        provider: Option<String>,
        /// Use the device flow (a code to enter on another device) instead of the browser.
        #[arg(long)]
        device: bool,
        /// Print the login URL without starting a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Forget the login session of an identity provider, or every session with --all.
    Logout {
        /// The identity provider this cluster needs.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["provider", "all"], add = cluster_names())]
        cluster: Option<String>,
        /// The identity provider: `oidc.<name>`, `google` or `aks`.
        #[arg(long, value_name = "NAME", conflicts_with = "all")]
        provider: Option<String>,
        /// Every stored session.
        #[arg(long)]
        all: bool,
    },
    /// Write a kubeconfig whose users run `kubeauth token` for the located clusters.
    Kubeconfig {
        /// Only this cluster.
        #[arg(long, value_name = "NAME", add = cluster_names())]
        cluster: Option<String>,
        /// Output format on stdout.
        #[arg(short, long, value_enum, default_value_t, conflicts_with_all = ["output_file", "merge"])]
        output: kubeconfig::KubeconfigFormat,
        /// Write to this file (mode 0600, replaced) instead of stdout.
        #[arg(long, value_name = "FILE", conflicts_with = "merge")]
        output_file: Option<PathBuf>,
        /// Merge into the kubeconfig kubectl reads (the first file of $KUBECONFIG, else ~/.kube/config): entries
        /// of the same names replaced, the others kept, the previous file kept beside it as *.kubeauth-backup.
        #[arg(long)]
        merge: bool,
    },
    /// Serve the Backstage-compatible Kubernetes API: the cluster list and the authenticating proxy.
    Serve {
        /// Where to listen (a loopback address).
        #[arg(long, default_value = kubeauth_server::DEFAULT_LISTEN, value_name = "ADDR")]
        listen: SocketAddr,
    },
    /// Print the JSON Schema of the config.
    Schema,
    /// Print a static shell completion script (for completions that also offer the cluster names, see
    /// `COMPLETE=<shell> kubeauth` in docs/cli.md).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Completes `--cluster` with the names of the clusters of `KUBEAUTH_CONFIG` (or the embedded default), read
/// from the config alone: no locator asks a service while the user presses Tab.
fn cluster_names() -> clap_complete::engine::ArgValueCompleter {
    clap_complete::engine::ArgValueCompleter::new(|current: &std::ffi::OsStr| {
        let current = current.to_string_lossy();
        let files: Vec<PathBuf> = std::env::var_os("KUBEAUTH_CONFIG")
            .map(|v| v.to_string_lossy().split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect())
            .unwrap_or_default();
        let Ok(loaded) = context::load_config(&files) else { return Vec::new() };
        context::configured_cluster_names(&loaded.config)
            .into_iter()
            .filter(|name| name.starts_with(current.as_ref()))
            .map(clap_complete::engine::CompletionCandidate::new)
            .collect()
    })
}

/// Runs the command with the process's arguments and environment; its exit code.
pub fn main() -> ExitCode {
    // `COMPLETE=bash kubeauth` prints the script that asks kubeauth itself for completions, cluster names included;
    // with the completion protocol's arguments, the completions. Nothing else runs then.
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return failure::exit(Failure::Runtime(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(failure) => failure::exit(failure),
    }
}

/// `--quiet`: no progress lines either.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether `--quiet` was given.
fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match verbose {
        // kube-client logs every failed connection, and the platform verifier every refused certificate, at error
        // level; the commands report those themselves, with the cluster's name.
        _ if quiet => "error,kube_client=off,rustls_platform_verifier=off",
        0 => "warn,kube_client=off,rustls_platform_verifier=off,kubeauth=info,kubeauth_server=info",
        1 => "debug",
        _ => "trace",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // aws-sigv4 traces the canonical request it signs, session token included: never, whatever RUST_LOG says.
    for directive in ["aws_sigv4=off"] {
        if let Ok(directive) = directive.parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Colours only for a person at a terminal, not in files and pipes, and never with NO_COLOR (no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
}

fn target<'a>(cluster: Option<&'a str>, provider: Option<&'a str>) -> login::Target<'a> {
    match (cluster, provider) {
        (Some(cluster), _) => login::Target::Cluster(cluster),
        (None, Some(provider)) => login::Target::Provider(provider),
        (None, None) => login::Target::Default,
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let config = cli.config.as_slice();
    match cli.command {
        Command::Clusters { output } => clusters::run(config, output).await,
        Command::CanI { verb, resource, namespace, user, groups, cluster, output } => {
            let question = can_i::Question {
                verb: &verb,
                resource: &resource,
                namespace: namespace.as_deref(),
                user: &user,
                groups: &groups,
            };
            can_i::run(config, cluster.as_deref(), question, output).await
        }
        Command::Doctor { cluster, output, timeout, strict } => {
            doctor::run(config, cluster.as_deref(), output, timeout, strict).await
        }
        Command::Token { cluster, device, no_browser } => {
            token::run(config, &cluster, login::PromptOptions { device, no_browser }).await
        }
        Command::Login { cluster, provider, device, no_browser } => {
            login::run_login(
                config,
                target(cluster.as_deref(), provider.as_deref()),
                login::PromptOptions { device, no_browser },
            )
            .await
        }
        Command::Logout { cluster, provider, all } => {
            let target = if all { None } else { Some(target(cluster.as_deref(), provider.as_deref())) };
            if target.as_ref().is_some_and(|t| matches!(t, login::Target::Default)) {
                return Err(Failure::Config("say what to log out of: --cluster, --provider or --all".into()));
            }
            login::run_logout(config, target).await
        }
        Command::Kubeconfig { cluster, output, output_file, merge } => {
            let to = match (&output_file, merge) {
                (Some(file), _) => kubeconfig::Destination::File(file),
                (None, true) => kubeconfig::Destination::Merge,
                (None, false) => kubeconfig::Destination::Stdout(output),
            };
            kubeconfig::run(config, cluster.as_deref(), to).await
        }
        Command::Serve { listen } => serve::run(config, listen).await,
        Command::Schema => {
            print!("{}", kubeauth::locator::config_schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kubeauth", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
