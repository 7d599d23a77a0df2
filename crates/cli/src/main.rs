//! The `kubeauth` command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kubeauth::{AppConfig, CombinedLocator, Registry, ResolveContext};
use kubeauth_server::KubeauthServer;

/// Kubernetes authentication for every cluster.
#[derive(Debug, Parser)]
#[command(name = "kubeauth", version, about, propagate_version = true)]
struct Cli {
    /// The config file (a Backstage app-config.yaml). Else $KUBEAUTH_CONFIG, else ./app-config.yaml if present,
    /// else the embedded default (the localKubectlProxy locator).
    #[arg(long, global = true, env = "KUBEAUTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Backstage-compatible Kubernetes API: cluster list and authenticating proxy.
    Serve {
        /// Where to listen (a loopback address).
        #[arg(long, default_value = kubeauth_server::DEFAULT_LISTEN, value_name = "ADDR")]
        listen: SocketAddr,
    },
}

/// A failure, and the exit code it gets: 2 for a wrong config or usage, 1 for anything at run time.
enum Failure {
    Config(String),
    Runtime(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(Failure::Runtime(format!("cannot start the async runtime: {e}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure),
    }
}

fn fail(failure: Failure) -> ExitCode {
    let (message, code) = match failure {
        Failure::Config(m) => (m, 2),
        Failure::Runtime(m) => (m, 1),
    };
    eprintln!("kubeauth: {message}");
    ExitCode::from(code)
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// The config, from the first of: `--config`, `$KUBEAUTH_CONFIG`, `./app-config.yaml`, the embedded default.
fn load_config(explicit: Option<&Path>) -> Result<AppConfig, Failure> {
    let config_error = |e: kubeauth::LocatorError| Failure::Config(kubeauth::report(&e));
    if let Some(path) = explicit {
        return AppConfig::from_file(path).map_err(config_error);
    }
    let local = Path::new("app-config.yaml");
    if local.is_file() {
        tracing::info!("using ./app-config.yaml");
        return AppConfig::from_file(local).map_err(config_error);
    }
    tracing::info!("no config given: using the embedded default (the localKubectlProxy locator)");
    Ok(AppConfig::embedded_default())
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Serve { listen } => serve(cli.config.as_deref(), listen).await,
    }
}

async fn serve(config: Option<&Path>, listen: SocketAddr) -> Result<(), Failure> {
    if !listen.ip().is_loopback() {
        return Err(Failure::Config(format!(
            "refusing to listen on {listen}: the proxy authenticates with the server's own credentials and the API \
             has no authentication of its callers yet; listen on a loopback address"
        )));
    }
    let config = load_config(config)?;
    let locator = CombinedLocator::from_config(&config, &ResolveContext::from_process_env())
        .map_err(|e| Failure::Config(kubeauth::report(&e)))?;
    let server = KubeauthServer::new(Registry::with_defaults(), locator);
    let clusters = server.check().await.map_err(|e| Failure::Config(kubeauth::report(&e)))?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr().map_err(|e| Failure::Runtime(e.to_string()))?;
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    tracing::info!(clusters = ?names, "listening on http://{address}");
    axum::serve(listener, server.router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Failure::Runtime(format!("server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
