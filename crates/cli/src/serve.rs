use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use kubeauth::ResolveContext;
use kubeauth_server::KubeauthServer;

use crate::context::{load_config, registry};
use crate::failure::Failure;

pub(crate) async fn run(config: Option<&Path>, listen: SocketAddr) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let tokens = api_tokens(&loaded.config)?;
    if !listen.ip().is_loopback() && tokens.is_empty() {
        return Err(Failure::Config(format!(
            "kubeauth.server.auth.bearerTokens: required to listen on {listen}, a non-loopback address: the proxy \
             authenticates with the server's own credentials, so its callers must authenticate too"
        )));
    }
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
    let mut server =
        KubeauthServer::new(registry, locator).with_service_locator(service_locator).with_api_tokens(tokens);
    // Entity references of the workloads and custom-resource queries are resolved in this catalog.
    if loaded.config.kubeauth.catalog.is_some() {
        let catalog =
            kubeauth::locator::catalog::client_from_config(&loaded.config, &ResolveContext::from_process_env())
                .map_err(|e| Failure::config(&e))?;
        server = server.with_catalog(catalog);
    }
    let clusters = server.check().await.map_err(|e| Failure::config(&e))?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::Runtime(format!("cannot listen on {listen}: {e}")))?;
    let address = listener.local_addr().map_err(|e| Failure::runtime(&e))?;
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    tracing::info!(clusters = ?names, "listening on http://{address}");
    use axum::serve::ListenerExt as _;
    // Answers leave at once, without Nagle's delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, server.router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Failure::Runtime(format!("server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The tokens of `kubeauth.server.auth.bearerTokens`; an empty one is an error.
fn api_tokens(config: &kubeauth::AppConfig) -> Result<kubeauth_server::ApiTokens, Failure> {
    let Some(auth) = &config.kubeauth.server.auth else { return Ok(kubeauth_server::ApiTokens::default()) };
    let ctx = config.resolve_context(&ResolveContext::from_process_env());
    let mut tokens = Vec::new();
    for (i, value) in auth.bearer_tokens.iter().enumerate() {
        let key = format!("kubeauth.server.auth.bearerTokens[{i}]");
        let token = value.resolve(&ctx).map_err(|m| Failure::Config(format!("{key}: {m}")))?;
        if token.trim().len() < 16 {
            return Err(Failure::Config(format!("{key}: too short (at least 16 characters)")));
        }
        tokens.push(token.into());
    }
    if tokens.is_empty() {
        return Err(Failure::Config("kubeauth.server.auth.bearerTokens: empty; give at least one token".into()));
    }
    Ok(kubeauth_server::ApiTokens::new(tokens))
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
