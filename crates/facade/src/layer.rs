//! The one place a credential meets an HTTP request.
//!
//! [`CredentialLayer`] is a tower middleware: for each request it takes the credential from its cache (asking
//! the [`CredentialSource`] when the cache says so: cold, inside the refresh margin, or expired), applies it
//! with [`apply_credential`] (a bearer token as `Authorization`, a client certificate as the request's
//! [`ClientIdentity`], which the connector's transport presents in the TLS handshake), and when the API server
//! answers 401 it forces one refresh and sends the request once more, if the body can be replayed and the
//! source can give another credential. The kube client and the proxy both authenticate through it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, Response, StatusCode};
use kubeauth_core::{BoxError, Credential, CredentialCache, CredentialFuture, ExposeSecret, SecretString};
use tower::{Layer, Service, ServiceExt};

/// Where the layer gets a fresh credential: a provider bound to one cluster (and one user's tokens).
pub trait CredentialSource: Send + Sync + 'static {
    /// The cluster's name, for logs.
    fn cluster(&self) -> &str;
    /// A fresh credential.
    fn fetch(&self) -> CredentialFuture<'_>;
    /// Whether fetching again may give another credential, so that a request refused with 401 is worth
    /// retrying (default `true`). A user's token from the request is the same token every time.
    fn refreshable(&self) -> bool {
        true
    }
}

/// The TLS client identity a request is sent with: an x509 client certificate and its key, set by
/// [`apply_credential`] in the request's extensions and presented by the connector's transport in the TLS
/// handshake. `Debug` shows no key.
#[derive(Clone)]
pub struct ClientIdentity {
    certificate_pem: Arc<str>,
    private_key_pem: Arc<SecretString>,
}

impl ClientIdentity {
    /// The identity of a client-certificate credential; `None` for any other.
    pub fn of(credential: &Credential) -> Option<Self> {
        match credential {
            Credential::ClientCertificate { certificate_pem, private_key_pem, .. } => Some(Self {
                certificate_pem: certificate_pem.as_str().into(),
                private_key_pem: Arc::new(private_key_pem.clone()),
            }),
            _ => None,
        }
    }

    /// PEM of the certificate (and any intermediates).
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// PEM of the private key.
    pub fn private_key_pem(&self) -> &SecretString {
        &self.private_key_pem
    }

    /// Whether `other` is the same certificate and key.
    pub fn same_as(&self, other: &Self) -> bool {
        self.certificate_pem == other.certificate_pem
            && self.private_key_pem.expose_secret() == other.private_key_pem.expose_secret()
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificate_pem", &format_args!("<{} bytes>", self.certificate_pem.len()))
            .field("private_key_pem", &format_args!("[redacted]"))
            .finish()
    }
}

/// Applies `credential` to `request`: `Authorization: Bearer <token>` (marked sensitive, so HTTP tracing never
/// prints it) for a bearer token; for a client certificate no `Authorization` but the [`ClientIdentity`] in
/// the request's extensions (the transport presents it in the TLS handshake); for anonymous access neither.
pub fn apply_credential<B>(request: &mut Request<B>, credential: &Credential) -> Result<(), kubeauth_core::Error> {
    request.extensions_mut().remove::<ClientIdentity>();
    match credential {
        Credential::BearerToken { token, .. } => {
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
                kubeauth_core::Error::failed("the token holds characters that cannot travel in an HTTP header")
            })?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        other => {
            request.headers_mut().remove(AUTHORIZATION);
            if let Some(identity) = ClientIdentity::of(other) {
                request.extensions_mut().insert(identity);
            }
        }
    }
    Ok(())
}

/// A request body that may be sent twice (for the retry after a 401).
pub trait ReplayableBody: Sized {
    /// A copy of the body, or `None` if it is a stream that cannot be replayed.
    fn try_clone(&self) -> Option<Self>;
}

impl ReplayableBody for kube::client::Body {
    fn try_clone(&self) -> Option<Self> {
        kube::client::Body::try_clone(self)
    }
}

