//! kubeauth's own audit log (`kubeauth.server.audit`): one JSON line for every request to the API's endpoints,
//! written when its answer ends (the last byte sent, the caller gone, or an upgraded connection closed).
//!
//! A line says who called (the caller, its address and user agent), what it asked (method, path without the
//! query, the cluster, the attributes the API server will read), what kubeauth decided and by which rule, who the
//! request went upstream as (the impersonated user and groups), and how it ended (status, the API server's
//! status, bytes, duration, kubeauth's error). Its `auditID` is the `Audit-ID` kubeauth sent upstream with every
//! request it made for this one, so it joins the API server's audit log; the caller gets it back as
//! `Audit-Id`. The Backstage kubernetes backend's audit fields are in it too (`plugin`, `eventId`,
//! `severityLevel`, `status`, `actor.actorId`, `meta.queryType`, …), so one pipeline reads both.
//!
//! Never in a line: a token, a header value other than the user agent, a request or answer body, a query
//! string (it may carry label values and continue tokens).
//!
//! Lines are handed to a writer thread through a bounded queue: a slow disk never holds a request. When the
//! queue is full the line is dropped and counted, and a warning says how many.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use kubeauth::locator::AuditConfig;
use serde_json::{Map, Value, json};

use crate::request_info::RequestInfo;
use crate::{Caller, Impersonated, ServerError};

/// Lines waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// Where lines go: the writer thread's queue.
#[derive(Debug)]
pub(crate) struct AuditLog {
    lines: SyncSender<String>,
    dropped: AtomicU64,
}

impl AuditLog {
    /// The log of `kubeauth.server.audit`: `path: "-"` is standard output, any other path a file lines are
    /// appended to (created with mode 0600).
    pub(crate) fn open(config: &AuditConfig, origin: Option<&Path>) -> Result<Self, ServerError> {
        let key = "kubeauth.server.audit.path";
        let path = config.path.as_deref().ok_or_else(|| ServerError::setting(origin, key, "is required".into()))?;
        let out: Box<dyn std::io::Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            Box::new(
                options
                    .open(path)
                    .map_err(|e| ServerError::setting(origin, key, format!("cannot open `{path}`: {e}")))?,
            )
        };
        Ok(Self::to_writer(out))
    }

    /// A log writing to `out` on a thread of its own.
    fn to_writer(out: Box<dyn std::io::Write + Send>) -> Self {
        let (lines, queue) = std::sync::mpsc::sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("kubeauth-audit".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                while let Ok(line) = queue.recv() {
                    let mut written = writeln!(out, "{line}");
                    // Write what is queued, then flush: a reader of the file sees every answered request.
                    while let (Ok(()), Ok(line)) = (&written, queue.try_recv()) {
                        written = writeln!(out, "{line}");
                    }
                    if let Err(e) = written.and_then(|()| out.flush()) {
                        tracing::error!(error = %e, "cannot write the audit log");
                    }
                }
            })
            .expect("a thread for the audit log");
        Self { lines, dropped: AtomicU64::new(0) }
    }

    fn write(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.lines.try_send(line) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the audit log cannot keep up: lines dropped");
            }
        }
    }
}

/// What the Backstage kubernetes backend calls the operation of an endpoint.
#[derive(Clone, Copy, Debug)]
struct Operation {
    event_id: &'static str,
    query_type: &'static str,
    severity: &'static str,
}

impl Operation {
    fn of(path: &str) -> Self {
        let rest = path.strip_prefix("/api/kubernetes/").unwrap_or(path);
        let (event_id, query_type, severity) = match rest.split('/').next().unwrap_or_default() {
            "clusters" => ("cluster-fetch", "list", "low"),
            "proxy" => ("cluster-fetch", "proxy", "medium"),
            "services" => ("resource-fetch", "services", "low"),
            "resources" if rest.starts_with("resources/custom/") => ("resource-fetch", "custom", "low"),
            _ => ("resource-fetch", "workloads", "low"),
        };
        Self { event_id, query_type, severity }
    }
}

