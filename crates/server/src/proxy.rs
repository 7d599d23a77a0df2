//! `ANY /api/kubernetes/proxy/{path}`: the request, authenticated for the cluster the
//! `Backstage-Kubernetes-Cluster` header names, forwarded to that cluster's API server.
//!
//! - Small bodies (a known length up to [`REPLAY_LIMIT`]) are held in memory, so that a 401 can be retried with
//!   a refreshed credential; larger or chunked ones are streamed (up to [`MAX_BODY`]).
//! - Answers are streamed (watches, `logs -f`).
//! - Upgrades (`Connection: Upgrade`: exec, attach, port-forward over SPDY or WebSocket, WebSocket watches) are
//!   passed through: the API server's `101` goes back to the caller and the two connections are joined.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
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
    Path(path): Path<String>,
    mut request: Request,
) -> Result<Response, ServerError> {
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
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(&path_and_query)
        .body(body)
        .map_err(|e| ServerError::Upstream { cluster: cluster.name.clone(), message: e.to_string() })?;
    *upstream.headers_mut() = upstream_headers(&parts.headers);
    if let Some(protocol) = &protocol {
        upstream.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        upstream.headers_mut().insert(header::UPGRADE, protocol.clone());
    }

    tracing::debug!(cluster = %cluster.name, method = %parts.method, path = %path_and_query, upgrade = protocol.is_some(), "proxying");
    let mut response = tokio::time::timeout(UPSTREAM_TIMEOUT, client.send(upstream))
        .await
        .map_err(|_| ServerError::UpstreamTimeout {
            cluster: cluster.name.clone(),
            seconds: UPSTREAM_TIMEOUT.as_secs(),
        })?
        .map_err(|e| ServerError::Upstream { cluster: cluster.name.clone(), message: kubeauth::report(&*e) })?;

    if let (Some(caller_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (caller_upgrade, response.status()) {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let name = cluster.name.clone();
        tokio::spawn(async move {
            match tokio::try_join!(caller_upgrade, upstream_upgrade) {
                Ok((caller, upstream)) => {
                    let (mut caller, mut upstream) = (TokioIo::new(caller), TokioIo::new(upstream));
                    match tokio::io::copy_bidirectional(&mut caller, &mut upstream).await {
                        Ok((sent, received)) => {
                            tracing::debug!(cluster = %name, sent, received, "upgraded connection closed")
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
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}
