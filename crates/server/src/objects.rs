//! An entity's Kubernetes objects, from every cluster it runs on, fetched concurrently across clusters and
//! object types: `POST /api/kubernetes/services/{serviceId}` (the entity in the body),
//! `POST /api/kubernetes/resources/workloads/query` and `/resources/custom/query` (an `entityRef` resolved in
//! the catalog). A cluster that fails (no credential, TLS, 401, 403,
//! network) is an error entry of that cluster, never a failed request.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use futures::future::join_all;
use kubeauth::{ClusterDetails, RequestAuth};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::access::Scope;
use crate::audit::AuditRecord;
use crate::request_info::RequestInfo;
use crate::{Caller, KubeauthServer, ServerError};

/// Which clusters an entity's objects are looked for in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ServiceLocator {
    /// Every cluster (Backstage's `multiTenant`, the default).
    #[default]
    MultiTenant,
    /// The cluster the entity's `backstage.io/kubernetes-cluster` annotation names, or every cluster when it
    /// names none (`singleTenant`).
    SingleTenant,
    /// The clusters the entity depends on in the catalog: a `dependsOn` relation to
    /// `resource:<the entity's namespace>/<cluster name>` (`catalogRelation`).
    CatalogRelation,
}

impl ServiceLocator {
    /// The locator of `kubernetes.serviceLocatorMethod.type`.
    pub fn from_type(kind: &str) -> Option<Self> {
        match kind {
            "multiTenant" => Some(Self::MultiTenant),
            "singleTenant" => Some(Self::SingleTenant),
            "catalogRelation" => Some(Self::CatalogRelation),
            _ => None,
        }
    }
}

/// An object type Backstage fetches: its name in the answer (`objectType`), API group, plural, and the versions
/// to try, newest first (older servers serve older versions).
struct ObjectType {
    name: &'static str,
    group: &'static str,
    plural: &'static str,
    versions: &'static [&'static str],
}

/// Backstage's object types (`ALL_OBJECTS`); all but `secrets` are fetched by default (`DEFAULT_OBJECTS`).
const OBJECT_TYPES: &[ObjectType] = &[
    ObjectType { name: "pods", group: "", plural: "pods", versions: &["v1"] },
    ObjectType { name: "services", group: "", plural: "services", versions: &["v1"] },
    ObjectType { name: "configmaps", group: "", plural: "configmaps", versions: &["v1"] },
    ObjectType { name: "limitranges", group: "", plural: "limitranges", versions: &["v1"] },
    ObjectType { name: "resourcequotas", group: "", plural: "resourcequotas", versions: &["v1"] },
    ObjectType { name: "deployments", group: "apps", plural: "deployments", versions: &["v1"] },
    ObjectType { name: "replicasets", group: "apps", plural: "replicasets", versions: &["v1"] },
    ObjectType {
        name: "horizontalpodautoscalers",
        group: "autoscaling",
        plural: "horizontalpodautoscalers",
        versions: &["v2", "v2beta2"],
    },
    ObjectType { name: "jobs", group: "batch", plural: "jobs", versions: &["v1"] },
    ObjectType { name: "cronjobs", group: "batch", plural: "cronjobs", versions: &["v1", "v1beta1"] },
    ObjectType { name: "ingresses", group: "networking.k8s.io", plural: "ingresses", versions: &["v1"] },
    ObjectType { name: "statefulsets", group: "apps", plural: "statefulsets", versions: &["v1"] },
    ObjectType { name: "daemonsets", group: "apps", plural: "daemonsets", versions: &["v1"] },
    ObjectType { name: "secrets", group: "", plural: "secrets", versions: &["v1"] },
];

/// One object type as fetched: its name in the answer and the cluster-wide list paths to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectFetch {
    name: &'static str,
    paths: Vec<String>,
}

