//! The connections of one cluster for one TLS client identity.
//!
//! To an `https` API server that offers HTTP/2 (every kube-apiserver does), all requests share one HTTP/2
//! connection, made by the first request while the others wait for it: one TLS handshake per cluster, however
//! many requests run at once. Upgrades (exec, attach, port-forward, WebSocket watches), `http` URLs (`kubectl
//! proxy`) and API servers that answer the handshake with HTTP/1.1 go over a pool of HTTP/1.1 connections.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use http::{Request, Response, Uri, header};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector as Tcp;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kubeauth_core::{BoxError, ClusterDetails};
use tower::ServiceExt as _;

use crate::connector::proxy::Connect;
use crate::connector::tls::rustls_config;
use crate::{ClientIdentity, Error, RequestBody};

/// How long a connection attempt may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle HTTP/1.1 connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// An HTTP/2 connection is pinged after this long without a frame, and closed if the ping is not answered in
/// [`PING_TIMEOUT`]: a dead connection is noticed before a request waits on it (client-go's rule).
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// What the HTTP/2 connection reads from its socket at once: TLS reads 4 KiB at a time, and the answers of
/// many requests arrive together on one connection, so a buffer under TLS saves most of the reads.
const READ_BUFFER: usize = 32 * 1024;

/// How much of one answer may be in flight unread (HTTP/2 stream flow control).
const STREAM_WINDOW: u32 = 4 << 20;

/// How much of all answers on one connection may be in flight unread: room for 256 stalled streams.
const CONNECTION_WINDOW: u32 = 1 << 30;

type H1Client = hyper_util::client::legacy::Client<Counting, RequestBody>;

/// The connections of one cluster for one TLS client identity (or none).
pub(crate) struct Transport {
    cluster: Arc<str>,
    base: Base,
    /// Opens TCP connections (name resolution, connect timeout, no Nagle delay), through the proxy if any.
    tcp: Connect,
    /// For https: the TLS settings of the HTTP/2 connection (ALPN `h2`, then `http/1.1`).
    h2_tls: Option<Arc<rustls::ClientConfig>>,
    /// Makes HTTP/1.1 connections (ALPN `http/1.1` only, or plain http).
    h1_connector: HttpsConnector<Connect>,
    h1: OnceLock<H1Client>,
    h2: RwLock<Option<SendRequest<RequestBody>>>,
    /// Held while the HTTP/2 connection is made, so that concurrent first requests make one.
    connecting: tokio::sync::Mutex<()>,
    /// Set when the API server answered the TLS handshake without HTTP/2.
    http1_only: AtomicBool,
    /// Connections made, of either kind (for tests and reports).
    opened: Arc<AtomicU64>,
}

