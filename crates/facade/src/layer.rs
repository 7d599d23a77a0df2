//! The one place a credential meets an HTTP request.
//!
//! [`CredentialLayer`] is a tower middleware: for each request it takes the credential from its cache (asking
//! the [`CredentialSource`] when the cache says so: cold, inside the refresh margin, or expired), sets
//! `Authorization` with [`apply_credential`], and when the API server answers 401 it forces one refresh and
//! sends the request once more, if the body can be replayed. The kube client, the proxy and the exec plugin
//! all authenticate through it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, Response, StatusCode};
use kubeauth_core::{BoxError, Credential, CredentialCache, CredentialFuture, ExposeSecret};
use tower::{Layer, Service, ServiceExt};

/// Where the layer gets a fresh credential: a provider bound to one cluster (and one user's tokens).
pub trait CredentialSource: Send + Sync + 'static {
    /// The cluster's name, for logs.
    fn cluster(&self) -> &str;
    /// A fresh credential.
    fn fetch(&self) -> CredentialFuture<'_>;
}

/// Sets `Authorization: Bearer <token>` (marked sensitive, so HTTP tracing never prints it) for a bearer
/// token; removes any `Authorization` for a client certificate (sent in the TLS handshake) or anonymous access.
pub fn apply_credential<B>(request: &mut Request<B>, credential: &Credential) -> Result<(), kubeauth_core::Error> {
    match credential {
        Credential::BearerToken { token, .. } => {
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
                kubeauth_core::Error::Provider {
                    cluster: String::new(),
                    provider: String::new(),
                    source: "the token holds characters that cannot travel in an HTTP header".into(),
                }
            })?;
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        _ => {
            request.headers_mut().remove(AUTHORIZATION);
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

/// Applies a cluster's credential to every request: cached, refreshed ahead of expiry, retried once after a 401.
#[derive(Clone)]
pub struct CredentialLayer {
    source: Arc<dyn CredentialSource>,
    cache: Arc<CredentialCache>,
}

impl CredentialLayer {
    /// How long before expiry a credential is refreshed, by default: kube's own exec-plugin rule.
    pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

    /// A layer over `source` that refreshes [`DEFAULT_REFRESH_MARGIN`](Self::DEFAULT_REFRESH_MARGIN) ahead.
    pub fn new(source: Arc<dyn CredentialSource>) -> Self {
        Self::with_cache(source, Arc::new(CredentialCache::new(Self::DEFAULT_REFRESH_MARGIN)))
    }

    /// A layer over `source` with a cache of your own (to share it, or to set its margin).
    pub fn with_cache(source: Arc<dyn CredentialSource>, cache: Arc<CredentialCache>) -> Self {
        Self { source, cache }
    }

    /// The credential the next request will carry, fetched if the cache says so.
    pub async fn credential(&self) -> Result<Credential, kubeauth_core::Error> {
        let source = self.source.clone();
        self.cache.get(|| async move { source.fetch().await }).await.map(|c| c.credential)
    }
}

impl std::fmt::Debug for CredentialLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialLayer").field("cluster", &self.source.cluster()).field("cache", &self.cache).finish()
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
        let layer = self.layer.clone();
        Box::pin(async move {
            let source = layer.source.clone();
            let cached = layer.cache.get(|| async { source.fetch().await }).await?;
            let replay = match cached.credential {
                Credential::BearerToken { .. } => copy_request(&request),
                _ => None,
            };
            apply_credential(&mut request, &cached.credential).map_err(|e| named(e, source.cluster()))?;
            let response = inner.call(request).await.map_err(Into::into)?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let Some(mut retry) = replay else { return Ok(response) };
            tracing::debug!(cluster = %source.cluster(), "the API server answered 401: refreshing the credential and retrying once");
            let fresh = layer.cache.force_refresh(cached.generation, || async { source.fetch().await }).await?;
            apply_credential(&mut retry, &fresh.credential).map_err(|e| named(e, source.cluster()))?;
            let inner = inner.ready().await.map_err(Into::into)?;
            inner.call(retry).await.map_err(Into::into)
        })
    }
}

fn named(error: kubeauth_core::Error, cluster: &str) -> kubeauth_core::Error {
    match error {
        kubeauth_core::Error::Provider { source, provider, .. } => {
            kubeauth_core::Error::Provider { cluster: cluster.to_owned(), provider, source }
        }
        other => other,
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
