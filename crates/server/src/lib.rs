//! A Backstage-compatible authenticating Kubernetes backend, as an axum [`axum::Router`] to embed in a
//! Rust service, or to run with `kubeauth serve`.
//!
//! Endpoints (prefix `/api/kubernetes`, as Backstage's kubernetes backend):
//! - `GET /clusters`: the located clusters, with their auth provider;
//! - `POST /services/{serviceId}`: an entity's objects (`{entity, auth}`) from every cluster it runs on, with a
//!   cluster's failure as that cluster's error entry;
//! - `POST /resources/workloads/query` (`{entityRef, auth}`) and `POST /resources/custom/query`
//!   (`{entityRef, auth, customResources}`): the same for an entity of the catalog (see
//!   [`KubeauthServer::with_catalog`]);
//! - `ANY /proxy/{path}`: the request, authenticated for the cluster named by the `Backstage-Kubernetes-Cluster`
//!   header (or the only cluster), forwarded to its API server; the signed-in user's tokens travel in
//!   `Backstage-Kubernetes-Authorization-<provider>[-<sub>]` headers;
//! - `GET /healthz`, `GET /readyz`.
//!
//! Only located clusters are reachable: no URL from a request ever becomes an upstream. Every credential goes
//! through the facade's credential layer.

pub mod access;
mod api_auth;
mod audit;
mod backstage_auth;
mod error;
mod guard;
mod headers;
mod limits;
mod listen;
mod metrics;
mod objects;
mod proxy;
pub mod request_info;
mod state;

use axum::Router;
use axum::routing::{any, get, post};

pub use access::Impersonated;
pub use api_auth::{ApiTokens, Caller};
pub use backstage_auth::{BackstageCaller, BackstageTokenSettings, BackstageTokens};
pub use error::ServerError;
pub use guard::BrowserGuard;
pub use headers::request_auth_from_headers;
pub use limits::Limits;
pub use objects::ServiceLocator;
pub use proxy::upstream_target;
pub use request_info::{ApiRequest, RequestInfo};
pub use state::{KubeauthServer, MIN_API_TOKEN_LENGTH};

/// The listen address of `kubeauth serve` when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7007";

impl KubeauthServer {
    /// The routes, ready to serve or to nest in a larger application.
    pub fn router(self) -> Router {
        self.routers().0
    }

    /// The routes, and those of a connection beyond the connection cap: the probes, and `503` for the rest.
    fn routers(self) -> (Router, Router) {
        use axum::middleware::from_fn_with_state;
        use std::sync::Arc;
        let auth = self.api_auth().clone();
        let guard = Arc::new(self.browser_guard());
        let gates = self.gates().clone();
        let audit = self.audit_log().cloned();
        let state = Arc::new(self);
        let probes = || Router::new().route("/healthz", get(|| async { "ok" })).route("/readyz", get(state::readyz));
        // Outermost first: the audit record, the error answers' request part, the browser guard (and CORS), the
        // bound on requests in flight, the API auth.
        let api = Router::new()
            .route("/api/kubernetes/clusters", get(state::clusters))
            .route("/api/kubernetes/services/{service_id}", post(objects::service_objects))
            .route("/api/kubernetes/resources/workloads/query", post(objects::workloads_query))
            .route("/api/kubernetes/resources/custom/query", post(objects::custom_query))
            .route("/api/kubernetes/proxy/{*path}", any(proxy::proxy))
            .route_layer(from_fn_with_state(auth, api_auth::authenticate))
            .layer(from_fn_with_state(gates, limits::in_flight))
            .layer(from_fn_with_state(guard, guard::guard))
            .layer(axum::middleware::from_fn(error::with_request))
            .layer(from_fn_with_state(audit, audit::record));
        let app = probes().merge(api).with_state(state.clone());
        let overflow = probes()
            .fallback(|| async { ServerError::Busy { what: "connections", retry_after_seconds: 1 } })
            .with_state(state);
        (app, overflow)
    }
}
