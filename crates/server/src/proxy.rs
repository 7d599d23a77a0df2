//! `ANY /api/kubernetes/proxy/{path}`: the request, authenticated for the cluster the
//! `Backstage-Kubernetes-Cluster` header names, forwarded to that cluster's API server.
//!
//! - Small bodies (a known length up to [`REPLAY_LIMIT`]) are held in memory, so that a 401 can be retried with
//!   a refreshed credential; larger or chunked ones are streamed (up to [`MAX_BODY`]).
//! - Answers are streamed (watches, `logs -f`).
//! - Upgrades (`Connection: Upgrade`: exec, attach, port-forward over SPDY or WebSocket, WebSocket watches) are
//!   passed through: the API server's `101` goes back to the caller and the two connections are joined.
//! - The path is read as the API server reads it ([`crate::request_info`]) and goes upstream in canonical form,
//!   under the cluster's URL; dot segments, `//`, bad escapes and percent-encoded `/`, `?`, `#` are refused, so
//!   that no path leaves a cluster URL's prefix and the rules decide on what the API server serves.
//! - Every request upstream carries an `Audit-ID` kubeauth made (a caller's own is not sent), which joins the
//!   API server's audit log to kubeauth's.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use kubeauth::RequestBody;

use crate::audit::AuditRecord;
use crate::request_info::{ApiRequest, RequestInfo};
use crate::{KubeauthServer, ServerError, request_auth_from_headers};

/// The largest request body the proxy takes.
pub(crate) const MAX_BODY: usize = 10 * 1024 * 1024;

/// Bodies of a known length up to this are buffered, and so replayed after a 401.
pub(crate) const REPLAY_LIMIT: u64 = 1024 * 1024;

/// How long the API server has to start answering (a watch answers at once and then streams).
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

const CLUSTER_HEADER: &str = "backstage-kubernetes-cluster";
/// The caller's own `Authorization` for the cluster (Backstage's `HEADER_KUBERNETES_AUTH`).
const OWN_AUTH_HEADER: &str = "backstage-kubernetes-authorization";

/// Where the proxy's routes start; what follows is the path on the API server.
pub(crate) const PREFIX: &str = "/api/kubernetes/proxy";

/// The request headers that go upstream: content negotiation, conditional requests, the body's framing, what
/// kubectl sends about itself, and the WebSocket handshake (with its `Origin`, which the API server's watch
/// handshake requires and the browser guard has already checked). Nothing else does: not `Impersonate-*` or
/// `X-Remote-*` (the caller would act as another user with the server's credential), not `Cookie`,
/// `Proxy-*`, `Forwarded`/`X-Forwarded-*`, nor the caller's `Authorization` (the cluster's credential is set by
/// the credential layer).
const UPSTREAM_REQUEST_HEADERS: [&str; 21] = [
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-encoding",
    "content-length",
    "content-type",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-unmodified-since",
    "kubectl-command",
    "kubectl-session",
    "origin",
    "sec-websocket-extensions",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-version",
    "user-agent",
    "x-request-id",
    "x-stream-protocol-version",
];

/// The answer headers that come back to the caller, on the server's origin. Not `Set-Cookie` (a cookie of the
/// server's origin), `Access-Control-*` (the server's CORS is its own), `Strict-Transport-Security`, `Alt-Svc`,
/// `Refresh`, `Clear-Site-Data` or the API server's own `Content-Security-Policy`; `Location` only as rewritten
/// by [`proxied_location`].
const CALLER_RESPONSE_HEADERS: [&str; 21] = [
    "audit-id",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "date",
    "etag",
    "expires",
    "last-modified",
    "retry-after",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "vary",
    "warning",
    "www-authenticate",
    "x-kubernetes-pf-flowschema-uid",
    "x-kubernetes-pf-prioritylevel-uid",
    "x-stream-protocol-version",
];

/// The headers of a request as they go upstream: those of [`UPSTREAM_REQUEST_HEADERS`].
fn upstream_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        if UPSTREAM_REQUEST_HEADERS.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The headers of an answer as they go back: those of [`CALLER_RESPONSE_HEADERS`], a `Location` under the
/// proxy, and what keeps a browser from running or sniffing the answer as a page of the server's origin.
fn caller_headers(upstream: &HeaderMap, cluster_path: &str) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len() + 2);
    for (name, value) in upstream {
        if CALLER_RESPONSE_HEADERS.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    if let Some(location) = upstream.get(header::LOCATION).and_then(|l| proxied_location(l, cluster_path)) {
        out.insert(header::LOCATION, location);
    }
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    out
}

