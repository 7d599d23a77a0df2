//! Misbehaving HTTP peers for fault injection: an endpoint that answers garbage, one that answers an error
//! status, and one that accepts connections and never answers.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use crate::server::ThreadServer;

/// How the peer misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `200 OK` with a body that is not what any client expects (HTML, not JSON).
    Garbage,
    /// This status, with an HTML body.
    Status(u16),
    /// Accepts connections, reads nothing, answers nothing.
    Hang,
}

/// A misbehaving peer on a loopback port; stops when dropped.
pub struct Misbehaving {
    url: String,
    _server: Option<ThreadServer>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Misbehaving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Misbehaving").field("url", &self.url).finish()
    }
}

impl Misbehaving {
    /// Starts a peer with `fault`.
    pub fn start(fault: Fault) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        match fault {
            Fault::Hang => {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
                let url = format!("http://{}", listener.local_addr().expect("address"));
                listener.set_nonblocking(true).expect("nonblocking");
                let flag = stop.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    while !flag.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((stream, _)) => held.push(stream),
                            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                        }
                    }
                });
                Self { url, _server: None, stop }
            }
            Fault::Garbage | Fault::Status(_) => {
                let status = match fault {
                    Fault::Status(code) => code,
                    _ => 200,
                };
                let server = ThreadServer::start(None, move |_req| async move {
                    Response::builder()
                        .status(status)
                        .header("content-type", "text/html")
                        .body(Full::new(Bytes::from_static(
                            b"<html><body>Service Temporarily Unavailable</body></html>",
                        )))
                        .unwrap_or_default()
                });
                Self { url: format!("http://{}", server.addr()), _server: Some(server), stop }
            }
        }
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
