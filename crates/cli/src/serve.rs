use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use kubeauth::ResolveContext;
use kubeauth_server::{KubeauthServer, ServerError};

use crate::context::load_config;
use crate::failure::Failure;

/// `kubeauth serve`: the server of the config, checked, then listening until SIGINT or SIGTERM. Every rule
/// (API tokens, loopback, the service locator, the catalog) is the library's own.
pub(crate) async fn run(config: &[PathBuf], listen: SocketAddr) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let failure = |e: ServerError| if e.is_config() { Failure::config(&e) } else { Failure::runtime(&e) };
    let server = KubeauthServer::from_config(&loaded.config, &ResolveContext::from_process_env()).map_err(failure)?;
    server.check_listen_address(listen).map_err(failure)?;
    let clusters = server.check().await.map_err(|e| Failure::config(&e))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr().map_err(|e| Failure::runtime(&e))?;
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    tracing::info!(clusters = ?names, "listening on http://{address}");
    server.serve(listener, shutdown_signal()).await.map_err(failure)?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        let _ = interrupt.await;
        return;
    };
    tokio::select! {
        _ = interrupt => {}
        _ = term.recv() => {}
    }
}