/// A redirect of the API server (`/…/proxy` to `/…/proxy/`) as a path under the proxy; a redirect elsewhere (an
/// absolute or scheme-relative URL, a path outside the cluster URL's) is dropped.
fn proxied_location(location: &HeaderValue, cluster_path: &str) -> Option<HeaderValue> {
    let location = location.to_str().ok()?;
    if !location.starts_with('/') || location.starts_with("//") || location.starts_with("/\\") {
        return None;
    }
    let prefix = cluster_path.trim_end_matches('/');
    let rest = location.strip_prefix(prefix).filter(|r| r.starts_with('/'))?;
    HeaderValue::from_str(&format!("{PREFIX}{rest}")).ok()
}

/// The caller's own credential for the cluster, from `Backstage-Kubernetes-Authorization: Bearer <token>` (the
/// header Backstage's proxy docs tell plugin authors to send): sent upstream instead of the cluster's
/// credential, as Backstage's proxy does. Only a bearer token is taken.
fn callers_own_credential(headers: &HeaderMap) -> Result<Option<kubeauth::Credential>, ServerError> {
    let Some(value) = headers.get(OWN_AUTH_HEADER) else { return Ok(None) };
    let token = crate::headers::bearer_token(value)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ServerError::BadRequest("Backstage-Kubernetes-Authorization must be `Bearer <token>`".into()))?;
    Ok(Some(kubeauth::Credential::bearer(token)))
}

/// The protocol a request asks to upgrade to, if it does (`Connection: upgrade` and `Upgrade: <protocol>`).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade.then(|| headers.get(header::UPGRADE).cloned()).flatten()
}

