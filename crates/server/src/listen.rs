//! The accept loop of [`KubeauthServer::serve`](crate::KubeauthServer::serve): HTTP/1.1 with upgrades, a
//! deadline for each request's headers (which also closes idle connections), a cap on open connections, and a
//! graceful stop.
//!
//! Beyond `maxConnections`, a few more connections are taken and served once, with a short header deadline:
//! the probes (`/healthz`, `/readyz`) are answered, anything else gets `503` with `Retry-After`, and the
//! connection is closed. Beyond those, a connection is closed at once.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::{Limits, ServerError};

/// Connections taken beyond the cap, each for one answer.
const OVERFLOW_CONNECTIONS: usize = 64;

/// The header deadline of an overflow connection.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stop waits for the requests being answered (watches and upgraded streams are cut after it).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes; `overflow` answers the connections beyond the cap.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    overflow: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let extra = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let header_timeout = limits.header_read_timeout;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (permit, service, timeout, keep_alive) = match connections.clone().try_acquire_owned() {
            Ok(permit) => (permit, app.clone(), header_timeout, true),
            Err(_) => match extra.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::debug!(%peer, "connection beyond kubeauth.server.limits.maxConnections: one answer");
                    (permit, overflow.clone(), OVERFLOW_HEADER_TIMEOUT, false)
                }
                Err(_) => {
                    tracing::debug!(%peer, "connection beyond kubeauth.server.limits.maxConnections: closed");
                    continue;
                }
            },
        };
        // Answers leave at once, without Nagle's delay.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        // Handlers and the audit log learn the caller's address.
        let service = service.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder.http1().timer(TokioTimer::new()).header_read_timeout(timeout).keep_alive(keep_alive);
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::info!("stopped with connections still open after {} s", DRAIN_TIMEOUT.as_secs());
    }
    Ok(())
}