/// The object types of `kubernetes.objectTypes` (all but `secrets` when absent), at the versions of
/// `kubernetes.apiVersionOverrides`, as Backstage reads them: an unknown type or override is skipped with a
/// warning; an override that is not a version is an error naming its key.
pub(crate) fn object_fetches(
    kubernetes: &kubeauth::locator::KubernetesConfig,
    origin: Option<&std::path::Path>,
) -> Result<Vec<ObjectFetch>, ServerError> {
    let wanted = kubernetes.object_types.as_ref();
    for (i, name) in wanted.into_iter().flatten().enumerate() {
        if !OBJECT_TYPES.iter().any(|t| t.name == name) {
            tracing::warn!(key = %format!("kubernetes.objectTypes[{i}]"), "`{name}` is not an object type Backstage fetches; skipped");
        }
    }
    let overrides = kubernetes.api_version_overrides.clone().unwrap_or_default();
    for (name, version) in &overrides {
        let key = format!("kubernetes.apiVersionOverrides.{name}");
        if !OBJECT_TYPES.iter().any(|t| t.name == name) {
            tracing::warn!(%key, "`{name}` is not an object type Backstage fetches; its override is skipped");
        } else if !is_dns_label(version) {
            return Err(ServerError::setting(
                origin,
                &key,
                format!("`{version}` is not an API version (v1, v1beta1, …)"),
            ));
        }
    }
    Ok(OBJECT_TYPES
        .iter()
        .filter(|t| match wanted {
            Some(wanted) => wanted.iter().any(|w| w == t.name),
            None => t.name != "secrets",
        })
        .map(|t| {
            let path = |version: &str| resource_path(t.group, version, t.plural).unwrap_or_default();
            let paths = match overrides.get(t.name) {
                Some(version) => vec![path(version)],
                None => t.versions.iter().map(|v| path(v)).collect(),
            };
            ObjectFetch { name: t.name, paths }
        })
        .collect())
}

/// What the objects endpoints read of an entity (in a request body, or from the catalog).
#[derive(Deserialize, Default)]
struct Entity {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: EntityMetadata,
    #[serde(default)]
    relations: Vec<Relation>,
}

impl Entity {
    /// Its reference as Backstage's `stringifyEntityRef` writes it (kind and namespace in lowercase), when it
    /// has a kind and a name.
    fn entity_ref(&self) -> Option<String> {
        let kind = self.kind.as_deref().filter(|k| !k.is_empty())?;
        let name = self.metadata.name.as_deref().filter(|n| !n.is_empty())?;
        let namespace = self.metadata.namespace.as_deref().unwrap_or("default");
        Some(format!("{}:{}/{name}", kind.to_lowercase(), namespace.to_lowercase()))
    }
}

#[derive(Deserialize, Default)]
struct EntityMetadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    /// The annotations whose values are strings (as every annotation should be).
    #[serde(default, deserialize_with = "string_values")]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relation {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    target_ref: String,
}

