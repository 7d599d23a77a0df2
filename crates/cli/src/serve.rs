use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use kubeauth::ResolveContext;
use kubeauth_server::KubeauthServer;

use crate::context::{load_config, registry};
use crate::failure::Failure;

pub(crate) async fn run(config: Option<&Path>, listen: SocketAddr) -> Result<ExitCode, Failure> {
    if !listen.ip().is_loopback() {
        return Err(Failure::Config(format!(
            "refusing to listen on {listen}: the proxy authenticates with the server's own credentials and the API \
             has no authentication of its callers yet; listen on a loopback address"
        )));
    }
    let loaded = load_config(config)?;
    let registry = registry(&loaded.config)?;
    let locator = kubeauth::locator(&loaded.config, &ResolveContext::from_process_env(), &registry)
        .map_err(|e| Failure::config(&e))?;
    let service_locator = match &loaded.config.kubernetes.service_locator_method {
        None => kubeauth_server::ServiceLocator::default(),
        Some(method) => kubeauth_server::ServiceLocator::from_type(&method.kind).ok_or_else(|| {
            Failure::Config(format!(
                "kubernetes.serviceLocatorMethod.type: `{}` is not multiTenant or singleTenant",
                method.kind
            ))
        })?,
    };
    let server = KubeauthServer::new(registry, locator).with_service_locator(service_locator);
    let clusters = server.check().await.map_err(|e| Failure::config(&e))?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr().map_err(|e| Failure::runtime(&e))?;
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    tracing::info!(clusters = ?names, "listening on http://{address}");
    axum::serve(listener, server.router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Failure::Runtime(format!("server failed: {e}")))?;
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