impl ReplayableBody for http_body_util::Full<Bytes> {
    fn try_clone(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayableBody for http_body_util::Empty<Bytes> {
    fn try_clone(&self) -> Option<Self> {
        Some(*self)
    }
}

/// Applies a cluster's credential to every request: cached, refreshed ahead of expiry, retried once after a
/// 401; or (see [`fixed`](Self::fixed)) one credential got already, as a user's token from a request is.
#[derive(Clone)]
pub struct CredentialLayer {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Cached {
        source: Arc<dyn CredentialSource>,
        cache: Arc<CredentialCache>,
        /// The `Authorization` value of the cached bearer token, by the cache's generation: made once per
        /// token, not once per request.
        header: Arc<std::sync::Mutex<Option<(u64, HeaderValue)>>>,
    },
    Fixed(Arc<Fixed>),
}

/// One credential, ready to apply.
struct Fixed {
    cluster: String,
    credential: Credential,
    /// The request with the credential applied, without body: its headers and extensions are copied.
    applied: Request<()>,
}

impl CredentialLayer {
    /// How long before expiry a credential is refreshed, by default: kube's own exec-plugin rule.
    pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

    /// How long a credential without an expiry is used before the source is asked again, by default: a rotated
    /// token file is picked up within a second (kube-rs re-reads it every minute), and a credential the API
    /// server refuses is replaced at once; meanwhile requests do not ask the source one by one.
    pub const DEFAULT_UNEXPIRING_TTL: Duration = Duration::from_secs(1);

    /// A layer over `source` that refreshes [`DEFAULT_REFRESH_MARGIN`](Self::DEFAULT_REFRESH_MARGIN) ahead
    /// and asks again for a credential without an expiry after
    /// [`DEFAULT_UNEXPIRING_TTL`](Self::DEFAULT_UNEXPIRING_TTL).
    pub fn new(source: Arc<dyn CredentialSource>) -> Self {
        let cache =
            CredentialCache::new(Self::DEFAULT_REFRESH_MARGIN).with_unexpiring_ttl(Self::DEFAULT_UNEXPIRING_TTL);
        Self::with_cache(source, Arc::new(cache))
    }

    /// A layer over `source` with a cache of your own (to share it, or to set its margins).
    pub fn with_cache(source: Arc<dyn CredentialSource>, cache: Arc<CredentialCache>) -> Self {
        Self { mode: Mode::Cached { source, cache, header: Arc::default() } }
    }

    /// A layer that applies `credential` as it is, to the requests of one caller: no cache, no refresh, and no
    /// retry after a 401 (what a user's token from a request needs). The error says why the credential
    /// cannot travel in a request.
    pub fn fixed(cluster: &str, credential: Credential) -> Result<Self, kubeauth_core::Error> {
        let mut applied = Request::new(());
        apply_credential(&mut applied, &credential).map_err(|e| e.named(cluster, ""))?;
        Ok(Self { mode: Mode::Fixed(Arc::new(Fixed { cluster: cluster.to_owned(), credential, applied })) })
    }

    /// Applies the cached credential of `generation` to `request`, reusing its `Authorization` value.
    fn apply(
        header: &std::sync::Mutex<Option<(u64, HeaderValue)>>,
        request: &mut Request<impl Sized>,
        cached: &kubeauth_core::CachedCredential,
    ) -> Result<(), kubeauth_core::Error> {
        if !matches!(cached.credential, Credential::BearerToken { .. }) {
            return apply_credential(request, &cached.credential);
        }
        let memo = header.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let value = match memo {
            Some((generation, value)) if generation == cached.generation => value,
            _ => {
                apply_credential(request, &cached.credential)?;
                let value = request.headers()[AUTHORIZATION].clone();
                *header.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((cached.generation, value));
                return Ok(());
            }
        };
        request.extensions_mut().remove::<ClientIdentity>();
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(())
    }

    /// The credential the next request will carry, fetched if the cache says so.
    pub async fn credential(&self) -> Result<Credential, kubeauth_core::Error> {
        match &self.mode {
            Mode::Cached { source, cache, .. } => {
                let source = source.clone();
                cache.get(|| async move { source.fetch().await }).await.map(|c| c.credential)
            }
            Mode::Fixed(fixed) => Ok(fixed.credential.clone()),
        }
    }
}

impl std::fmt::Debug for CredentialLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mode {
            Mode::Cached { source, cache, .. } => {
                f.debug_struct("CredentialLayer").field("cluster", &source.cluster()).field("cache", cache).finish()
            }
            Mode::Fixed(fixed) => f
                .debug_struct("CredentialLayer")
                .field("cluster", &fixed.cluster)
                .field("credential", &fixed.credential)
                .finish(),
        }
    }
}