impl Transport {
    /// The transport of `cluster` presenting `identity` (a client certificate) in the handshake, if given.
    pub(crate) fn new(
        cluster: &ClusterDetails,
        identity: Option<&ClientIdentity>,
        opened: Arc<AtomicU64>,
    ) -> Result<Self, Error> {
        let base = Base::parse(cluster)?;
        let http = tcp(Resolver::of(cluster));
        let proxy = super::proxy::of_cluster(cluster)
            .map(|url| super::proxy::Proxy::new(&url, cluster.connect_addresses.first().copied()))
            .transpose()
            .map_err(|message| {
                Error::from(kubeauth_core::Error::Config {
                    cluster: cluster.name.clone(),
                    key: "proxyUrl".into(),
                    message,
                })
            })?;
        let http = Connect { direct: http, proxy: proxy.map(Arc::new) };
        let (h1_connector, h2_tls) = if base.https {
            // The builder offers ALPN `http/1.1` itself (it refuses settings that name protocols already).
            let h1 = rustls_config(cluster, identity, &[])?;
            let h2 = rustls_config(cluster, identity, &[b"h2", b"http/1.1"])?;
            let h1 = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(h1)
                .https_or_http()
                .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(base.server_name.clone()))
                .enable_http1()
                .wrap_connector(http.clone());
            (h1, Some(Arc::new(h2)))
        } else {
            // Plain http (a local `kubectl proxy`): TLS settings are not used.
            let tls = rustls_config(cluster, None, &[])?;
            (HttpsConnector::from((http.clone(), tls)), None)
        };
        Ok(Self {
            cluster: cluster.name.as_str().into(),
            base,
            tcp: http,
            h2_tls,
            h1_connector,
            h1: OnceLock::new(),
            h2: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            http1_only: AtomicBool::new(false),
            opened,
        })
    }

    /// Sends a request whose URI is a path (and query) under the cluster's URL.
    pub(crate) async fn send(&self, mut request: Request<RequestBody>) -> Result<Response<Incoming>, BoxError> {
        *request.uri_mut() = self.base.absolute(request.uri())?;
        if self.h2_tls.is_none() || is_upgrade(&request) || self.http1_only.load(Ordering::Relaxed) {
            return self.send_http1(request).await;
        }
        // At most one retry, only for a request that never left: the connection closed just before.
        for attempt in 0..2 {
            let Some(mut sender) = self.http2().await? else {
                return self.send_http1(request).await;
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) if attempt == 0 => {
                        tracing::debug!(cluster = %self.cluster, "the HTTP/2 connection closed; making a new one");
                        self.forget(&sender);
                        request = unsent;
                    }
                    _ => return Err(error.into_error().into()),
                },
            }
        }
        Err("the HTTP/2 connection closed twice before the request could be sent".into())
    }

    async fn send_http1(&self, request: Request<RequestBody>) -> Result<Response<Incoming>, BoxError> {
        let client = self.h1.get_or_init(|| {
            let connector = Counting { inner: self.h1_connector.clone(), opened: self.opened.clone() };
            hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .pool_timer(TokioTimer::new())
                .build(connector)
        });
        client.request(request).await.map_err(Into::into)
    }

    /// The live HTTP/2 connection, made now if there is none; `None` when the API server speaks HTTP/1.1 only.
    async fn http2(&self) -> Result<Option<SendRequest<RequestBody>>, BoxError> {
        if let Some(sender) = self.live() {
            return Ok(Some(sender));
        }
        let _connecting = self.connecting.lock().await;
        // Another request may have connected while this one waited.
        if let Some(sender) = self.live() {
            return Ok(Some(sender));
        }
        if self.http1_only.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let tls = self.h2_tls.clone().ok_or("no TLS settings")?;
        let tcp = self.tcp.clone().oneshot(self.base.origin.clone()).await?.into_inner();
        self.opened.fetch_add(1, Ordering::Relaxed);
        let io = tokio_rustls::TlsConnector::from(tls)
            .connect(self.base.server_name.clone(), tokio::io::BufReader::with_capacity(READ_BUFFER, tcp))
            .await?;
        if io.get_ref().1.alpn_protocol() != Some(b"h2") {
            tracing::debug!(cluster = %self.cluster, "the API server does not offer HTTP/2; using HTTP/1.1");
            self.http1_only.store(true, Ordering::Relaxed);
            return Ok(None);
        }
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
            // Every stream shares the connection's credit: a stream's window is a small part of it, so that
            // an answer nobody reads holds at most its own window and the other streams go on (Go's client,
            // kubectl's, sizes them the same way).
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake(hyper_util::rt::TokioIo::new(io))
            .await?;
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            match connection.await {
                Ok(()) => tracing::debug!(cluster = %cluster, "HTTP/2 connection closed"),
                Err(e) => tracing::debug!(cluster = %cluster, error = %e, "HTTP/2 connection ended"),
            }
        });
        *self.h2.write().unwrap_or_else(PoisonError::into_inner) = Some(sender.clone());
        Ok(Some(sender))
    }

    fn live(&self) -> Option<SendRequest<RequestBody>> {
        self.h2.read().unwrap_or_else(PoisonError::into_inner).as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// Drops the connection `closed` unless another one replaced it already.
    fn forget(&self, closed: &SendRequest<RequestBody>) {
        let mut slot = self.h2.write().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|current| current.is_closed() || closed.is_closed()) {
            *slot = None;
        }
    }
}

/// The HTTP/1.1 connector, counting the connections it makes.
#[derive(Clone)]
pub(crate) struct Counting {
    inner: HttpsConnector<Connect>,
    opened: Arc<AtomicU64>,
}

impl tower::Service<Uri> for Counting {
    type Response = <HttpsConnector<Connect> as tower::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = <HttpsConnector<Connect> as tower::Service<Uri>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.inner.call(uri)
    }
}

/// Whether the request asks to switch protocols (`Connection: upgrade`), which only HTTP/1.1 can carry here.
fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(header::UPGRADE)
}

