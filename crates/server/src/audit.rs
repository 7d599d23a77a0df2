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
use serde::Serialize;

use crate::request_info::RequestInfo;
use crate::{Caller, Impersonated, ServerError};

/// Lines waiting for the writer at most.
const QUEUE: usize = 16 * 1024;

/// How long the writer lets lines gather after writing some: under load a request queues its line without
/// waking the writer (a wake-up costs more than the rest of the line), and a reader of the log sees a line at
/// most this much after its answer ended.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// Where lines go: the writer thread's queue.
#[derive(Debug)]
pub(crate) struct AuditLog {
    lines: Option<SyncSender<String>>,
    writer: Option<std::thread::JoinHandle<()>>,
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
        let writer = std::thread::Builder::new()
            .name("kubeauth-audit".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(out);
                // Asleep until a line comes; then everything queued, a flush, and time for more to gather.
                while let Ok(line) = queue.recv() {
                    let mut written = writeln!(out, "{line}");
                    let mut open = true;
                    while let Ok(()) = written {
                        match queue.try_recv() {
                            Ok(line) => written = writeln!(out, "{line}"),
                            Err(std::sync::mpsc::TryRecvError::Empty) => break,
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                    }
                    if let Err(e) = written.and_then(|()| out.flush()) {
                        tracing::error!(error = %e, "cannot write the audit log");
                    }
                    if open {
                        std::thread::sleep(GATHER);
                    }
                }
            })
            .expect("a thread for the audit log");
        Self { lines: Some(lines), writer: Some(writer), dropped: AtomicU64::new(0) }
    }

    fn write(&self, line: String) {
        let Some(lines) = &self.lines else { return };
        if let Err(TrySendError::Full(_)) = lines.try_send(line) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the audit log cannot keep up: lines dropped");
            }
        }
    }
}

impl Drop for AuditLog {
    /// The last request is done: the writer writes what is queued and ends, so a server that stops loses no
    /// line.
    fn drop(&mut self) {
        drop(self.lines.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
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
        let proxy = self.operation.query_type == "proxy";
        let info = self.request_info.as_ref();
        let line = Line {
            time: self.time,
            audit_id: self.audit_id.to_str().unwrap_or_default(),
            plugin: "kubernetes",
            event_id: self.operation.event_id,
            severity_level: self.operation.severity,
            status: if succeeded { "succeeded" } else { "failed" },
            actor: Actor {
                actor_id: self.caller.as_ref().map(actor_id),
                via: match &self.caller {
                    Some(Caller::Backstage(crate::BackstageCaller::Plugin { plugin, on_behalf_of: Some(_) })) => {
                        Some(format!("plugin:{plugin}"))
                    }
                    _ => None,
                },
                ip: self.peer.map(|peer| peer.ip()),
                user_agent: self.user_agent.as_deref(),
            },
            request: LineRequest { method: &self.method, url: &self.url },
            meta: Meta {
                query_type: self.operation.query_type,
                cluster_name: self.clusters.first().filter(|_| proxy),
                method: proxy.then_some(&*self.method),
                path: info.filter(|_| proxy).map(|info| &*info.path),
                entity_ref: self.entity_ref.as_deref(),
                service_id: self.service_id.as_deref(),
            },
            clusters: &self.clusters,
            impersonated_user: self
                .impersonated
                .as_ref()
                .map(|identity| ImpersonatedUser { username: &identity.user, groups: &identity.groups }),
            verb: info.map(|info| &*info.verb),
            request_info: info.map(|info| {
                if info.is_resource_request {
                    Attributes::Resource {
                        api_group: &info.api_group,
                        api_version: &info.api_version,
                        resource: &info.resource,
                        subresource: &info.subresource,
                        namespace: &info.namespace,
                        name: &info.name,
                    }
                } else {
                    Attributes::NonResource { non_resource_url: &info.path }
                }
            }),
            decision: self.decision.as_ref().map(|decision| match decision {
                Ok(by) => Decision { allowed: true, by: Some(by), reason: None },
                Err(why) => Decision { allowed: false, by: None, reason: Some(why) },
            }),
            response_status: status,
            upstream_status: self.upstream_status,
            bytes: self.bytes,
            upgraded: self.upgraded.map(|(sent, received)| Upgraded { sent, received }),
            completed: (!self.completed).then_some(false),
            duration_ms: (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            error: self.error.as_deref(),
        };
        serde_json::to_string(&line).expect("an audit line serializes")
    }
}

/// An audit line, in the order it is written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    #[serde(serialize_with = "display")]
    time: jiff::Timestamp,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    plugin: &'static str,
    event_id: &'static str,
    severity_level: &'static str,
    status: &'static str,
    actor: Actor<'a>,
    request: LineRequest<'a>,
    meta: Meta<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    clusters: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<ImpersonatedUser<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verb: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_info: Option<Attributes<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<Decision<'a>>,
    response_status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    upgraded: Option<Upgraded>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<bool>,
    duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// A value as its `Display` writes it, without a `String` between.
fn display<S: serde::Serializer>(value: &impl std::fmt::Display, out: S) -> Result<S::Ok, S::Error> {
    out.collect_str(value)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Actor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<std::net::IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
}

#[derive(Serialize)]
struct LineRequest<'a> {
    method: &'a str,
    url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    query_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_name: Option<&'a String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_ref: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_id: Option<&'a str>,
}

#[derive(Serialize)]
struct ImpersonatedUser<'a> {
    username: &'a str,
    groups: &'a [String],
}