impl<S> Layer<S> for CredentialLayer {
    type Service = CredentialService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CredentialService { inner, layer: self.clone() }
    }
}

/// The service [`CredentialLayer`] wraps around an HTTP client.
#[derive(Clone, Debug)]
pub struct CredentialService<S> {
    inner: S,
    layer: CredentialLayer,
}

/// The future of [`CredentialService`].
pub type ResponseFuture<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

impl<S, B, RB> Service<Request<B>> for CredentialService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: ReplayableBody + Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<Response<RB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Use the service that was polled ready, and leave a clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (source, cache, header) = match &self.layer.mode {
            Mode::Fixed(fixed) => {
                // The credential is applied as it is; the answer, a 401 too, is the caller's.
                let applied = &fixed.applied;
                request.extensions_mut().remove::<ClientIdentity>();
                request.headers_mut().remove(AUTHORIZATION);
                for (name, value) in applied.headers() {
                    request.headers_mut().insert(name, value.clone());
                }
                if let Some(identity) = applied.extensions().get::<ClientIdentity>() {
                    request.extensions_mut().insert(identity.clone());
                }
                return Box::pin(async move { inner.call(request).await.map_err(Into::into) });
            }
            Mode::Cached { source, cache, header } => (source.clone(), cache.clone(), header.clone()),
        };
        Box::pin(async move {
            let cached = cache.get(|| async { source.fetch().await }).await?;
            let replay = if source.refreshable() { copy_request(&request) } else { None };
            CredentialLayer::apply(&header, &mut request, &cached).map_err(|e| e.named(source.cluster(), ""))?;
            let response = inner.call(request).await.map_err(Into::into)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let Some(mut retry) = replay else { return Ok(response) };
            tracing::debug!(cluster = %source.cluster(), "the API server answered 401: refreshing the credential and retrying once");
            let fresh = cache.force_refresh(cached.generation, || async { source.fetch().await }).await?;
            CredentialLayer::apply(&header, &mut retry, &fresh).map_err(|e| e.named(source.cluster(), ""))?;
            let inner = inner.ready().await.map_err(Into::into)?;
            inner.call(retry).await.map_err(Into::into)
        })
    }
}