/// The cluster's URL, which request paths are appended to (a path in it, as behind a gateway, is kept).
struct Base {
    https: bool,
    /// `scheme://authority/` of the API server, what connections are made to.
    origin: Uri,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The name the API server's certificate must carry: `tlsServerName`, else the URL's host (no brackets
    /// around an IPv6 address).
    server_name: rustls::pki_types::ServerName<'static>,
    /// The URL's path without its trailing `/` (empty for most clusters).
    prefix: String,
}

impl Base {
    fn parse(cluster: &ClusterDetails) -> Result<Self, Error> {
        let invalid = |message: String| -> Error {
            kubeauth_core::Error::Config { cluster: cluster.name.clone(), key: "url".into(), message }.into()
        };
        let uri: Uri = cluster.url.parse().map_err(|_| invalid(format!("`{}` is not a valid URL", cluster.url)))?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned()) else {
            return Err(invalid(format!("`{}` has no scheme or host", cluster.url)));
        };
        let https = scheme == http::uri::Scheme::HTTPS;
        if !https && scheme != http::uri::Scheme::HTTP {
            return Err(invalid(format!("`{}` is not an http or https URL", cluster.url)));
        }
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let (key, name) = match &cluster.tls_server_name {
            Some(name) => ("tlsServerName", name.clone()),
            None => ("url", host),
        };
        let server_name = rustls::pki_types::ServerName::try_from(name).map_err(|e| -> Error {
            kubeauth_core::Error::Config {
                cluster: cluster.name.clone(),
                key: key.into(),
                message: format!("not a TLS server name: {e}"),
            }
            .into()
        })?;
        Ok(Self { https, origin, scheme, authority, server_name, prefix: uri.path().trim_end_matches('/').to_owned() })
    }

    /// The absolute URI of a request path and query (`/api/v1/pods?watch=1`).
    fn absolute(&self, relative: &Uri) -> Result<Uri, BoxError> {
        if relative.scheme().is_some() || relative.authority().is_some() {
            return Err("a request to a cluster names a path, never a host".into());
        }
        let path_and_query = match relative.path_and_query() {
            None => http::uri::PathAndQuery::from_static("/"),
            Some(pq) if self.prefix.is_empty() => pq.clone(),
            Some(pq) => format!("{}{pq}", self.prefix).parse()?,
        };
        Ok(Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Base {
        Base::parse(&ClusterDetails::new("c", url)).unwrap()
    }

    #[test]
    fn paths_go_under_the_clusters_url() {
        let rancher = base("https://rancher.example/k8s/clusters/c-abc/");
        assert_eq!(
            rancher.absolute(&"/api/v1/pods?watch=1".parse().unwrap()).unwrap().to_string(),
            "https://rancher.example/k8s/clusters/c-abc/api/v1/pods?watch=1"
        );
        let plain = base("https://10.0.0.1:6443");
        assert_eq!(plain.absolute(&"/version".parse().unwrap()).unwrap().to_string(), "https://10.0.0.1:6443/version");
        assert_eq!(plain.origin.to_string(), "https://10.0.0.1:6443/");
        assert!(plain.absolute(&"https://evil.example/api".parse().unwrap()).is_err(), "never another host");
    }
}

/// A TCP connector with the settings of every connection kubeauth makes (to an API server or to a proxy): the
/// connect timeout, keep-alive, no Nagle delay (a small request must not wait for the previous ACK).
pub(crate) fn tcp(resolver: Resolver) -> HttpConnector {
    let mut http = Tcp::new_with_resolver(resolver);
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

/// What the connector resolves the host with.
pub(crate) type HttpConnector = Tcp<Resolver>;

/// The cluster's checked addresses when a locator pinned them ([`ClusterDetails::connect_addresses`]), else
/// the system's resolver.
#[derive(Clone)]
pub(crate) enum Resolver {
    System(GaiResolver),
    Pinned(Arc<[std::net::IpAddr]>),
}

impl Resolver {
    fn of(cluster: &ClusterDetails) -> Self {
        if cluster.connect_addresses.is_empty() {
            Self::System(GaiResolver::new())
        } else {
            Self::Pinned(cluster.connect_addresses.as_slice().into())
        }
    }
}

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), std::io::Error>> {
        match self {
            Self::System(gai) => gai.poll_ready(cx),
            Self::Pinned(_) => std::task::Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match self {
            Self::System(gai) => {
                let resolving = gai.call(name);
                Box::pin(async move { Ok(resolving.await?.collect::<Vec<_>>().into_iter()) })
            }
            // The port is set by the connector from the URL.
            Self::Pinned(addresses) => {
                let addresses: Vec<_> = addresses.iter().map(|ip| std::net::SocketAddr::new(*ip, 0)).collect();
                Box::pin(std::future::ready(Ok(addresses.into_iter())))
            }
        }
    }
}