#[derive(Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
enum Attributes<'a> {
    Resource {
        api_group: &'a str,
        api_version: &'a str,
        resource: &'a str,
        subresource: &'a str,
        namespace: &'a str,
        name: &'a str,
    },
    NonResource {
        #[serde(rename = "nonResourceURL")]
        non_resource_url: &'a str,
    },
}

#[derive(Serialize)]
struct Decision<'a> {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Upgraded {
    sent: u64,
    received: u64,
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

/// The middleware that records every request: outermost, so that refusals of the browser guard, the limits
/// and the API auth are in the log too. Without `kubeauth.server.audit` nothing is written, and requests still
/// get their `Audit-ID`.
pub(crate) async fn record(State(log): State<Option<Arc<AuditLog>>>, mut request: Request, next: Next) -> Response {
    let record = AuditRecord::new(log, &request);
    request.extensions_mut().insert(record.clone());
    let mut response = next.run(request).await;
    let status = response.status();
    let message = response.extensions_mut().remove::<crate::error::ErrorAnswer>();
    record.with(|e| {
        e.status = Some(status.as_u16());
        e.error = message.map(|m| m.message);
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
    let mut id = [b'-'; 36];
    let digits = (0..36).filter(|i| ![8, 13, 18, 23].contains(i));
    for (at, nibble) in digits.zip(bytes.iter().flat_map(|b| [b >> 4, b & 0x0f])) {
        id[at] = b"0123456789abcdef"[usize::from(nibble)];
    }
    HeaderValue::from_bytes(&id).expect("hex and dashes")
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
    use serde_json::{Value, json};

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
        let id = id.to_str().unwrap();
        let dashes: Vec<usize> = id.match_indices('-').map(|(at, _)| at).collect();
        assert_eq!((id.len(), dashes, &id[14..15]), (36, vec![8, 13, 18, 23], "4"), "{id}");
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
        assert_ne!(id, new_audit_id());
    }

    #[test]
    fn a_log_that_ends_has_written_every_line() {
        let out = Lines::default();
        let log = Arc::new(AuditLog::to_writer(Box::new(out.clone())));
        let request = http::Request::get("/api/kubernetes/clusters").body(Body::empty()).unwrap();
        let records: Vec<AuditRecord> = (0..500).map(|_| AuditRecord::new(Some(log.clone()), &request)).collect();
        drop(log);
        drop(records);
        // The last record let go of the log: its writer has written everything queued and ended.
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 500);
    }
}