fn string_values<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    let values = Option::<BTreeMap<String, serde_json::Value>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(values.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_owned()))).collect())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterObjects {
    cluster: ClusterSummary,
    resources: Vec<Resources>,
    pod_metrics: Vec<crate::metrics::PodUsage>,
    errors: Vec<FetchError>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterSummary {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_parameters: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Resources {
    #[serde(rename = "type")]
    kind: String,
    /// The objects as the API server sent them: passed on without being parsed into a tree.
    resources: Vec<Box<RawValue>>,
}

/// An API server's list: only its kind and items are read, each item kept as the API server wrote it.
#[derive(Deserialize)]
struct List {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    items: Vec<Box<RawValue>>,
}

/// The `type` of custom resources in an answer, whatever their plural (Backstage's `customresources`).
const CUSTOM_RESOURCES: &str = "customresources";

/// Secrets with every value of `data` and `stringData` replaced by `***`, as Backstage masks them.
fn masked(items: Vec<Box<RawValue>>) -> Vec<Box<RawValue>> {
    items
        .into_iter()
        .filter_map(|item| {
            let mut object = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(item.get()).ok()?;
            for field in ["data", "stringData"] {
                if let Some(serde_json::Value::Object(values)) = object.get_mut(field) {
                    values.values_mut().for_each(|v| *v = serde_json::Value::from("***"));
                }
            }
            serde_json::value::to_raw_value(&object).ok()
        })
        .collect()
}

/// The items of a custom resource list with the `kind` the API server leaves out of them (the list's kind
/// without `List`), as Backstage fills it in.
fn with_kind(list: List) -> Vec<Box<RawValue>> {
    let kind = list.kind.as_deref().map(|k| k.strip_suffix("List").unwrap_or(k).to_owned());
    let Some(kind) = kind else { return list.items };
    list.items
        .into_iter()
        .map(|item| {
            let filled = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(item.get()).ok().and_then(
                |mut object| {
                    object.insert("kind".into(), serde_json::Value::from(kind.as_str()));
                    serde_json::value::to_raw_value(&object).ok()
                },
            );
            filled.unwrap_or(item)
        })
        .collect()
}

/// The answer of the objects endpoints: Backstage's `ObjectsByEntityResponse`.
#[derive(Serialize)]
pub(crate) struct ObjectsResponse {
    items: Vec<ClusterObjects>,
}

/// One failure, in Backstage's `errorType` terms (a 403 is `UNKNOWN_ERROR` with its `statusCode`, as in Backstage).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FetchError {
    error_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

fn error_type(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED_ERROR",
        404 => "NOT_FOUND",
        500 => "SYSTEM_ERROR",
        _ => "UNKNOWN_ERROR",
    }
}

/// A request body as Backstage's `express.json()` reads it: JSON or a 400 `SyntaxError`; an empty body is `{}`.
fn json_body(body: &[u8]) -> Result<serde_json::Value, ServerError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| ServerError::InvalidJson(e.to_string()))
}

/// A field of a request body, read as kubeauth reads it: a wrong type is a 400 naming the field.
fn field<T: serde::de::DeserializeOwned + Default>(body: &serde_json::Value, key: &str) -> Result<T, ServerError> {
    match body.get(key) {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|e| ServerError::BadRequest(format!("{key}: {e}")))
        }
    }
}

