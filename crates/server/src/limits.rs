//! Bounds on what callers may take, so that overload is a prompt, visible answer (503 with `Retry-After`) rather
//! than slow sockets, timeouts and memory that grows with the load:
//! - connections: at most `maxConnections`; beyond, a connection gets one answer (503, or the probe it asks
//!   for) and is closed;
//! - time to send a request's headers, and to keep an idle connection: `headerReadTimeoutSeconds`;
//! - requests being answered: at most `maxRequestsInFlight`; beyond, 503 (the probes are not counted);
//! - entity queries (the objects endpoints): `maxQueriesInFlight` at once, up to `maxQueuedQueries` waiting
//!   their turn for at most `queueTimeoutSeconds`; beyond, 503;
//! - list requests of those queries to one cluster: `requestsPerCluster` at once, the others wait;
//! - `customResources` entries of one query: `maxCustomResources`, after duplicates are dropped; beyond, 400;
//! - time to send a request's whole body: `bodyReadTimeoutSeconds`; beyond, 408, and the request's slot is free;
//! - time a proxied answer waits for the caller to take its next part: `writeTimeoutSeconds`; beyond, the answer
//!   and its request upstream are cut (see [`crate::proxy`]), so a caller who stops reading holds nothing of the
//!   cluster's shared connection.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use kubeauth::locator::LimitsConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ServerError;

/// Bounds on what callers may take (`kubeauth.server.limits`), each with a default: connections, the time to send
/// a request's headers, requests in flight, queued entity queries, list requests per cluster, custom resources
/// per query. Beyond a bound, a caller gets a prompt `503` with `Retry-After` (or `400` for a query that asks too
/// much).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Requests being answered at once at most (the probes are not counted).
    pub max_requests_in_flight: usize,
    /// Time to send a request's headers, and for an idle connection to stay open.
    pub header_read_timeout: Duration,
    /// Entity queries answered at once.
    pub max_queries_in_flight: usize,
    /// Entity queries that may wait for their turn.
    pub max_queued_queries: usize,
    /// How long a query may wait for its turn.
    pub queue_timeout: Duration,
    /// List requests of the entity queries to one cluster at once.
    pub requests_per_cluster: usize,
    /// `customResources` entries of one query, after duplicates are dropped.
    pub max_custom_resources: usize,
    /// Time to send a request's whole body.
    pub body_read_timeout: Duration,
    /// Time a proxied answer waits for the caller to take its next part.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_requests_in_flight: 512,
            header_read_timeout: Duration::from_secs(10),
            max_queries_in_flight: 32,
            max_queued_queries: 256,
            queue_timeout: Duration::from_secs(30),
            requests_per_cluster: 16,
            max_custom_resources: 32,
            body_read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// The limits of `kubeauth.server.limits`, the defaults for what it leaves out. A count outside 1..=1000000, a
    /// timeout beyond five minutes (an hour for `writeTimeoutSeconds`) is an error naming the key.
    pub fn from_config(config: Option<&LimitsConfig>, origin: Option<&Path>) -> Result<Self, ServerError> {
        let mut limits = Self::default();
        let Some(config) = config else { return Ok(limits) };
        let count = |key: &str, value: Option<usize>, slot: &mut usize| match value {
            Some(n) if !(1..=MAX_COUNT).contains(&n) => Err(ServerError::setting(
                origin,
                &format!("kubeauth.server.limits.{key}"),
                format!("must be between 1 and {MAX_COUNT}"),
            )),
            Some(n) => {
                *slot = n;
                Ok(())
            }
            None => Ok(()),
        };
        count("maxConnections", config.max_connections, &mut limits.max_connections)?;
        count("maxRequestsInFlight", config.max_requests_in_flight, &mut limits.max_requests_in_flight)?;
        count("maxQueriesInFlight", config.max_queries_in_flight, &mut limits.max_queries_in_flight)?;
        count("maxQueuedQueries", config.max_queued_queries, &mut limits.max_queued_queries)?;
        count("requestsPerCluster", config.requests_per_cluster, &mut limits.requests_per_cluster)?;
        count("maxCustomResources", config.max_custom_resources, &mut limits.max_custom_resources)?;
        let seconds = |key: &str, value: Option<u64>, slot: &mut Duration| match value {
            Some(s) if !(1..=max_seconds(key)).contains(&s) => Err(ServerError::setting(
                origin,
                &format!("kubeauth.server.limits.{key}"),
                format!("must be between 1 and {} seconds", max_seconds(key)),
            )),
            Some(s) => {
                *slot = Duration::from_secs(s);
                Ok(())
            }
            None => Ok(()),
        };
        seconds("headerReadTimeoutSeconds", config.header_read_timeout_seconds, &mut limits.header_read_timeout)?;
        seconds("queueTimeoutSeconds", config.queue_timeout_seconds, &mut limits.queue_timeout)?;
        seconds("bodyReadTimeoutSeconds", config.body_read_timeout_seconds, &mut limits.body_read_timeout)?;
        seconds("writeTimeoutSeconds", config.write_timeout_seconds, &mut limits.write_timeout)?;
        Ok(limits)
    }
}