pub(crate) async fn proxy(
    State(server): State<Arc<KubeauthServer>>,
    Extension(record): Extension<AuditRecord>,
    mut request: Request,
) -> Result<Response, ServerError> {
    let target = upstream_target(request.method(), request.uri())?;
    let protocol = upgrade_protocol(request.headers());
    let caller_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let cluster_name = parts.headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    let cluster = server.cluster(cluster_name).await?;
    let auth = request_auth_from_headers(&parts.headers);
    // kubeauth's own rules, before anything reaches the cluster (an upgrade to exec included).
    let caller = parts.extensions.get::<crate::Caller>().cloned().unwrap_or(crate::Caller::Local);
    let decision = server.permissions().check(&caller, &cluster.name, &target.info);
    record.cluster(&cluster.name);
    record.decided(&target.info, &decision);
    decision?;
    let callers_own = callers_own_credential(&parts.headers)?;
    // The caller's own credential is the caller already; else the server's identity impersonates it.
    let impersonated = match callers_own {
        Some(_) => None,
        None => server.impersonated(&cluster, &caller)?,
    };
    record.impersonated(impersonated.as_ref());
    let client = server.http_client(&cluster, &auth, callers_own).await?;
    let cluster_path = cluster.url.parse::<http::Uri>().map(|u| u.path().to_owned()).unwrap_or_default();

    let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = match length {
        _ if body.is_end_stream() => RequestBody::empty(),
        Some(length) if length > MAX_BODY as u64 => return Err(ServerError::BodyTooLarge(MAX_BODY)),
        Some(length) if length <= REPLAY_LIMIT => RequestBody::from_bytes(
            http_body_util::Limited::new(body, MAX_BODY).collect().await.map_err(|e| body_error(&*e))?.to_bytes(),
        ),
        _ => RequestBody::streaming(http_body_util::Limited::new(body, MAX_BODY)),
    };
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(target.uri)
        .body(body)
        .map_err(|e| ServerError::Upstream { cluster: cluster.name.clone(), message: e.to_string() })?;
    *upstream.headers_mut() = upstream_headers(&parts.headers);
    // The API server records this request under an Audit-ID kubeauth makes, never one a caller chose.
    upstream.headers_mut().insert("audit-id", record.audit_id());
    if let Some(identity) = &impersonated {
        upstream.headers_mut().extend(identity.headers()?);
    }
    if let Some(protocol) = &protocol {
        upstream.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        upstream.headers_mut().insert(header::UPGRADE, protocol.clone());
    }

    tracing::debug!(cluster = %cluster.name, method = %parts.method, path = %upstream.uri(), upgrade = protocol.is_some(), "proxying");
    let mut response = tokio::time::timeout(UPSTREAM_TIMEOUT, client.send(upstream))
        .await
        .map_err(|_| ServerError::UpstreamTimeout {
            cluster: cluster.name.clone(),
            seconds: UPSTREAM_TIMEOUT.as_secs(),
        })?
        .map_err(|e| match e.downcast::<kubeauth::core::Error>() {
            // The cluster's credential could not be had: the provider's error, as for the other endpoints.
            Ok(credential) => ServerError::Facade(kubeauth::Error::Auth(*credential)),
            Err(e) if crate::limits::timed_out(&*e).is_some() => body_error(&*e),
            Err(e) => ServerError::Upstream { cluster: cluster.name.clone(), message: kubeauth::report(&*e) },
        })?;
    record.upstream_status(response.status().as_u16());

    if let (Some(caller_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (caller_upgrade, response.status()) {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let name = cluster.name.clone();
        tokio::spawn(async move {
            match tokio::try_join!(caller_upgrade, upstream_upgrade) {
                Ok((caller, upstream)) => {
                    let (mut caller, mut upstream) = (TokioIo::new(caller), TokioIo::new(upstream));
                    match tokio::io::copy_bidirectional(&mut caller, &mut upstream).await {
                        Ok((sent, received)) => {
                            tracing::debug!(cluster = %name, sent, received, "upgraded connection closed");
                            record.upgraded(sent, received);
                        }
                        Err(e) => tracing::debug!(cluster = %name, error = %e, "upgraded connection ended"),
                    }
                }
                Err(e) => tracing::warn!(cluster = %name, error = %e, "an upgrade did not complete"),
            }
        });
        // The 101 with the API server's handshake headers (Sec-WebSocket-Accept, the protocol).
        let (mut parts, _) = response.into_parts();
        let upgrade = parts.headers.get(header::UPGRADE).cloned().or(protocol);
        parts.headers = caller_headers(&parts.headers, &cluster_path);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Some(upgrade) = upgrade {
            parts.headers.insert(header::UPGRADE, upgrade);
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, body) = response.into_parts();
    parts.headers = caller_headers(&parts.headers, &cluster_path);
    parts.version = http::Version::HTTP_11;
    let body = if body.is_end_stream() {
        Body::empty()
    } else {
        paced(body, server.gates().limits().write_timeout, cluster.name.clone())
    };
    Ok(Response::from_parts(parts, body).into_response())
}

/// An answer's body as the caller takes it: a task reads it from the API server and hands it on one part at a
/// time, and when the caller has taken nothing for `timeout`, drops it (the API server's stream is reset and
/// its share of the cluster's connection freed) and the caller's answer ends in an error, never a clean end.
fn paced<B>(mut upstream: B, timeout: Duration, cluster: String) -> Body
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    let (parts, mut receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(frame) = upstream.frame().await {
            match tokio::time::timeout(timeout, parts.send(frame.map_err(axum::Error::new))).await {
                Ok(Ok(())) => {}
                // The caller is gone.
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!(cluster, seconds = timeout.as_secs(), "the caller took nothing of an answer: cut");
                    drop(upstream);
                    // What the caller takes next is this error.
                    let cut = axum::Error::new("the caller took nothing of the answer in time: cut");
                    let _ = parts.send(Err(cut)).await;
                    return;
                }
            }
        }
    });
    Body::new(http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))))
}

