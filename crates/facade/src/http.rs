//! A raw HTTP client for a cluster, for proxies: streamed request bodies, streamed answers, and protocol
//! upgrades (exec, attach, port-forward, WebSocket watches). TLS comes from [`connection_config`](crate::connection_config) and the
//! credential from [`CredentialLayer`](crate::CredentialLayer), exactly as for [`Registry::kube_client`]; HTTP/1.1 only, so that
//! upgrades work.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use kube::client::ConfigExt as _;
use kubeauth_core::{ClusterDetails, Credential, RequestAuth};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt as _};

use crate::layer::ReplayableBody;
use crate::{Error, Registry};

/// A request body: bytes in memory (sent again after a 401 with a refreshed credential), or a stream (sent
/// once, as it arrives).
pub struct RequestBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => write!(f, "RequestBody::Full({} bytes)", bytes.as_ref().map_or(0, Bytes::len)),
            Kind::Stream(_) => f.write_str("RequestBody::Stream"),
        }
    }
}

impl RequestBody {
    /// No body.
    pub fn empty() -> Self {
        Self { kind: Kind::Full(None) }
    }

    /// A body in memory.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self { kind: Kind::Full((!bytes.is_empty()).then_some(bytes)) }
    }

    /// A streamed body (not replayed after a 401).
    pub fn streaming<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self { kind: Kind::Stream(body.map_err(Into::into).boxed_unsync()) }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => body.size_hint(),
        }
    }
}

impl ReplayableBody for RequestBody {
    fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Full(bytes) => Some(Self { kind: Kind::Full(bytes.clone()) }),
            Kind::Stream(_) => None,
        }
    }
}

/// A raw HTTP/1.1 client for one cluster: request paths are relative to the cluster's URL, and the cluster's
/// credential is applied by [`CredentialLayer`](crate::CredentialLayer). Cheap to clone; connections are pooled.
#[derive(Clone)]
pub struct ClusterHttpClient {
    cluster: Arc<str>,
    inner: BoxCloneSyncService<Request<RequestBody>, Response<Incoming>, BoxError>,
}

impl std::fmt::Debug for ClusterHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHttpClient").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl ClusterHttpClient {
    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Sends a request (its URI is a path and query, e.g. `/api/v1/pods?watch=1`). The answer's body is
    /// streamed; for a `101 Switching Protocols`, `hyper::upgrade::on(response)` gives the connection.
    pub async fn send(&self, request: Request<RequestBody>) -> Result<Response<Incoming>, BoxError> {
        self.inner.clone().oneshot(request).await
    }
}

impl Registry {
    /// A raw HTTP client for `cluster`, authenticated by its provider (with `auth` for client-side ones): what
    /// a proxy forwards requests with.
    pub async fn http_client(&self, cluster: &ClusterDetails, auth: &RequestAuth) -> Result<ClusterHttpClient, Error> {
        let (layer, credential, config) = self.bind(cluster, auth).await?;
        let client_error = |source| Error::Client { cluster: cluster.name.clone(), source };
        // No Nagle delay on the API server connections: a small request must not wait for the previous ACK.
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let connector = config.rustls_https_connector_with_connector(http).map_err(client_error)?;
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build::<_, RequestBody>(connector);
        let inner = match credential {
            // A client certificate is part of the TLS connection; there is nothing to add per request.
            Credential::ClientCertificate { .. } => BoxCloneSyncService::new(
                ServiceBuilder::new().layer(config.base_uri_layer()).service(client).map_err(BoxError::from),
            ),
            _ => BoxCloneSyncService::new(
                ServiceBuilder::new().layer(layer).layer(config.base_uri_layer()).service(client),
            ),
        };
        Ok(ClusterHttpClient { cluster: cluster.name.as_str().into(), inner })
    }
}