/// A copy of the request for a retry, if its body can be replayed. Extensions are not copied.
fn copy_request<B: ReplayableBody>(request: &Request<B>) -> Option<Request<B>> {
    let body = request.body().try_clone()?;
    let mut copy = Request::new(body);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;

    use http_body_util::Full;
    use tower_test::mock;

    use super::*;

    /// Gives `token-1`, `token-2`, … (or a client certificate), counting its fetches.
    struct Numbered {
        fetches: AtomicUsize,
        refreshable: bool,
        certificate: bool,
    }

    impl Numbered {
        fn new(refreshable: bool) -> Arc<Self> {
            Arc::new(Self { fetches: AtomicUsize::new(0), refreshable, certificate: false })
        }
    }

    impl CredentialSource for Numbered {
        fn cluster(&self) -> &str {
            "c1"
        }

        fn fetch(&self) -> CredentialFuture<'_> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            let certificate = self.certificate;
            Box::pin(async move {
                let hour = SystemTime::now() + Duration::from_secs(3600);
                Ok(if certificate {
                    Credential::client_certificate("CERT", "KEY").with_expiry(hour)
                } else {
                    Credential::bearer_until(format!("token-{n}"), hour)
                })
            })
        }

        fn refreshable(&self) -> bool {
            self.refreshable
        }
    }

    type Body = Full<Bytes>;
    type Stack = tower::util::BoxService<Request<Body>, Response<()>, BoxError>;
    type ApiServer = mock::Handle<Request<Body>, Response<()>>;

    fn authorization(request: &Request<Body>) -> Option<&str> {
        request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok())
    }

    fn answer(status: u16) -> Response<()> {
        Response::builder().status(status).body(()).unwrap()
    }

    /// A service under the layer, and the handle that plays the API server. Calls are spawned: the layer's
    /// future gets the credential before it sends anything.
    fn stack(source: Arc<dyn CredentialSource>) -> (Stack, ApiServer) {
        let (service, handle) = mock::pair::<Request<Body>, Response<()>>();
        // The mock is not Clone; a buffer in front of it is, as in the connector's stacks.
        let service = tower::buffer::Buffer::new(service, 8);
        (tower::util::BoxService::new(CredentialLayer::new(source).layer(service)), handle)
    }

    #[tokio::test]
    async fn the_token_is_applied_marked_sensitive_and_fetched_once_while_valid() {
        let source = Numbered::new(true);
        let (mut service, mut handle) = stack(source.clone());
        for _ in 0..3 {
            let call = tokio::spawn(service.ready().await.unwrap().call(Request::new(Body::from("x"))));
            let (request, reply) = handle.next_request().await.unwrap();
            assert_eq!(authorization(&request), Some("Bearer token-1"));
            assert!(request.headers()[AUTHORIZATION].is_sensitive());
            reply.send_response(answer(200));
            assert_eq!(call.await.unwrap().unwrap().status(), 200);
        }
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_401_is_retried_once_with_a_fresh_credential() {
        let source = Numbered::new(true);
        let (mut service, mut handle) = stack(source.clone());
        let call = tokio::spawn(
            service.ready().await.unwrap().call(Request::post("/api").body(Body::from("payload")).unwrap()),
        );
        let (first, reply) = handle.next_request().await.unwrap();
        assert_eq!(authorization(&first), Some("Bearer token-1"));
        reply.send_response(answer(401));
        let (retry, reply) = handle.next_request().await.unwrap();
        assert_eq!(authorization(&retry), Some("Bearer token-2"));
        assert_eq!((retry.method(), retry.uri().path()), (&http::Method::POST, "/api"));
        assert_eq!(http_body_util::BodyExt::collect(retry.into_body()).await.unwrap().to_bytes(), "payload");
        // Refused again: that answer is the caller's; no third try.
        reply.send_response(answer(401));
        assert_eq!(call.await.unwrap().unwrap().status(), 401);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_credential_that_cannot_change_is_not_retried() {
        let source = Numbered::new(false);
        let (mut service, mut handle) = stack(source.clone());
        let call = tokio::spawn(service.ready().await.unwrap().call(Request::new(Body::from("x"))));
        let (_, reply) = handle.next_request().await.unwrap();
        reply.send_response(answer(401));
        assert_eq!(call.await.unwrap().unwrap().status(), 401);
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "no refresh for a user's token from the request");
    }

    #[tokio::test]
    async fn a_client_certificate_travels_as_the_requests_identity_never_as_a_header() {
        let source = Arc::new(Numbered { fetches: AtomicUsize::new(0), refreshable: true, certificate: true });
        let (mut service, mut handle) = stack(source);
        let mut request = Request::new(Body::from("x"));
        request.headers_mut().insert(AUTHORIZATION, HeaderValue::from_static("Bearer from-the-caller"));
        let call = tokio::spawn(service.ready().await.unwrap().call(request));
        let (seen, reply) = handle.next_request().await.unwrap();
        assert_eq!(authorization(&seen), None, "the caller's Authorization never goes on");
        let identity = seen.extensions().get::<ClientIdentity>().expect("the identity");
        assert_eq!(identity.certificate_pem(), "CERT");
        assert!(!format!("{identity:?}").contains("KEY"));
        reply.send_response(answer(200));
        call.await.unwrap().unwrap();
    }
}