/// Why a request body could not be read: its deadline passed, or it is larger than the proxy takes.
fn body_error(error: &(dyn std::error::Error + 'static)) -> ServerError {
    match crate::limits::timed_out(error) {
        Some(timeout) => ServerError::BodyTimeout(timeout.0),
        None => ServerError::BodyTooLarge(MAX_BODY),
    }
}

/// What a proxied request means to the API server, and the path and query it is sent with: the caller's
/// after `/api/kubernetes/proxy`, decoded, checked and sent in canonical form as [`RequestInfo::parse`] says
/// (a dot segment, a percent-encoded `/`, `?` or `#`, `//`, a bad escape are refused with a 400 naming the
/// path, so that no path leaves a cluster URL's prefix or means something else upstream).
pub fn upstream_target(method: &http::Method, uri: &http::Uri) -> Result<ApiRequest, ServerError> {
    let raw = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
    let rest = raw
        .strip_prefix(PREFIX)
        .filter(|r| r.starts_with('/'))
        .ok_or_else(|| ServerError::BadRequest("proxy path: not under the proxy".into()))?;
    RequestInfo::parse(method, rest).map_err(|refused| ServerError::BadRequest(format!("proxy path: {refused}")))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderName;

    use super::*;

    fn target(path: &str) -> Result<String, String> {
        upstream_target(&http::Method::GET, &path.parse().unwrap())
            .map(|r| r.uri.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_path_goes_on_in_canonical_form() {
        assert_eq!(
            target("/api/kubernetes/proxy/api/v1/pods?watch=1&labelSelector=a%3Db"),
            Ok("/api/v1/pods?watch=1&labelSelector=a%3Db".into())
        );
        assert_eq!(target("/api/kubernetes/proxy/api/v1/namespaces/a%20b"), Ok("/api/v1/namespaces/a%20b".into()));
        assert_eq!(target("/api/kubernetes/proxy/%61pi/v1/namespaces"), Ok("/api/v1/namespaces".into()));
        assert_eq!(target("/api/kubernetes/proxy/version"), Ok("/version".into()));
        assert_eq!(
            target("/api/kubernetes/proxy/api/v1/namespaces/x..y/pods"),
            Ok("/api/v1/namespaces/x..y/pods".into())
        );
    }

    #[test]
    fn only_listed_headers_go_upstream() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("user-agent", "kubectl/v1.37"),
            ("impersonate-user", "admin"),
            ("impersonate-group", "system:masters"),
            ("impersonate-extra-scopes", "x"),
            ("x-remote-user", "admin"),
            ("x-remote-group", "system:masters"),
            ("cookie", "session=1"),
            ("proxy-authorization", "Basic eA=="),
            ("authorization", "Bearer api-token"),
            ("x-forwarded-for", "1.2.3.4"),
            ("audit-id", "chosen-by-the-caller"),
            ("backstage-kubernetes-authorization-oidc", "id-token"),
        ] {
            incoming.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let out = upstream_headers(&incoming);
        let mut names: Vec<_> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "content-type", "user-agent"]);
    }

    #[test]
    fn answers_come_back_without_cookies_and_sandboxed() {
        let mut upstream = HeaderMap::new();
        upstream.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        upstream.insert(header::SET_COOKIE, HeaderValue::from_static("session=stolen; Path=/"));
        upstream.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        upstream.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=1"));
        upstream.insert(header::LOCATION, HeaderValue::from_static("https://evil.example/"));
        let out = caller_headers(&upstream, "/");
        assert_eq!(out.get(header::CONTENT_TYPE).unwrap(), "text/html");
        assert_eq!(out.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert!(out.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().starts_with("sandbox"));
        for gone in [
            header::SET_COOKIE,
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::STRICT_TRANSPORT_SECURITY,
            header::LOCATION,
        ] {
            assert!(out.get(&gone).is_none(), "{gone} came back");
        }
    }

    #[test]
    fn redirects_stay_under_the_proxy() {
        let location = |value: &'static str, cluster_path: &str| {
            proxied_location(&HeaderValue::from_static(value), cluster_path).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            location("/api/v1/namespaces/a/services/b/proxy/", "/"),
            Some("/api/kubernetes/proxy/api/v1/namespaces/a/services/b/proxy/".into())
        );
        assert_eq!(
            location("/k8s/clusters/c-1/api/v1/x/", "/k8s/clusters/c-1"),
            Some("/api/kubernetes/proxy/api/v1/x/".into())
        );
        assert_eq!(location("/elsewhere/", "/k8s/clusters/c-1"), None);
        assert_eq!(location("//evil.example/", "/"), None);
        assert_eq!(location("https://evil.example/", "/"), None);
    }

    #[test]
    fn dot_segments_and_encoded_delimiters_are_refused() {
        for bad in [
            "/api/kubernetes/proxy/api/v1/../../admin",
            "/api/kubernetes/proxy/api/v1/%2e%2e/secrets",
            "/api/kubernetes/proxy/api/v1/.%2E/secrets",
            "/api/kubernetes/proxy/api/v1/./pods",
            "/api/kubernetes/proxy/api/v1/namespaces%2Fkube-system/secrets",
            "/api/kubernetes/proxy/api/v1/pods%3Fwatch=1",
            "/api/kubernetes/proxy/api/v1/pods%23fragment",
        ] {
            let err = target(bad).unwrap_err();
            assert!(err.starts_with("proxy path: "), "{bad}: {err}");
        }
    }
}
