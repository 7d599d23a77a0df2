use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;

use crate::{KubeauthServer, ServerError, request_auth_from_headers};

/// How large a request body the proxy takes (it is buffered so that a 401 can be retried).
pub(crate) const MAX_BODY: usize = 10 * 1024 * 1024;

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
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        if HOP_BY_HOP.contains(name)
            || name == header::HOST
            || name == header::AUTHORIZATION
            || name == header::CONTENT_LENGTH
            || name.as_str().starts_with("backstage-kubernetes-")
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

pub(crate) async fn proxy(
    State(server): State<Arc<KubeauthServer>>,
    Path(path): Path<String>,
    request: Request,
) -> Result<Response, ServerError> {
    let (parts, body) = request.into_parts();
    let cluster_name = parts.headers.get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    let cluster = server.cluster(cluster_name).await?;
    let auth = request_auth_from_headers(&parts.headers);
    let client = server.client(&cluster, &auth).await?;

    let body = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| ServerError::BodyTooLarge(MAX_BODY))?
        .to_bytes();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("/{path}?{q}"),
        None => format!("/{path}"),
    };
    let mut upstream = http::Request::builder()
        .method(parts.method.clone())
        .uri(&path_and_query)
        .body(kube::client::Body::from(body.to_vec()))
        .map_err(|e| ServerError::Upstream { cluster: cluster.name.clone(), message: e.to_string() })?;
    *upstream.headers_mut() = upstream_headers(&parts.headers);

    tracing::debug!(cluster = %cluster.name, method = %parts.method, path = %path_and_query, "proxying");
    let response = client
        .send(upstream)
        .await
        .map_err(|e| ServerError::Upstream { cluster: cluster.name.clone(), message: kubeauth::report(&e) })?;
    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(body)).into_response())
}