/// The longest a timeout of `limits` may be: five minutes, an hour for a slow reader of a watch.
fn max_seconds(key: &str) -> u64 {
    if key == "writeTimeoutSeconds" { 3600 } else { 300 }
}

/// The largest count a limit takes (a semaphore holds at most `usize::MAX >> 3` permits; no server needs more
/// than this).
const MAX_COUNT: usize = 1_000_000;

/// The running count of what the limits bound.
#[derive(Debug)]
pub(crate) struct Gates {
    limits: Limits,
    requests: Arc<Semaphore>,
    queries: Arc<Semaphore>,
    queued: AtomicUsize,
    clusters: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Gates {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            requests: Arc::new(Semaphore::new(limits.max_requests_in_flight)),
            queries: Arc::new(Semaphore::new(limits.max_queries_in_flight)),
            queued: AtomicUsize::new(0),
            clusters: Mutex::default(),
            limits,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A turn for an entity query: at once, after a bounded wait, or a 503.
    pub(crate) async fn query_turn(&self) -> Result<OwnedSemaphorePermit, ServerError> {
        if let Ok(turn) = self.queries.clone().try_acquire_owned() {
            return Ok(turn);
        }
        let busy = || ServerError::Busy { what: "entity queries", retry_after_seconds: 2 };
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queued_queries {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let waited = tokio::time::timeout(self.limits.queue_timeout, self.queries.clone().acquire_owned()).await;
        self.queued.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(Ok(turn)) => Ok(turn),
            _ => Err(busy()),
        }
    }

    /// The turns of `cluster`'s list requests.
    pub(crate) fn cluster(&self, cluster: &str) -> Arc<Semaphore> {
        let mut clusters = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(turns) = clusters.get(cluster) {
            return turns.clone();
        }
        // Clusters come and go with locator refreshes: forget the idle ones now and then.
        if clusters.len() >= 1024 {
            clusters.retain(|_, turns| Arc::strong_count(turns) > 1);
        }
        let turns = Arc::new(Semaphore::new(self.limits.requests_per_cluster));
        clusters.insert(cluster.to_owned(), turns.clone());
        turns
    }
}

/// The middleware that bounds the requests being answered, and the time their bodies take to arrive.
pub(crate) async fn in_flight(State(gates): State<Arc<Gates>>, request: Request, next: Next) -> Response {
    let Ok(_turn) = gates.requests.clone().try_acquire_owned() else {
        return ServerError::Busy { what: "requests", retry_after_seconds: 1 }.into_response();
    };
    let timeout = gates.limits.body_read_timeout;
    let request = request
        .map(|body| if body.is_end_stream() { body } else { axum::body::Body::new(Deadline::new(body, timeout)) });
    next.run(request).await
}

/// A request body that must arrive whole before its deadline; after it, the body fails with [`BodyTimeout`].
struct Deadline {
    body: axum::body::Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    seconds: u64,
}

impl Deadline {
    fn new(body: axum::body::Body, timeout: Duration) -> Self {
        Self { body, deadline: Box::pin(tokio::time::sleep(timeout)), seconds: timeout.as_secs() }
    }
}

/// The request body did not arrive whole within `bodyReadTimeoutSeconds`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} s (kubeauth.server.limits.bodyReadTimeoutSeconds)")]
pub(crate) struct BodyTimeout(pub(crate) u64);

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout(self.seconds))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether a body's error is its deadline's.
pub(crate) fn timed_out<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
            return Some(timeout);
        }
        source = error.source();
    }
    None
}
