//! A raw HTTP client for a cluster, for proxies: streamed request bodies, streamed answers, and protocol
//! upgrades (exec, attach, port-forward, WebSocket watches), over the [`Connector`](crate::Connector)'s
//! connections of the cluster, with the credential applied by [`CredentialLayer`](crate::CredentialLayer),
//! exactly as for [`Connector::kube_client`](crate::Connector::kube_client).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt as _};

use crate::layer::ReplayableBody;

/// A request body: bytes in memory (sent again after a 401 with a refreshed credential), or a stream (sent
/// once, as it arrives).
pub struct RequestBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
    /// A kube client's body: in memory (replayable) or a stream, as kube made it.
    Kube(kube::client::Body),
}

impl From<kube::client::Body> for RequestBody {
    fn from(body: kube::client::Body) -> Self {
        Self { kind: Kind::Kube(body) }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(bytes) => write!(f, "RequestBody::Full({} bytes)", bytes.as_ref().map_or(0, Bytes::len)),
            Kind::Stream(_) => f.write_str("RequestBody::Stream"),
            Kind::Kube(_) => f.write_str("RequestBody::Kube"),
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
            Kind::Kube(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
            Kind::Kube(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => body.size_hint(),
            Kind::Kube(body) => body.size_hint(),
        }
    }
}

impl ReplayableBody for RequestBody {
    fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Full(bytes) => Some(Self { kind: Kind::Full(bytes.clone()) }),
            Kind::Stream(_) => None,
            Kind::Kube(body) => body.try_clone().map(|body| Self { kind: Kind::Kube(body) }),
        }
    }
}

/// A raw HTTP client for one cluster: request paths are relative to the cluster's URL, and the cluster's
/// credential is applied by [`CredentialLayer`](crate::CredentialLayer). Cheap to clone; it shares the
/// cluster's connections with every other client of the same [`Connector`](crate::Connector).
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
    pub(crate) fn new(
        cluster: Arc<str>,
        inner: BoxCloneSyncService<Request<RequestBody>, Response<Incoming>, BoxError>,
    ) -> Self {
        Self { cluster, inner }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Sends a request (its URI is a path and query, e.g. `/api/v1/pods?watch=1`). The answer's body is
    /// streamed; for a `101 Switching Protocols`, `hyper::upgrade::on(response)` gives the connection.
    pub async fn send(&self, request: Request<RequestBody>) -> Result<Response<Incoming>, BoxError> {
        self.inner.clone().oneshot(request).await
    }

    /// The service itself, for stacking more tower layers on it.
    pub fn into_service(self) -> BoxCloneSyncService<Request<RequestBody>, Response<Incoming>, BoxError> {
        self.inner
    }

    /// The same client, setting `headers` on every request it sends (replacing any of the same names), e.g.
    /// `Impersonate-User` for a request made on behalf of someone.
    pub fn with_headers(self, headers: http::HeaderMap) -> Self {
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: Request<RequestBody>| {
                for name in headers.keys() {
                    request.headers_mut().remove(name);
                    for value in headers.get_all(name) {
                        request.headers_mut().append(name.clone(), value.clone());
                    }
                }
                request
            })
            .service(self.inner);
        Self { cluster: self.cluster, inner: BoxCloneSyncService::new(service) }
    }

    /// A [`kube::Client`] over this client (its requests answered within
    /// [`KUBE_RESPONSE_TIMEOUT`](crate::KUBE_RESPONSE_TIMEOUT)).
    pub fn kube_client(self) -> kube::Client {
        use crate::connector::KUBE_RESPONSE_TIMEOUT;
        let service = tower::ServiceBuilder::new()
            .map_request(|request: Request<kube::client::Body>| request.map(RequestBody::from))
            .service(self.into_service())
            .map_future(|response| async move {
                tokio::time::timeout(KUBE_RESPONSE_TIMEOUT, response).await.map_err(|_| {
                    BoxError::from(format!(
                        "the API server did not answer within {} s",
                        KUBE_RESPONSE_TIMEOUT.as_secs()
                    ))
                })?
            });
        kube::Client::new(service, "default")
    }
}
