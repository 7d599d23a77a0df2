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

/// An HTTP forward proxy on loopback that answers CONNECT as squid or tinyproxy do (`200 Connection
/// established`, then the bytes both ways), recording each tunnel's target; optionally requiring a
/// `Proxy-Authorization`, and sending the names of `hosts` to loopback addresses (a test's DNS).
#[derive(Debug)]
pub struct ConnectProxy {
    addr: SocketAddr,
    tunnels: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectProxy {
    /// Listens on a free loopback port. `authorization`: the `Proxy-Authorization` value required (else 407);
    /// `hosts`: names the proxy resolves itself, as `(name, loopback address)`.
    pub async fn start(authorization: Option<String>, hosts: &[(&str, std::net::IpAddr)]) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let tunnels: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let hosts: Vec<(String, std::net::IpAddr)> = hosts.iter().map(|(n, ip)| ((*n).to_owned(), *ip)).collect();
        let seen = tunnels.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (seen, hosts, authorization) = (seen.clone(), hosts.clone(), authorization.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        let mut byte = [0u8; 1];
                        if inbound.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let mut lines = head.lines();
                    let Some(("CONNECT", target)) =
                        lines.next().and_then(|l| l.split(' ').nth(1).map(|t| (l.split(' ').next().unwrap_or(""), t)))
                    else {
                        let _ = inbound.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n").await;
                        return;
                    };
                    let given = lines.find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
                            .map(|(_, v)| v.trim())
                    });
                    if authorization.as_deref().is_some_and(|required| given != Some(required)) {
                        let _ = inbound.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
                        return;
                    }
                    seen.lock().unwrap().push(target.to_owned());
                    let (host, port) = target.rsplit_once(':').unwrap_or((target, "443"));
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    let ip = hosts.iter().find(|(n, _)| n == host).map(|(_, ip)| *ip).or_else(|| host.parse().ok());
                    let (Some(ip), Ok(port)) = (ip, port.parse::<u16>()) else {
                        let _ = inbound.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let Ok(mut outbound) = tokio::net::TcpStream::connect((ip, port)).await else {
                        let _ = inbound.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    if inbound.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, tunnels, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The targets (`host:port`) of the tunnels opened so far.
    pub fn tunnels(&self) -> Vec<String> {
        self.tunnels.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