/// One request's line, filled in as the request goes: by the middleware, the API auth and the handlers.
#[derive(Debug)]
struct Entry {
    log: Option<Arc<AuditLog>>,
    started: Instant,
    time: jiff::Timestamp,
    audit_id: HeaderValue,
    operation: Operation,
    method: String,
    url: String,
    peer: Option<SocketAddr>,
    user_agent: Option<String>,
    caller: Option<Caller>,
    clusters: Vec<String>,
    impersonated: Option<Impersonated>,
    request_info: Option<RequestInfo>,
    decision: Option<Result<String, String>>,
    entity_ref: Option<String>,
    service_id: Option<String>,
    status: Option<u16>,
    upstream_status: Option<u16>,
    error: Option<String>,
    bytes: u64,
    upgraded: Option<(u64, u64)>,
    completed: bool,
}

impl Entry {
    fn line(&self) -> String {
        let status = self.status.unwrap_or(0);
        let succeeded =
            self.completed && (100..400).contains(&status) && self.decision.as_ref().is_none_or(Result::is_ok);
        let mut line = Map::new();
        line.insert("time".into(), json!(self.time.to_string()));
        line.insert("auditID".into(), json!(self.audit_id.to_str().unwrap_or_default()));
        line.insert("plugin".into(), json!("kubernetes"));
        line.insert("eventId".into(), json!(self.operation.event_id));
        line.insert("severityLevel".into(), json!(self.operation.severity));
        line.insert("status".into(), json!(if succeeded { "succeeded" } else { "failed" }));
        let mut actor = Map::new();
        if let Some(caller) = &self.caller {
            actor.insert("actorId".into(), json!(actor_id(caller)));
            if let Caller::Backstage(crate::BackstageCaller::Plugin { plugin, on_behalf_of: Some(_) }) = caller {
                actor.insert("via".into(), json!(format!("plugin:{plugin}")));
            }
        }
        if let Some(peer) = self.peer {
            actor.insert("ip".into(), json!(peer.ip().to_string()));
        }
        if let Some(agent) = &self.user_agent {
            actor.insert("userAgent".into(), json!(agent));
        }
        line.insert("actor".into(), Value::Object(actor));
        line.insert("request".into(), json!({"method": self.method, "url": self.url}));
        let mut meta = Map::new();
        meta.insert("queryType".into(), json!(self.operation.query_type));
        if self.operation.query_type == "proxy" {
            if let Some(cluster) = self.clusters.first() {
                meta.insert("clusterName".into(), json!(cluster));
            }
            meta.insert("method".into(), json!(self.method));
            if let Some(info) = &self.request_info {
                meta.insert("path".into(), json!(info.path));
            }
        }
        if let Some(entity_ref) = &self.entity_ref {
            meta.insert("entityRef".into(), json!(entity_ref));
        }
        if let Some(service_id) = &self.service_id {
            meta.insert("serviceId".into(), json!(service_id));
        }
        line.insert("meta".into(), Value::Object(meta));
        if !self.clusters.is_empty() {
            line.insert("clusters".into(), json!(self.clusters));
        }
        if let Some(identity) = &self.impersonated {
            line.insert("impersonatedUser".into(), json!({"username": identity.user, "groups": identity.groups}));
        }
        if let Some(info) = &self.request_info {
            line.insert("verb".into(), json!(info.verb));
            let attributes = if info.is_resource_request {
                json!({
                    "apiGroup": info.api_group,
                    "apiVersion": info.api_version,
                    "resource": info.resource,
                    "subresource": info.subresource,
                    "namespace": info.namespace,
                    "name": info.name,
                })
            } else {
                json!({"nonResourceURL": info.path})
            };
            line.insert("requestInfo".into(), attributes);
        }
        match &self.decision {
            Some(Ok(by)) => line.insert("decision".into(), json!({"allowed": true, "by": by})),
            Some(Err(why)) => line.insert("decision".into(), json!({"allowed": false, "reason": why})),
            None => None,
        };
        line.insert("responseStatus".into(), json!(status));
        if let Some(upstream) = self.upstream_status {
            line.insert("upstreamStatus".into(), json!(upstream));
        }
        line.insert("bytes".into(), json!(self.bytes));
        if let Some((sent, received)) = self.upgraded {
            line.insert("upgraded".into(), json!({"sent": sent, "received": received}));
        }
        if !self.completed {
            line.insert("completed".into(), json!(false));
        }
        line.insert("durationMs".into(), json!((self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3));
        if let Some(error) = &self.error {
            line.insert("error".into(), json!(error));
        }
        Value::Object(line).to_string()
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            log.write(self.line());
        }
    }
}

