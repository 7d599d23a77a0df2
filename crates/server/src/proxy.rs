//! `ANY /api/kubernetes/proxy/{path}`: the request, authenticated for the cluster the
//! `Backstage-Kubernetes-Cluster` header names, forwarded to that cluster's API server.
//!
//! - Small bodies (a known length up to [`REPLAY_LIMIT`]) are held in memory, so that a 401 can be retried with
//!   a refreshed credential; larger or chunked ones are streamed (up to [`MAX_BODY`]).
//! - Answers are streamed (watches, `logs -f`).
//! - Upgrades (`Connection: Upgrade`: exec, attach, port-forward over SPDY or WebSocket, WebSocket watches) are
//!   passed through: the API server's `101` goes back to the caller and the two connections are joined.
//! - The path goes upstream as the caller wrote it (never percent-decoded), under the cluster's URL; dot
//!   segments and percent-encoded `/`, `?`, `#` are refused, so that no path leaves a cluster URL's prefix.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use kubeauth::RequestBody;

use crate::{KubeauthServer, ServerError, request_auth_from_headers};

/// The largest request body the proxy takes.
pub(crate) const MAX_BODY: usize = 10 * 1024 * 1024;

/// Bodies of a known length up to this are buffered, and so replayed after a 401.
pub(crate) const REPLAY_LIMIT: u64 = 1024 * 1024;

/// How long the API server has to start answering (a watch answers at once and then streams).
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

const CLUSTER_HEADER: &str = "backstage-kubernetes-cluster";

/// Where the proxy's routes start; what follows is the path on the API server.
pub(crate) const PREFIX: &str = "/api/kubernetes/proxy";

/// Hop-by-hop headers (RFC 9110 §7.6.1) never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The headers of a request as they go upstream: no hop-by-hop headers, no `Host`, no Backstage headers, and no
/// `Authorization` of the caller's: the cluster's credential is set by the credential layer.
fn upstream_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        if HOP_BY_HOP.contains(name)
            || name == header::HOST
            || name == header::AUTHORIZATION
            || name.as_str().starts_with("backstage-kubernetes-")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
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
    mut request: Request,
) -> Result<Response, ServerError> {
    let target = upstream_target(request.uri())?;
    let protocol = upgrade_protocol(request.headers());
    let caller_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let cluster_name = parts.headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    let cluster = server.cluster(cluster_name).await?;
    let auth = request_auth_from_headers(&parts.headers);
    let client = server.http_client(&cluster, &auth).await?;

    let length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let body = match length {
        _ if body.is_end_stream() => RequestBody::empty(),
        Some(length) if length > MAX_BODY as u64 => return Err(ServerError::BodyTooLarge(MAX_BODY)),
        Some(length) if length <= REPLAY_LIMIT => RequestBody::from_bytes(
            http_body_util::Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|_| ServerError::BodyTooLarge(MAX_BODY))?
                .to_bytes(),
        ),
        _ => RequestBody::streaming(http_body_util::Limited::new(body, MAX_BODY)),
    };
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(target)
        .body(body)
        .map_err(|e| ServerError::Upstream { cluster: cluster.name.clone(), message: e.to_string() })?;
    *upstream.headers_mut() = upstream_headers(&parts.headers);
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
            Err(e) => ServerError::Upstream { cluster: cluster.name.clone(), message: kubeauth::report(&*e) },
        })?;

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
                        }
                        Err(e) => tracing::debug!(cluster = %name, error = %e, "upgraded connection ended"),
                    }
                }
                Err(e) => tracing::warn!(cluster = %name, error = %e, "an upgrade did not complete"),
            }
        });
        // The 101 with the API server's headers (Upgrade, Connection, Sec-WebSocket-Accept, the protocol).
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, body) = response.into_parts();
    // HTTP/2 answers carry no hop-by-hop header.
    if parts.version != http::Version::HTTP_2 {
        for name in HOP_BY_HOP {
            parts.headers.remove(name);
        }
    }
    parts.version = http::Version::HTTP_11;
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}

/// The path and query the API server gets: the caller's, exactly as sent (never percent-decoded), after
/// [`PREFIX`]. A dot segment (`.`, `..`, also as `%2e`) or a percent-encoded `/`, `?` or `#` is refused: behind a
/// cluster URL with a path (a gateway, Rancher) it would reach past that path with the cluster's credential.
fn upstream_target(uri: &http::Uri) -> Result<http::Uri, ServerError> {
    let refuse = |why: &str| ServerError::BadRequest(format!("proxy path: {why}"));
    let raw = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
    let rest = raw.strip_prefix(PREFIX).filter(|r| r.starts_with('/')).ok_or_else(|| refuse("not under the proxy"))?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    if path.split('/').any(is_dot_segment) {
        return Err(refuse("`.` and `..` segments are not allowed"));
    }
    if has_encoded_delimiter(path) {
        return Err(refuse("percent-encoded `/`, `?` and `#` are not allowed"));
    }
    rest.parse().map_err(|_| refuse("not a valid path"))
}

/// `.` or `..`, with any of its dots written `%2e`.
fn is_dot_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let (mut dots, mut i) = (0, 0);
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'.', _, _) => i += 1,
            (b'%', Some(b'2'), Some(b'e' | b'E')) => i += 3,
            _ => return false,
        }
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

/// Whether the path holds `%2f`, `%3f` or `%23` (either case).
fn has_encoded_delimiter(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%' && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'f') | (b'3', b'f') | (b'2', b'3'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Result<String, String> {
        upstream_target(&path.parse().unwrap()).map(|u| u.to_string()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_path_goes_on_as_it_was_sent() {
        assert_eq!(
            target("/api/kubernetes/proxy/api/v1/pods?watch=1&labelSelector=a%3Db"),
            Ok("/api/v1/pods?watch=1&labelSelector=a%3Db".into())
        );
        assert_eq!(target("/api/kubernetes/proxy/api/v1/namespaces/a%20b"), Ok("/api/v1/namespaces/a%20b".into()));
        assert_eq!(target("/api/kubernetes/proxy/version"), Ok("/version".into()));
        assert_eq!(
            target("/api/kubernetes/proxy/api/v1/namespaces/x..y/pods"),
            Ok("/api/v1/namespaces/x..y/pods".into())
        );
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
