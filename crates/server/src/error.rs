use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the server could not answer a request itself; sent as Backstage's error body, with a Kubernetes `Status`'s
/// fields beside it (what kubectl and client-go read through the proxy).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The request names no cluster and there are several.
    #[error("the Backstage-Kubernetes-Cluster header is required: {0} clusters are configured")]
    ClusterHeaderRequired(usize),
    /// The request names a cluster that was not located.
    #[error("Cluster '{0}' not found")]
    ClusterNotFound(String),
    /// The clusters could not be located.
    #[error(transparent)]
    Locator(#[from] kubeauth::LocatorError),
    /// No credential for the cluster, or no client.
    #[error(transparent)]
    Facade(#[from] kubeauth::Error),
    /// The API server could not be reached (TLS, connection).
    #[error("cluster '{cluster}': the API server could not be reached: {message}")]
    Upstream {
        /// The cluster.
        cluster: String,
        /// What went wrong.
        message: String,
    },
    /// The request body is larger than the proxy takes.
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The request body did not arrive within `bodyReadTimeoutSeconds`.
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// The request is malformed (an entity reference that does not parse).
    #[error("{0}")]
    BadRequest(String),
    /// The request body is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// Refused by kubeauth's own access rules (`kubeauth.server.permissions`, `impersonation`).
    #[error("{0}")]
    Forbidden(String),
    /// An entity reference was given but no catalog is configured.
    #[error("kubeauth.catalog is not configured: entity references cannot be resolved")]
    NoCatalog,
    /// The catalog could not answer, or has no such entity.
    #[error(transparent)]
    Catalog(#[from] kubeauth::locator::catalog::CatalogError),
    /// The API server did not answer in time.
    #[error("cluster '{cluster}': the API server did not answer within {seconds} s")]
    UpstreamTimeout {
        /// The cluster.
        cluster: String,
        /// The limit.
        seconds: u64,
    },
    /// A setting of the server is wrong (at startup).
    #[error("{}{key}: {message}", origin.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Setting {
        /// The config file, if the setting came from one.
        origin: Option<std::path::PathBuf>,
        /// The key's full path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The listener failed.
    #[error("the server failed: {0}")]
    Listen(String),
    /// The server is answering as much as its limits allow (`kubeauth.server.limits`).
    #[error("kubeauth is answering as many {what} as it may; try again in {retry_after_seconds} s")]
    Busy {
        /// What is at its limit.
        what: &'static str,
        /// When to try again.
        retry_after_seconds: u64,
    },
}

impl ServerError {
    pub(crate) fn setting(origin: Option<&std::path::Path>, key: &str, message: String) -> Self {
        Self::Setting { origin: origin.map(ToOwned::to_owned), key: key.to_owned(), message }
    }

    /// Whether the error is a wrong setting or config (rather than a failure at run time).
    pub fn is_config(&self) -> bool {
        match self {
            Self::Setting { .. } | Self::Locator(_) => true,
            Self::Facade(kubeauth::Error::Locator(kubeauth::LocatorError::Locator { .. })) => false,
            Self::Facade(kubeauth::Error::Locator(_) | kubeauth::Error::Registry(_)) => true,
            Self::Facade(kubeauth::Error::Auth(_)) => true,
            _ => false,
        }
    }
}

impl ServerError {
    fn status(&self) -> StatusCode {
        use kubeauth::core::Error as Auth;
        match self {
            // As Backstage: no cluster named, several configured, is a cluster not found.
            Self::ClusterHeaderRequired(_) => StatusCode::NOT_FOUND,
            Self::ClusterNotFound(_) => StatusCode::NOT_FOUND,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) | Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NoCatalog => StatusCode::NOT_IMPLEMENTED,
            Self::Catalog(kubeauth::locator::catalog::CatalogError::NotFound(_)) => StatusCode::NOT_FOUND,
            Self::Catalog(_) => StatusCode::BAD_GATEWAY,
            Self::Locator(_) | Self::Facade(kubeauth::Error::Locator(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Facade(kubeauth::Error::Auth(Auth::MissingUserToken { .. })) => StatusCode::UNAUTHORIZED,
            Self::Facade(kubeauth::Error::Auth(
                Auth::InvalidCluster { .. } | Auth::Config { .. } | Auth::UnknownAuthProvider { .. },
            )) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Facade(_) | Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Setting { .. } | Self::Listen(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = kubeauth::report(&self);
        let name = match self {
            Self::InvalidJson(_) => "SyntaxError",
            _ => error_name(status),
        };
        if let Self::Busy { retry_after_seconds, .. } = self {
            tracing::debug!(%status, error = %message, "request refused at a limit");
            let mut answer = named_response(status, name, message);
            answer.headers_mut().insert(header::RETRY_AFTER, retry_after_seconds.into());
            return answer;
        }
        if status.is_server_error() {
            tracing::warn!(%status, error = %message, "request failed");
        }
        named_response(status, name, message)
    }
}

/// The name Backstage's errors give a status (`@backstage/errors`).
fn error_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "InputError",
        401 => "AuthenticationError",
        403 => "NotAllowedError",
        404 => "NotFoundError",
        409 => "ConflictError",
        503 => "ServiceUnavailableError",
        _ => "Error",
    }
}

/// An answer kubeauth made itself: its error's name and message (for the body's `request` part, added by
/// [`with_request`], and for the audit line).
#[derive(Clone, Debug)]
pub(crate) struct ErrorAnswer {
    pub(crate) name: &'static str,
    pub(crate) message: String,
}

/// An answer of the server itself: Backstage's error body (`{error: {name, message}, request: {method, url},
/// response: {statusCode}}`, what Backstage's frontend reads), and the fields of a Kubernetes `Status` beside it
/// (what kubectl and client-go read through the proxy).
pub(crate) fn status_response(status: StatusCode, message: String) -> Response {
    named_response(status, error_name(status), message)
}

fn named_response(status: StatusCode, name: &'static str, message: String) -> Response {
    let answer = ErrorAnswer { name, message };
    let mut response = (status, Json(error_body(status, &answer, None))).into_response();
    response.extensions_mut().insert(answer);
    response
}

fn error_body(status: StatusCode, answer: &ErrorAnswer, request: Option<serde_json::Value>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "error": {"name": answer.name, "message": &answer.message},
        "response": {"statusCode": status.as_u16()},
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": &answer.message,
        "reason": status.canonical_reason().unwrap_or_default().replace(' ', ""),
        "code": status.as_u16(),
    });
    if let Some(request) = request {
        body["request"] = request;
    }
    body
}

/// The middleware that gives kubeauth's own error answers their `request` part: the method and the URL below
/// the plugin's base path (`/proxy/...`, `/services/...`), as Backstage's error handler writes them.
pub(crate) async fn with_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = request.method().to_string();
    let uri = request.uri().path_and_query().map_or_else(|| request.uri().path().to_owned(), ToString::to_string);
    let url = uri.strip_prefix("/api/kubernetes").filter(|u| u.starts_with('/')).unwrap_or(&uri).to_owned();
    let response = next.run(request).await;
    let Some(answer) = response.extensions().get::<ErrorAnswer>().cloned() else { return response };
    let (mut parts, _) = response.into_parts();
    let body = error_body(parts.status, &answer, Some(serde_json::json!({"method": method, "url": url})));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}