pub(crate) async fn service_objects(
    State(server): State<Arc<KubeauthServer>>,
    Extension(caller): Extension<Caller>,
    Extension(record): Extension<AuditRecord>,
    Path(service_id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<ObjectsResponse>, ServerError> {
    let body = json_body(&body)?;
    let auth: RequestAuth = field(&body, "auth")?;
    let given = match body.get("entity") {
        Some(entity) if entity.is_object() => entity,
        _ => return Err(ServerError::BadRequest("entity is a required field".into())),
    };
    let given: Entity =
        serde_json::from_value(given.clone()).map_err(|e| ServerError::BadRequest(format!("entity: {e}")))?;
    let entity_ref = given.entity_ref();
    record.entity(entity_ref.clone(), Some(&service_id));
    // As Backstage: with a catalog, the entity is the catalog's (a caller cannot choose the annotations that
    // steer the fan-out); an entity the catalog lacks is refused.
    let entity = match server.catalog() {
        Some(_) => {
            let entity_ref = entity_ref.ok_or_else(|| ServerError::Forbidden("Invalid entity reference".into()))?;
            let reference =
                entity_ref.parse().map_err(|_| ServerError::Forbidden("Invalid entity reference".into()))?;
            catalog_entity(&server, &reference)
                .await?
                .ok_or_else(|| ServerError::Forbidden(format!("Entity not found, {entity_ref}")))?
        }
        None => given,
    };
    // As Backstage: the entity's name is the service id when it has no backstage.io/kubernetes-id.
    let name = entity.metadata.name.clone().filter(|n| !n.is_empty()).unwrap_or(service_id);
    let query = Query { server: &server, caller: &caller, record: &record, auth: &auth };
    let items = entity_objects(&query, &entity, &name, None).await?;
    Ok(Json(ObjectsResponse { items }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomResource {
    group: String,
    api_version: String,
    plural: String,
}

/// The `entityRef` of a query body, checked as Backstage checks it.
fn entity_ref_of(body: &serde_json::Value) -> Result<String, ServerError> {
    match body.get("entityRef") {
        Some(serde_json::Value::String(entity_ref)) if !entity_ref.is_empty() => Ok(entity_ref.clone()),
        // Backstage's `!rawEntityRef`: absent, null, false, 0 or "".
        None | Some(serde_json::Value::Null | serde_json::Value::Bool(false) | serde_json::Value::String(_)) => {
            Err(ServerError::BadRequest("entity is a required field".into()))
        }
        Some(serde_json::Value::Number(n)) if n.as_f64() == Some(0.0) => {
            Err(ServerError::BadRequest("entity is a required field".into()))
        }
        Some(_) => Err(ServerError::BadRequest("entity query must be a string".into())),
    }
}

/// The entity an `entityRef` names, from the catalog, and its name; one the catalog lacks is a 400, as in
/// Backstage.
async fn resolve(server: &KubeauthServer, entity_ref: &str) -> Result<(Entity, String), ServerError> {
    let reference: kubeauth::locator::catalog::EntityRef =
        entity_ref.parse().map_err(|e| ServerError::BadRequest(format!("Invalid entity ref, {e}")))?;
    let entity = catalog_entity(server, &reference)
        .await?
        .ok_or_else(|| ServerError::BadRequest(format!("Entity ref missing, {reference}")))?;
    Ok((entity, reference.name))
}

/// The catalog's entity of `reference`; `None` when the catalog has no such entity.
async fn catalog_entity(
    server: &KubeauthServer,
    reference: &kubeauth::locator::catalog::EntityRef,
) -> Result<Option<Entity>, ServerError> {
    let catalog = server.catalog().ok_or(ServerError::NoCatalog)?;
    let found = match catalog.entity(reference).await {
        Err(kubeauth::locator::catalog::CatalogError::NotFound(_)) => return Ok(None),
        other => other?,
    };
    serde_json::from_value(found)
        .map(Some)
        .map_err(|e| ServerError::BadRequest(format!("the catalog's entity {reference} is not an entity: {e}")))
}

pub(crate) async fn workloads_query(
    State(server): State<Arc<KubeauthServer>>,
    Extension(caller): Extension<Caller>,
    Extension(record): Extension<AuditRecord>,
    body: axum::body::Bytes,
) -> Result<Json<ObjectsResponse>, ServerError> {
    let body = json_body(&body)?;
    let entity_ref = entity_ref_of(&body)?;
    record.entity(Some(entity_ref.clone()), None);
    let auth: RequestAuth = field(&body, "auth")?;
    let (entity, name) = resolve(&server, &entity_ref).await?;
    let query = Query { server: &server, caller: &caller, record: &record, auth: &auth };
    let items = entity_objects(&query, &entity, &name, None).await?;
    Ok(Json(ObjectsResponse { items }))
}

pub(crate) async fn custom_query(
    State(server): State<Arc<KubeauthServer>>,
    Extension(caller): Extension<Caller>,
    Extension(record): Extension<AuditRecord>,
    body: axum::body::Bytes,
) -> Result<Json<ObjectsResponse>, ServerError> {
    let body = json_body(&body)?;
    let entity_ref = entity_ref_of(&body)?;
    record.entity(Some(entity_ref.clone()), None);
    let auth: RequestAuth = field(&body, "auth")?;
    // As Backstage: the entity first, then its customResources.
    let (entity, name) = resolve(&server, &entity_ref).await?;
    let resources = match body.get("customResources") {
        None | Some(serde_json::Value::Null) => {
            return Err(ServerError::BadRequest("customResources is a required field".into()));
        }
        Some(serde_json::Value::Array(list)) if list.is_empty() => {
            return Err(ServerError::BadRequest("at least 1 customResource is required".into()));
        }
        Some(list @ serde_json::Value::Array(_)) => serde_json::from_value::<Vec<CustomResource>>(list.clone())
            .map_err(|e| ServerError::BadRequest(format!("customResources: {e}")))?,
        Some(_) => return Err(ServerError::BadRequest("customResources must be an array".into())),
    };
    let custom = custom_fetches(&resources, server.gates().limits().max_custom_resources)?;
    let query = Query { server: &server, caller: &caller, record: &record, auth: &auth };
    let items = entity_objects(&query, &entity, &name, Some(&custom)).await?;
    Ok(Json(ObjectsResponse { items }))
}

/// The list path of each distinct entry of `customResources`, each part checked as a Kubernetes name; at most
/// `max` of them.
fn custom_fetches(resources: &[CustomResource], max: usize) -> Result<Vec<String>, ServerError> {
    let mut fetches: Vec<String> = Vec::new();
    for (i, c) in resources.iter().enumerate() {
        let path = resource_path(&c.group, &c.api_version, &c.plural)
            .map_err(|message| ServerError::BadRequest(format!("customResources[{i}].{message}")))?;
        if !fetches.contains(&path) {
            fetches.push(path);
        }
    }
    if fetches.len() > max {
        return Err(ServerError::BadRequest(format!(
            "customResources: {} distinct entries, at most {max} (kubeauth.server.limits.maxCustomResources)",
            fetches.len()
        )));
    }
    Ok(fetches)
}

/// The cluster-wide list path of a resource type, each part checked: `group` empty (the core group) or a DNS
/// subdomain, `api_version` and `plural` DNS labels. The error names the field.
fn resource_path(group: &str, api_version: &str, plural: &str) -> Result<String, String> {
    if !group.is_empty() && !is_dns_subdomain(group) {
        return Err(format!("group: `{group}` is not an API group (a DNS subdomain, or empty for the core group)"));
    }
    if !is_dns_label(api_version) {
        return Err(format!("apiVersion: `{api_version}` is not an API version (v1, v1beta1, …)"));
    }
    if !is_dns_label(plural) {
        return Err(format!("plural: `{plural}` is not a resource name (lowercase letters, digits and `-`)"));
    }
    Ok(if group.is_empty() {
        format!("/api/{api_version}/{plural}")
    } else {
        format!("/apis/{group}/{api_version}/{plural}")
    })
}

/// An RFC 1123 label: lowercase letters, digits and `-` inside, at most 63 characters (namespaces, versions,
/// resource names).
fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// An RFC 1123 subdomain: labels joined by `.`, at most 253 characters (API groups).
fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// Who asks for an entity's objects, and with which of the user's tokens.
#[derive(Clone, Copy)]
struct Query<'a> {
    server: &'a KubeauthServer,
    caller: &'a Caller,
    record: &'a AuditRecord,
    auth: &'a RequestAuth,
}

/// The objects of `entity` (its `backstage.io/kubernetes-*` annotations decide) from each of its clusters: the
/// standard object types and each cluster's custom resources, or only the `custom` list paths when given.
async fn entity_objects(
    query: &Query<'_>,
    entity: &Entity,
    service_id: &str,
    custom: Option<&[String]>,
) -> Result<Vec<ClusterObjects>, ServerError> {
    let server = query.server;
    let annotation = |key: &str| entity.metadata.annotations.get(key).map(String::as_str);
    let label_selector = match annotation("backstage.io/kubernetes-label-selector") {
        Some(selector) => selector.to_owned(),
        None => {
            format!("backstage.io/kubernetes-id={}", annotation("backstage.io/kubernetes-id").unwrap_or(service_id))
        }
    };
    let namespace = annotation("backstage.io/kubernetes-namespace");
    if let Some(namespace) = namespace.filter(|ns| !is_dns_label(ns)) {
        return Err(ServerError::BadRequest(format!(
            "the entity's annotation backstage.io/kubernetes-namespace: `{namespace}` is not a namespace name"
        )));
    }
    // A bounded number of queries fan out at once; the others wait their turn, or are refused promptly.
    let _turn = server.gates().query_turn().await?;
    let located = server.clusters().await?;
    // The entity's clusters, as Backstage's service locators find them.
    let named = annotation("backstage.io/kubernetes-cluster").filter(|name| !name.is_empty());
    let depends_on = |cluster: &str| {
        let target = format!("resource:{}/{cluster}", entity.metadata.namespace.as_deref().unwrap_or("default"));
        entity.relations.iter().any(|r| r.kind == "dependsOn" && r.target_ref == target)
    };
    let clusters = located.iter().filter(|c| match server.service_locator() {
        ServiceLocator::MultiTenant => true,
        ServiceLocator::SingleTenant => named.is_none_or(|name| name == c.name),
        ServiceLocator::CatalogRelation => depends_on(&c.name),
    });
    let mut items =
        join_all(clusters.map(|cluster| objects_of(query, cluster, &label_selector, namespace, custom))).await;
    // As Backstage: a cluster with neither an object nor an error is left out.
    items.retain(|c| !c.errors.is_empty() || c.resources.iter().any(|r| !r.resources.is_empty()));
    Ok(items)
}

async fn objects_of(
    query: &Query<'_>,
    cluster: &ClusterDetails,
    label_selector: &str,
    namespace: Option<&str>,
    only_custom: Option<&[String]>,
) -> ClusterObjects {
    let mut objects = ClusterObjects {
        cluster: ClusterSummary {
            name: cluster.name.clone(),
            title: cluster.title.clone(),
            dashboard_url: cluster.dashboard_url.clone(),
            dashboard_app: cluster.dashboard_app.clone(),
            dashboard_parameters: cluster.dashboard_parameters.clone(),
        },
        resources: Vec::new(),
        pod_metrics: Vec::new(),
        errors: Vec::new(),
    };
    let Query { server, caller, record, auth } = *query;
    let client = match server.client(cluster, auth, caller, record).await {
        Ok(client) => client,
        Err(error) => {
            let missing_token = matches!(
                &error,
                ServerError::Facade(kubeauth::Error::Auth(kubeauth::core::Error::MissingUserToken { .. }))
            );
            objects.errors.push(FetchError {
                error_type: if missing_token { "UNAUTHORIZED_ERROR" } else { "FETCH_ERROR" },
                status_code: missing_token.then_some(401),
                resource_path: None,
                message: Some(kubeauth::report(&error)),
            });
            return objects;
        }
    };
    let list = kube::api::ListParams::default().labels(label_selector);
    let mut fetches: Vec<(&str, Vec<String>)> = Vec::new();
    match only_custom {
        Some(custom) => {
            fetches.extend(custom.iter().map(|path| (CUSTOM_RESOURCES, vec![scoped(path, namespace)])));
        }
        None => {
            fetches.extend(
                server
                    .object_fetches()
                    .iter()
                    .map(|t| (t.name, t.paths.iter().map(|p| scoped(p, namespace)).collect())),
            );
            // The cluster's own custom resources, else those of kubernetes.customResources (as Backstage).
            let custom = if cluster.custom_resources.is_empty() {
                server.default_custom_resources()
            } else {
                &cluster.custom_resources
            };
            for c in custom {
                match resource_path(&c.group, &c.api_version, &c.plural) {
                    Ok(path) => fetches.push((CUSTOM_RESOURCES, vec![scoped(&path, namespace)])),
                    Err(message) => objects.errors.push(FetchError {
                        error_type: "BAD_REQUEST",
                        status_code: None,
                        resource_path: None,
                        message: Some(format!("the cluster's customResources: {message}")),
                    }),
                }
            }
        }
    }
    // kubeauth's rules: a type the caller may not list is not asked for; one it may list in some namespaces only
    // is kept to those.
    let permissions = server.permissions();
    let scope_of =
        |path: &str| permissions.list_scope(caller, &cluster.name, &RequestInfo::of_path(&http::Method::GET, path, ""));
    let fetches: Vec<(&str, Vec<String>, Scope)> = fetches
        .into_iter()
        .filter_map(|(name, paths)| {
            let scope = paths.first().map_or(Scope::Nothing, |p| scope_of(p));
            (scope != Scope::Nothing).then_some((name, paths, scope))
        })
        .collect();
    // The cluster's list requests, of every query, take turns.
    let turns = server.gates().cluster(&cluster.name);
    let (client_ref, turns_ref, list_ref) = (&client, &turns, &list);
    let results = join_all(fetches.iter().map(|(name, paths, scope)| async move {
        let _turn = turns_ref.acquire().await;
        fetch(client_ref, name, paths, list_ref).await.map(|mut resources| {
            if let Scope::Namespaces(allowed) = scope {
                resources.resources.retain(|item| namespace_of(item).is_some_and(|ns| allowed.contains(&ns)));
            }
            resources
        })
    }))
    .await;
    for result in results {
        match result {
            Ok(resources) => objects.resources.push(resources),
            Err(error) => objects.errors.push(error),
        }
    }
    // Pod metrics need the metrics of every namespace (they are listed per namespace of the pods found).
    let metrics_allowed = scope_of("/apis/metrics.k8s.io/v1beta1/pods") == Scope::All;
    if !cluster.skip_metrics_lookup && metrics_allowed {
        let (usage, errors) = pod_metrics(&client, &turns, &objects.resources, &list).await;
        objects.pod_metrics = usage;
        objects.errors.extend(errors);
    }
    objects
}

/// The namespace of an object of a list.
fn namespace_of(item: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Item {
        metadata: Metadata,
    }
    #[derive(Deserialize)]
    struct Metadata {
        namespace: Option<String>,
    }
    serde_json::from_str::<Item>(item.get()).ok()?.metadata.namespace
}

/// `/api/v1/pods` → `/api/v1/namespaces/{ns}/pods` when the entity names a namespace.
fn scoped(path: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => match path.rsplit_once('/') {
            Some((base, plural)) => format!("{base}/namespaces/{ns}/{plural}"),
            None => path.to_owned(),
        },
        None => path.to_owned(),
    }
}

async fn fetch(
    client: &kube::Client,
    name: &str,
    paths: &[String],
    list: &kube::api::ListParams,
) -> Result<Resources, FetchError> {
    let mut last = None;
    for path in paths {
        match list_at::<List>(client, path, list).await {
            Ok(mut list) => {
                // Secrets leave with their data masked, whether asked for as an object type or as a custom
                // resource (Backstage decides from the request and from the kind the API server reports).
                let core_secrets = path.starts_with("/api/v1/") && path.ends_with("/secrets");
                if name == "secrets" || core_secrets || list.kind.as_deref() == Some("SecretList") {
                    list.items = masked(list.items);
                }
                let resources = if name == CUSTOM_RESOURCES { with_kind(list) } else { list.items };
                return Ok(Resources { kind: name.to_owned(), resources });
            }
            // An older API version may be served where the newer is not.
            Err(error) if error.status_code == Some(404) => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or(FetchError {
        error_type: "NOT_FOUND",
        status_code: Some(404),
        resource_path: None,
        message: None,
    }))
}

/// The list at `path` (cluster-wide or in a namespace) with `list`'s label selector, or the error entry of it.
async fn list_at<T: serde::de::DeserializeOwned>(
    client: &kube::Client,
    path: &str,
    list: &kube::api::ListParams,
) -> Result<T, FetchError> {
    let failed = |error_type, status_code, message| FetchError {
        error_type,
        status_code,
        resource_path: Some(path.to_owned()),
        message,
    };
    // kube's request builder encodes the label selector.
    let request =
        kube::core::Request::new(path).list(list).map_err(|e| failed("FETCH_ERROR", None, Some(e.to_string())))?;
    client.request::<T>(request).await.map_err(|e| match e {
        // Backstage's error entry; for a 403, the API server's own words kept in `message` (who was refused
        // what: with impersonation, the impersonated user, or a server identity that may not impersonate).
        kube::Error::Api(status) => {
            let message = (status.code == 403).then_some(status.message);
            failed(error_type(status.code), Some(status.code), message)
        }
        other => failed("FETCH_ERROR", None, Some(kubeauth::report(&other))),
    })
}

/// The usage of the entity's pods in each namespace its pods were found in, as Backstage's backend adds it
/// (unless the cluster has `skipMetricsLookup`): the pods and their `metrics.k8s.io` PodMetrics, listed again
/// with the entity's label selector. A namespace whose metrics (or pods) cannot be listed is an error entry,
/// as in Backstage: a cluster without a metrics API gets a `NOT_FOUND` for it.
async fn pod_metrics(
    client: &kube::Client,
    turns: &tokio::sync::Semaphore,
    resources: &[Resources],
    list: &kube::api::ListParams,
) -> (Vec<crate::metrics::PodUsage>, Vec<FetchError>) {
    #[derive(Deserialize)]
    struct Item {
        #[serde(default, rename = "apiVersion")]
        api_version: Option<String>,
        #[serde(default)]
        kind: Option<String>,
    }
    #[derive(Deserialize)]
    struct Items {
        #[serde(default)]
        items: Vec<serde_json::Value>,
    }
    let item = |raw: &RawValue| serde_json::from_str::<Item>(raw.get()).ok();
    // Backstage's isPodFetchResponse: pods, or custom resources whose first item is a v1 Pod.
    let pods = resources.iter().filter(|r| {
        r.kind == "pods"
            || (r.kind == CUSTOM_RESOURCES
                && r.resources
                    .first()
                    .and_then(|i| item(i))
                    .is_some_and(|i| i.api_version.as_deref() == Some("v1") && i.kind.as_deref() == Some("Pod")))
    });
    let mut namespaces: Vec<String> = pods.flat_map(|r| r.resources.iter().filter_map(|i| namespace_of(i))).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let per_namespace = join_all(namespaces.iter().map(|ns| async move {
        let _turn = turns.acquire().await;
        let metrics_path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods");
        let pods_path = format!("/api/v1/namespaces/{ns}/pods");
        let (metrics, pods) =
            tokio::join!(list_at::<Items>(client, &metrics_path, list), list_at::<Items>(client, &pods_path, list));
        match (metrics, pods) {
            (Ok(metrics), Ok(pods)) => Ok(crate::metrics::top_pods(pods.items, &metrics.items)),
            (Ok(_), Err(error)) | (Err(error), _) => Err(error),
        }
    }))
    .await;
    let (mut usage, mut errors) = (Vec::new(), Vec::new());
    for result in per_namespace {
        match result {
            Ok(pods) => usage.extend(pods),
            Err(error) => errors.push(error),
        }
    }
    (usage, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(group: &str, api_version: &str, plural: &str) -> CustomResource {
        CustomResource { group: group.into(), api_version: api_version.into(), plural: plural.into() }
    }

    #[test]
    fn custom_resource_items_get_the_lists_kind() {
        let list: List = serde_json::from_str(
            r#"{"kind":"RolloutList","apiVersion":"argoproj.io/v1alpha1","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"},"kind":"Other"}]}"#,
        )
        .unwrap();
        let items: Vec<serde_json::Value> =
            with_kind(list).iter().map(|i| serde_json::from_str(i.get()).unwrap()).collect();
        assert_eq!(items[0], serde_json::json!({"metadata": {"name": "a"}, "kind": "Rollout"}));
        assert_eq!(items[1]["kind"], "Rollout");
    }

    #[test]
    fn custom_resources_become_checked_paths() {
        let fetches = custom_fetches(
            &[
                entry("argoproj.io", "v1alpha1", "rollouts"),
                entry("", "v1", "configmaps"),
                entry("argoproj.io", "v1alpha1", "rollouts"),
            ],
            32,
        )
        .unwrap();
        assert_eq!(fetches, ["/apis/argoproj.io/v1alpha1/rollouts", "/api/v1/configmaps"]);
    }

    #[test]
    fn spliced_paths_and_floods_are_refused() {
        for (bad, field) in [
            (entry("apps", "v1", "secrets?x="), "customResources[0].plural"),
            (entry("apps", "v1/../../api/v1", "secrets"), "customResources[0].apiVersion"),
            (entry("a/b", "v1", "pods"), "customResources[0].group"),
            (entry("apps", "v1", "Pods"), "customResources[0].plural"),
        ] {
            let err = custom_fetches(&[bad], 32).unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
        let many: Vec<_> = (0..40).map(|i| entry("example.com", "v1", &format!("kind{i}"))).collect();
        let err = custom_fetches(&many, 32).unwrap_err().to_string();
        assert!(err.contains("40 distinct entries, at most 32"), "{err}");
        // Repeats of one entry count once.
        let repeated: Vec<_> = (0..3000).map(|_| entry("example.com", "v1", "widgets")).collect();
        assert_eq!(custom_fetches(&repeated, 32).unwrap().len(), 1);
    }
}
