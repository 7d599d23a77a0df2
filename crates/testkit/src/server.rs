//! A small HTTP(S) server on a loopback port and a thread of its own, for the fakes and the webhook: it serves
//! whichever test runtime comes and goes, and stops when dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A JSON answer with `status`, as the fakes give them.
pub(crate) fn json(status: u16, body: &serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// A running server; dropping it stops it.
pub(crate) struct ThreadServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadServer {
    /// Serves `handler` over HTTP/1.1, in TLS with `tls` when given.
    pub(crate) fn start<H, F>(tls: Option<tokio_rustls::TlsAcceptor>, handler: H) -> Self
    where
        H: Fn(Request<hyper::body::Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local address");
        let (shutdown, mut stop) = tokio::sync::oneshot::channel();
        let handler = Arc::new(handler);
        let thread = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stop => return,
                        accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    };
                    let (tls, handler) = (tls.clone(), handler.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let handler = handler.clone();
                            async move { Ok::<_, Infallible>(handler(req).await) }
                        });
                        let http = hyper::server::conn::http1::Builder::new();
                        let _ = match tls {
                            Some(acceptor) => match acceptor.accept(tcp).await {
                                Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                                Err(_) => return,
                            },
                            None => http.serve_connection(TokioIo::new(tcp), service).await,
                        };
                    });
                }
            });
        });
        Self { addr, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
