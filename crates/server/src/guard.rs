//! Who may drive the API from a browser: CORS for the origins the operator lists, and, for an open API (no API
//! auth, as on a workstation's loopback address), nothing a web page can make a browser send.
//!
//! The rules, in order, for every request to the API (the probes are not concerned):
//! 1. a request with an `Origin` not in `kubeauth.server.cors.origin` is refused (403), whatever the method: a
//!    browser sends `Origin` with every cross-origin request, WebSocket handshakes included. An open API also
//!    takes pages served from this machine (`http://localhost:3000`, a Backstage frontend in development):
//!    no DNS rebinding gives a page such an origin;
//! 2. a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) from a listed origin is answered here;
//! 3. for an open API only:
//!    - the `Host` must be a loopback name or address (`localhost`, `127.0.0.0/8`, `[::1]`) or one of
//!      `kubeauth.server.allowedHosts`: a page served from another name that resolves to 127.0.0.1 (DNS
//!      rebinding) is refused (403);
//!    - a request the browser marks `Sec-Fetch-Site: cross-site` or `same-site` without a listed origin is
//!      refused (403);
//!    - a `POST` with no `Content-Type`, or one a page may send without a preflight (`text/plain`,
//!      `application/x-www-form-urlencoded`, `multipart/form-data`), is refused (415), unless it asks for an
//!      `Upgrade` (kubectl's exec over SPDY), which no page can send.
//!
//! Local tools (kubectl, curl, scripts) send none of these, and keep working as with `kubectl proxy`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The request headers a listed origin may send (CORS).
const ALLOWED_HEADERS: &str = "authorization, content-type, accept, backstage-kubernetes-cluster, \
backstage-kubernetes-authorization, backstage-kubernetes-authorization-*";

/// The browser guard of one server.
#[derive(Debug, Clone, Default)]
pub struct BrowserGuard {
    /// No API auth: the loopback rules apply.
    open: bool,
    /// `scheme://host[:port]`, lowercase.
    origins: Vec<String>,
    /// Extra host names of an open API, lowercase.
    hosts: Vec<String>,
}

impl BrowserGuard {
    /// A guard for an API that is `open` (no API auth), with the CORS `origins` and extra `hosts`.
    pub fn new(open: bool, origins: &[String], hosts: &[String]) -> Self {
        let normalize = |o: &String| o.trim().trim_end_matches('/').to_ascii_lowercase();
        Self {
            open,
            origins: origins.iter().map(normalize).collect(),
            hosts: hosts.iter().map(|h| h.trim().to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `origin` is listed.
    fn allows_origin(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/')))
    }

    /// Whether an open API answers to `host` (a `Host` header's value).
    fn allows_host(&self, host: &str) -> bool {
        let name = host_name(host);
        is_loopback_name(name) || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// The refusal of `headers` and `method`, if any, and the listed origin to answer with CORS headers.
    fn check(&self, method: &Method, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refusal> {
        let origin = headers.get(header::ORIGIN);
        let listed = match origin.map(|o| o.to_str().unwrap_or("")) {
            Some(o) if self.allows_origin(o) || (self.open && is_loopback_origin(o)) => origin.cloned(),
            Some(o) => {
                return Err(Refusal::forbidden(format!(
                    "requests from the origin `{o}` are not allowed; list it in kubeauth.server.cors.origin"
                )));
            }
            None => None,
        };
        if !self.open {
            return Ok(listed);
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !self.allows_host(host) {
            return Err(Refusal::forbidden(format!(
                "the API is open (no kubeauth.server.auth) and answers loopback names only, not `{host}`; \
                 list the name in kubeauth.server.allowedHosts or configure API auth"
            )));
        }
        if listed.is_none()
            && let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
            && matches!(site, "cross-site" | "same-site")
        {
            return Err(Refusal::forbidden(format!(
                "a {site} browser request to an open API; list its origin in kubeauth.server.cors.origin"
            )));
        }
        // A page cannot send `Upgrade` (kubectl's exec and port-forward over SPDY are such POSTs).
        if listed.is_none()
            && method == Method::POST
            && is_simple_body(headers)
            && !headers.contains_key(header::UPGRADE)
        {
            return Err(Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "the API is open (no kubeauth.server.auth): a POST needs a Content-Type no web page can \
                          send without asking (application/json, …)"
                    .into(),
            });
        }
        Ok(listed)
    }
}

/// A `POST` body any web page can send without a CORS preflight.
fn is_simple_body(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return true };
    let essence = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(essence.as_str(), "" | "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data")
}

/// The name part of a `Host` value: `localhost`, `127.0.0.1`, `::1` (without the brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    host.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(host, |(name, _)| name)
}

/// An origin served from this machine (`http://localhost:3000`, `http://127.0.0.1:8080`): no DNS rebinding
/// makes a page's origin one of these.
fn is_loopback_origin(origin: &str) -> bool {
    let Some((_, authority)) = origin.split_once("://") else { return false };
    is_loopback_name(host_name(authority.trim_end_matches('/')))
}

fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a request is refused.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn forbidden(message: String) -> Self {
        Self { status: StatusCode::FORBIDDEN, message }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::info!(status = %self.status, reason = %self.message, "refused a browser request");
        crate::error::status_response(self.status, format!("kubeauth: {}", self.message))
    }
}

/// The middleware: the rules above, CORS preflights, and CORS headers on the answers to listed origins.
pub(crate) async fn guard(State(guard): State<Arc<BrowserGuard>>, request: Request, next: Next) -> Response {
    let listed = match guard.check(request.method(), request.headers()) {
        Ok(listed) => listed,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(origin) = listed else { return next.run(request).await };
    if request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let mut answer = StatusCode::NO_CONTENT.into_response();
        let headers = answer.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"));
        let requested = request.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested.filter(allowed_request_headers).unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS)),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        cors_headers(headers, origin);
        return answer;
    }
    let mut answer = next.run(request).await;
    cors_headers(answer.headers_mut(), origin);
    answer
}

