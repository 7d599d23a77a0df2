//! A fake of the Backstage catalog's HTTP API, for the `catalog` locator and the entity lookups of the server.
//!
//! No real Backstage catalog backend runs in this test environment, so this serves the two endpoints kubeauth
//! reads, in their real wire format: `GET /api/catalog/entities?filter=…` (a JSON array of entities; the
//! `kind=…,spec.type=…` filter is applied) and `GET /api/catalog/entities/by-name/{kind}/{namespace}/{name}`
//! (404 when absent). Both require `Authorization: Bearer <token>` (401 otherwise), as a Backstage backend with a
//! static external-access token does; [`FakeCatalog::open`] answers anyone (the catalog of Backstage's own
//! backend in the tests, which calls it with tokens of its own).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::Value;

use crate::server::{ThreadServer, json};

/// The fake catalog; stops when dropped.
pub struct FakeCatalog {
    url: String,
    token: String,
    entities: Arc<Mutex<Vec<Value>>>,
    _server: ThreadServer,
}

impl std::fmt::Debug for FakeCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCatalog").field("url", &self.url).finish_non_exhaustive()
    }
}

impl FakeCatalog {
    /// Starts the fake with no entities; callers must send `token`.
    pub fn start(token: &str) -> Self {
        Self::serve(token, true)
    }

    /// Starts the fake with no entities, answering every caller (those that send [`token`](Self::token) too).
    pub fn open(token: &str) -> Self {
        Self::serve(token, false)
    }

    fn serve(token: &str, checked: bool) -> Self {
        let entities: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (served, expected) = (entities.clone(), checked.then(|| format!("Bearer {token}")));
        let server = ThreadServer::start(None, move |req| {
            let (entities, expected) = (served.clone(), expected.clone());
            async move { handle(&entities, &expected, &req) }
        });
        Self { url: format!("http://{}", server.addr()), token: token.to_owned(), entities, _server: server }
    }

    /// The backend's base URL (`kubeauth.catalog.baseUrl`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token it accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Adds an entity.
    pub fn add(&self, entity: Value) {
        self.entities.lock().expect("lock").push(entity);
    }

    /// A `Resource` entity of type `kubernetes-cluster` with these annotations.
    pub fn cluster_entity(name: &str, annotations: &[(&str, &str)]) -> Value {
        let annotations: serde_json::Map<String, Value> =
            annotations.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
        serde_json::json!({
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "Resource",
            "metadata": {"name": name, "namespace": "default", "title": format!("{name} (catalog)"), "annotations": annotations},
            "spec": {"type": "kubernetes-cluster", "owner": "platform"}
        })
    }
}

fn field<'a>(entity: &'a Value, path: &str) -> Option<&'a str> {
    path.split('.').try_fold(entity, |v, k| v.get(k)).and_then(Value::as_str)
}

fn handle(
    entities: &Mutex<Vec<Value>>,
    expected: &Option<String>,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let sent = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let authorized = expected.as_deref().is_none_or(|expected| sent == Some(expected));
    if !authorized {
        return json(
            401,
            &serde_json::json!({"error": {"name": "AuthenticationError", "message": "Missing credentials"}}),
        );
    }
    let entities = entities.lock().expect("lock").clone();
    let path = req.uri().path();
    if path == "/api/catalog/entities" {
        let query = req.uri().query().unwrap_or_default();
        let filter = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("filter="))
            .map(|f| f.replace("%3D", "=").replace("%2C", ",").replace('+', " "))
            .unwrap_or_default();
        let conditions: Vec<(&str, &str)> = filter.split(',').filter_map(|c| c.split_once('=')).collect();
        let matching: Vec<Value> = entities
            .into_iter()
            .filter(|e| conditions.iter().all(|(k, v)| field(e, k).is_some_and(|f| f.eq_ignore_ascii_case(v))))
            .collect();
        return json(200, &Value::Array(matching));
    }
    if let Some(rest) = path.strip_prefix("/api/catalog/entities/by-name/") {
        let parts: Vec<&str> = rest.split('/').collect();
        if let [kind, namespace, name] = parts.as_slice() {
            let found = entities.into_iter().find(|e| {
                field(e, "kind").is_some_and(|k| k.eq_ignore_ascii_case(kind))
                    && field(e, "metadata.namespace").unwrap_or("default") == *namespace
                    && field(e, "metadata.name") == Some(name)
            });
            return match found {
                Some(entity) => json(200, &entity),
                None => json(404, &serde_json::json!({"error": {"name": "NotFoundError"}})),
            };
        }
    }
    json(404, &serde_json::json!({"error": {"name": "NotFoundError"}}))
}
