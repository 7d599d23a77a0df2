//! A TCP forwarder on loopback that counts the connections made through it: put it in front of an API
//! server to count how many connections (and so TLS handshakes, since TLS runs end to end through it) a
//! client opens.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Forwards every connection on its loopback port to `target`, byte for byte, counting them.
#[derive(Debug)]
pub struct CountingForwarder {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingForwarder {
    /// Listens on a free loopback port and forwards to `target` (an address on loopback). Call it inside a
    /// tokio runtime; the forwarder stops when dropped.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("the forwarder's address");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Self { addr, accepted, task }
    }

    /// The forwarder's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>`: an API server URL that goes through the forwarder.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