/// Who called, as Backstage's auditor names its actor: the user's entity ref (also for a plugin on its
/// behalf), `plugin:<id>`, `bearerTokens[<i>]`, or `local`.
fn actor_id(caller: &Caller) -> String {
    match caller {
        Caller::Backstage(crate::BackstageCaller::Plugin { on_behalf_of: Some(user), .. }) => user.clone(),
        other => other.to_string(),
    }
}

/// A request's audit line in the making: in the request's extensions for the API auth and the handlers. Its
/// line is written when the last clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct AuditRecord(Arc<Mutex<Entry>>);

impl AuditRecord {
    fn new(log: Option<Arc<AuditLog>>, request: &Request) -> Self {
        let path = request.uri().path();
        Self(Arc::new(Mutex::new(Entry {
            log,
            started: Instant::now(),
            time: jiff::Timestamp::now(),
            audit_id: new_audit_id(),
            operation: Operation::of(path),
            method: request.method().to_string(),
            url: path.to_owned(),
            peer: request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
            user_agent: request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
            caller: None,
            clusters: Vec::new(),
            impersonated: None,
            request_info: None,
            decision: None,
            entity_ref: None,
            service_id: None,
            status: None,
            upstream_status: None,
            error: None,
            bytes: 0,
            upgraded: None,
            completed: false,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Entry) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The `Audit-ID` of every request sent upstream for this one.
    pub(crate) fn audit_id(&self) -> HeaderValue {
        self.with(|e| e.audit_id.clone())
    }

    pub(crate) fn caller(&self, caller: &Caller) {
        self.with(|e| e.caller = Some(caller.clone()));
    }

    /// A cluster the request went to.
    pub(crate) fn cluster(&self, name: &str) {
        self.with(|e| e.clusters.push(name.to_owned()));
    }

    pub(crate) fn impersonated(&self, identity: Option<&Impersonated>) {
        self.with(|e| e.impersonated = identity.cloned());
    }

    /// What the API server will read, and what kubeauth's rules said of it.
    pub(crate) fn decided(&self, info: &RequestInfo, decision: &Result<crate::access::Allowed, ServerError>) {
        let decision = decision.as_ref().map(ToString::to_string).map_err(ToString::to_string);
        self.with(|e| {
            e.request_info = Some(info.clone());
            e.decision = Some(decision);
        });
    }

    pub(crate) fn entity(&self, entity_ref: Option<String>, service_id: Option<&str>) {
        self.with(|e| {
            e.entity_ref = entity_ref;
            e.service_id = service_id.map(str::to_owned);
        });
    }

    pub(crate) fn upstream_status(&self, status: u16) {
        self.with(|e| e.upstream_status = Some(status));
    }

    /// An upgraded connection closed, with these byte counts (caller to cluster, cluster to caller).
    pub(crate) fn upgraded(&self, sent: u64, received: u64) {
        self.with(|e| {
            e.upgraded = Some((sent, received));
            e.completed = true;
        });
    }
}

/// The message of an answer kubeauth made itself (in its extensions, for the audit line).
#[derive(Clone, Debug)]
pub(crate) struct AnswerMessage(pub(crate) String);

/// The middleware that records every request: outermost, so that refusals of the browser guard, the limits
/// and the API auth are in the log too. Without `kubeauth.server.audit` nothing is written, and requests still
/// get their `Audit-ID`.
pub(crate) async fn record(State(log): State<Option<Arc<AuditLog>>>, mut request: Request, next: Next) -> Response {
    let record = AuditRecord::new(log, &request);
    request.extensions_mut().insert(record.clone());
    let mut response = next.run(request).await;
    let status = response.status();
    let message = response.extensions_mut().remove::<AnswerMessage>();
    record.with(|e| {
        e.status = Some(status.as_u16());
        e.error = message.map(|m| m.0);
    });
    response.headers_mut().entry("audit-id").or_insert_with(|| record.audit_id());
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        // The upgraded connection's task holds the record until it closes.
        return response;
    }
    let (parts, body) = response.into_parts();
    let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
    Response::from_parts(parts, Body::new(Counted { body, record: Some(record), length, sent: 0 }))
}

/// An answer's body that counts its bytes into the record, and lets go of it at the end.
struct Counted {
    body: Body,
    record: Option<AuditRecord>,
    /// The answer's `Content-Length`: once it is sent, the answer is whole (hyper may not ask for the end).
    length: Option<u64>,
    sent: u64,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                self.sent += len;
                if let Some(record) = &self.record {
                    record.with(|e| e.bytes += len);
                }
            }
            Poll::Ready(None) => {
                if let Some(record) = self.record.take() {
                    record.with(|e| e.completed = true);
                }
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(record) = self.record.take() {
                    record.with(|e| e.error = Some(format!("the answer broke off: {error}")));
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // An empty body is never polled, and one of a known length may not be asked for its end.
        if let Some(record) = self.record.take()
            && (self.body.is_end_stream() || self.length == Some(self.sent))
        {
            record.with(|e| e.completed = true);
        }
    }
}

/// A new Audit-ID: 128 random bits as a UUID (version 4), the form the API server makes its own in.
fn new_audit_id() -> HeaderValue {
    let mut bytes: [u8; 16] = rand_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    HeaderValue::from_str(&id).expect("hex and dashes")
}

/// Bytes unique to this call: the standard library's randomly seeded hasher keys over a counter and the time
/// (an Audit-ID needs uniqueness, not secrecy).
fn rand_bytes() -> [u8; 16] {
    use std::hash::{BuildHasher as _, Hasher as _};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(count);
        hasher.write_u64(nanos);
        hasher.write_usize(i);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn written(lines: &Lines) -> Vec<Value> {
        for _ in 0..200 {
            let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
            if !text.is_empty() {
                return text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Vec::new()
    }

    #[test]
    fn a_line_carries_the_decision_and_no_query_or_token() {
        let out = Lines::default();
        let log = Arc::new(AuditLog::to_writer(Box::new(out.clone())));
        let request = http::Request::builder()
            .method("GET")
            .uri("/api/kubernetes/proxy/api/v1/namespaces/a/secrets?labelSelector=team%3Dsecret-value")
            .header("authorization", "Bearer the-api-token")
            .header("user-agent", "kubectl/v1.37")
            .body(Body::empty())
            .unwrap();
        let record = AuditRecord::new(Some(log), &request);
        let id = record.audit_id();
        record.caller(&Caller::ApiToken(1));
        record.cluster("dev");
        let info = RequestInfo::of_path(&http::Method::GET, "/api/v1/namespaces/a/secrets", "labelSelector=team%3Dx");
        record.decided(&info, &Err(ServerError::Forbidden("no rule allows it".into())));
        record.with(|e| e.status = Some(403));
        drop(record);
        let lines = written(&out);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["auditID"], id.to_str().unwrap());
        assert_eq!((line["eventId"].as_str(), line["status"].as_str()), (Some("cluster-fetch"), Some("failed")));
        assert_eq!(
            line["meta"],
            json!({"queryType": "proxy", "clusterName": "dev", "method": "GET", "path": "/api/v1/namespaces/a/secrets"})
        );
        assert_eq!(line["actor"], json!({"actorId": "bearerTokens[1]", "userAgent": "kubectl/v1.37"}));
        assert_eq!(line["verb"], "list");
        assert_eq!(line["requestInfo"]["resource"], "secrets");
        assert_eq!(line["decision"], json!({"allowed": false, "reason": "no rule allows it"}));
        let text = line.to_string();
        assert!(!text.contains("secret-value") && !text.contains("the-api-token") && !text.contains('?'), "{text}");
    }

    #[test]
    fn operations_are_named_as_backstage_names_them() {
        let named = |path| {
            let o = Operation::of(path);
            (o.event_id, o.query_type)
        };
        assert_eq!(named("/api/kubernetes/clusters"), ("cluster-fetch", "list"));
        assert_eq!(named("/api/kubernetes/proxy/api/v1/pods"), ("cluster-fetch", "proxy"));
        assert_eq!(named("/api/kubernetes/services/web"), ("resource-fetch", "services"));
        assert_eq!(named("/api/kubernetes/resources/workloads/query"), ("resource-fetch", "workloads"));
        assert_eq!(named("/api/kubernetes/resources/custom/query"), ("resource-fetch", "custom"));
        let id = new_audit_id();
        assert_eq!(id.len(), 36);
        assert_ne!(id, new_audit_id());
    }
}