/// Whether every header a preflight asks for is one the API takes.
fn allowed_request_headers(requested: &HeaderValue) -> bool {
    requested.to_str().is_ok_and(|list| {
        list.split(',').map(|h| h.trim().to_ascii_lowercase()).all(|h| {
            matches!(h.as_str(), "authorization" | "content-type" | "accept" | "")
                || h.starts_with("backstage-kubernetes-")
        })
    })
}

fn cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderName;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn an_open_api_answers_local_tools_and_no_web_page() {
        let open = BrowserGuard::new(true, &[], &[]);
        let local = headers(&[("host", "127.0.0.1:7007"), ("content-type", "application/json")]);
        assert!(open.check(&Method::POST, &local).is_ok());
        for host in ["localhost:7007", "[::1]:7007", "127.0.0.2", "LOCALHOST"] {
            assert!(open.check(&Method::GET, &headers(&[("host", host)])).is_ok(), "{host}");
        }
        for (method, refused) in [
            (Method::GET, headers(&[("host", "attacker.example:7007")])),
            (Method::GET, headers(&[("host", "127.0.0.1.attacker.example")])),
            (Method::GET, headers(&[("host", "127.0.0.1:7007"), ("origin", "https://evil.example")])),
            (Method::GET, headers(&[("host", "127.0.0.1:7007"), ("sec-fetch-site", "cross-site")])),
            (Method::POST, headers(&[("host", "127.0.0.1:7007")])),
            (Method::POST, headers(&[("host", "127.0.0.1:7007"), ("content-type", "text/plain;charset=UTF-8")])),
            (Method::GET, headers(&[("host", "127.0.0.1:7007"), ("origin", "http://localhost.evil.example")])),
        ] {
            assert!(open.check(&method, &refused).is_err(), "{method} {refused:?}");
        }
        // Pages served from this machine, and kubectl's exec (a POST upgrade with no body).
        let dev_frontend = headers(&[
            ("host", "127.0.0.1:7007"),
            ("origin", "http://localhost:3000"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(open.check(&Method::GET, &dev_frontend).unwrap().unwrap(), "http://localhost:3000");
        let exec = headers(&[("host", "127.0.0.1:7007"), ("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]);
        assert!(open.check(&Method::POST, &exec).is_ok());
    }

    #[test]
    fn listed_origins_get_cors_and_others_nothing() {
        let guard = BrowserGuard::new(false, &["http://localhost:3000/".to_owned()], &[]);
        let listed = guard.check(&Method::GET, &headers(&[("origin", "http://localhost:3000")])).unwrap();
        assert_eq!(listed.unwrap(), "http://localhost:3000");
        assert!(guard.check(&Method::GET, &headers(&[("origin", "http://localhost:3001")])).is_err());
        assert!(guard.check(&Method::GET, &headers(&[("origin", "null")])).is_err());
        // With API auth, the Host is the deployment's own business.
        assert!(guard.check(&Method::GET, &headers(&[("host", "kubeauth.internal:7007")])).is_ok());
        assert!(allowed_request_headers(&HeaderValue::from_static("authorization, backstage-kubernetes-cluster")));
        assert!(!allowed_request_headers(&HeaderValue::from_static("impersonate-user")));
    }
}
