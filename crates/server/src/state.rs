use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use kubeauth::{AppConfig, ClusterDetails, Kubeauth, RequestAuth, ResolveContext};
use serde::Serialize;

use crate::ServerError;

/// The shortest API token `kubeauth.server.auth.bearerTokens` takes.
pub const MIN_API_TOKEN_LENGTH: usize = 16;

/// The server: the toolkit (providers, locators, connections), and the API's own settings.
pub struct KubeauthServer {
    kubeauth: Kubeauth,
    service_locator: crate::ServiceLocator,
    auth: Arc<crate::api_auth::ApiAuth>,
    catalog: Option<kubeauth::locator::catalog::CatalogClient>,
    cors_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    gates: Arc<crate::limits::Gates>,
    object_fetches: Vec<crate::objects::ObjectFetch>,
    default_custom_resources: Vec<kubeauth::core::CustomResourceMatcher>,
    impersonation: Option<crate::access::Impersonation>,
    permissions: crate::access::Permissions,
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl std::fmt::Debug for KubeauthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeauthServer")
            .field("kubeauth", &self.kubeauth)
            .field("service_locator", &self.service_locator)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl KubeauthServer {
    /// A server over `kubeauth`'s clusters: every entity in every cluster (`multiTenant`), the API open (see
    /// [`serve`](Self::serve) for where that is allowed), no catalog.
    pub fn new(kubeauth: Kubeauth) -> Self {
        Self {
            kubeauth,
            service_locator: crate::ServiceLocator::default(),
            auth: Arc::default(),
            catalog: None,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            gates: Arc::new(crate::limits::Gates::new(crate::Limits::default())),
            object_fetches: crate::objects::object_fetches(&Default::default(), None).unwrap_or_default(),
            default_custom_resources: Vec::new(),
            impersonation: None,
            permissions: crate::access::Permissions::default(),
            audit: None,
        }
    }

    /// The server a config describes, as `kubeauth serve` runs it: the toolkit of
    /// [`Kubeauth::from_config`], then [`configure`](Self::configure).
    pub fn from_config(config: &AppConfig, env: &ResolveContext) -> Result<Self, ServerError> {
        Self::configure(Kubeauth::from_config(config, env)?, config, env)
    }

    /// A server over a toolkit of your own (with custom providers), with the settings of `config`:
    /// `kubernetes.serviceLocatorMethod`, `objectTypes`, `apiVersionOverrides`, `customResources`,
    /// `kubeauth.server.auth.bearerTokens` (each at least
    /// [`MIN_API_TOKEN_LENGTH`] characters), `kubeauth.server.cors`, `allowedHosts` and `limits`, and
    /// `kubeauth.catalog`. Every error names its key.
    pub fn configure(kubeauth: Kubeauth, config: &AppConfig, env: &ResolveContext) -> Result<Self, ServerError> {
        // The server's own settings fail closed: a key it does not know (a misspelt `permissions`) would
        // otherwise start it without what the key meant to set.
        if let Some(unknown) = config.unknown_keys.iter().find(|u| u.path.starts_with("kubeauth.server.")) {
            let hint = unknown.nearest.as_ref().map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_default();
            return Err(ServerError::setting(
                config.origin.as_deref(),
                &unknown.path,
                format!("not a key of kubeauth's server settings{hint}; the server does not start with it"),
            ));
        }
        let mut server = Self::new(kubeauth);
        let settings = &config.kubeauth.server;
        server.cors_origins = settings.cors.as_ref().map(|c| c.origin.clone()).unwrap_or_default();
        for (i, origin) in server.cors_origins.iter().enumerate() {
            let well_formed = (origin.starts_with("http://") || origin.starts_with("https://"))
                && origin.trim_end_matches('/').splitn(4, '/').nth(3).is_none_or(str::is_empty);
            if !well_formed {
                return Err(ServerError::setting(
                    config.origin.as_deref(),
                    &format!("kubeauth.server.cors.origin[{i}]"),
                    format!("`{origin}` is not an origin (scheme://host[:port])"),
                ));
            }
        }
        server.allowed_hosts = settings.allowed_hosts.clone().unwrap_or_default();
        server = server.with_limits(crate::Limits::from_config(settings.limits.as_ref(), config.origin.as_deref())?);
        if let Some(method) = &config.kubernetes.service_locator_method {
            server.service_locator = crate::ServiceLocator::from_type(&method.kind).ok_or_else(|| {
                ServerError::setting(
                    config.origin.as_deref(),
                    "kubernetes.serviceLocatorMethod.type",
                    format!("`{}` is not multiTenant, singleTenant or catalogRelation", method.kind),
                )
            })?;
        }
        server.object_fetches = crate::objects::object_fetches(&config.kubernetes, config.origin.as_deref())?;
        let ctx = config.resolve_context(env);
        for (i, custom) in config.kubernetes.custom_resources.iter().flatten().enumerate() {
            let matcher = custom.resolve(&ctx).map_err(|(field, message)| {
                ServerError::setting(
                    config.origin.as_deref(),
                    &format!("kubernetes.customResources[{i}].{field}"),
                    message,
                )
            })?;
            server.default_custom_resources.push(matcher);
        }
        let settings = &config.kubeauth.server;
        server.impersonation = settings.impersonation.as_ref().map(crate::access::Impersonation::from_config);
        server.permissions = crate::access::Permissions::from_config(settings.permissions.as_deref());
        let tokens = api_tokens(config, env)?;
        let backstage = backstage_tokens(config, env)?;
        server.auth = Arc::new(crate::api_auth::ApiAuth { tokens, backstage });
        // Entity references of the workloads and custom-resource queries are resolved in this catalog.
        if config.kubeauth.catalog.is_some() {
            server.catalog = Some(kubeauth::locator::catalog::client_from_config(config, env)?);
        }
        // Last, so that no file is opened for a server that does not start.
        if let Some(audit) = &settings.audit {
            server.audit = Some(Arc::new(crate::audit::AuditLog::open(audit, config.origin.as_deref())?));
        }
        Ok(server)
    }

    /// Which clusters an entity's objects are looked for in (`kubernetes.serviceLocatorMethod`).
    pub fn with_service_locator(mut self, service_locator: crate::ServiceLocator) -> Self {
        self.service_locator = service_locator;
        self
    }

    /// Callers of the API must present one of these tokens (`Authorization: Bearer …`); `/healthz` and
    /// `/readyz` stay open. No tokens: the API is open (only on a loopback listener, see [`serve`](Self::serve)).
    pub fn with_api_tokens(mut self, tokens: crate::ApiTokens) -> Self {
        self.auth = Arc::new(crate::api_auth::ApiAuth { tokens, backstage: self.take_backstage() });
        self
    }

    /// Callers may present a token of this Backstage backend (a signed-in user's, or an accepted plugin's),
    /// besides the API tokens.
    pub fn with_backstage_tokens(mut self, backstage: crate::BackstageTokens) -> Self {
        let tokens = self.auth.tokens.clone();
        self.auth = Arc::new(crate::api_auth::ApiAuth { tokens, backstage: Some(backstage) });
        self
    }

    fn take_backstage(&mut self) -> Option<crate::BackstageTokens> {
        Arc::get_mut(&mut self.auth).and_then(|auth| auth.backstage.take())
    }

    /// Browser apps allowed to call the API from these origins (`scheme://host[:port]`): they get CORS
    /// answers; a request from any other origin is refused.
    pub fn with_cors_origins(mut self, origins: impl IntoIterator<Item = String>) -> Self {
        self.cors_origins = origins.into_iter().collect();
        self
    }

    /// The bounds on what callers may take.
    pub fn with_limits(mut self, limits: crate::Limits) -> Self {
        self.gates = Arc::new(crate::limits::Gates::new(limits));
        self
    }

    /// The Backstage catalog that entity references (`entityRef` of the workloads and custom-resource queries)
    /// are resolved in.
    pub fn with_catalog(mut self, catalog: kubeauth::locator::catalog::CatalogClient) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// The toolkit.
    pub fn kubeauth(&self) -> &Kubeauth {
        &self.kubeauth
    }

    pub(crate) fn catalog(&self) -> Option<&kubeauth::locator::catalog::CatalogClient> {
        self.catalog.as_ref()
    }

    pub(crate) fn api_auth(&self) -> &Arc<crate::api_auth::ApiAuth> {
        &self.auth
    }

    pub(crate) fn service_locator(&self) -> crate::ServiceLocator {
        self.service_locator
    }

    pub(crate) fn gates(&self) -> &Arc<crate::limits::Gates> {
        &self.gates
    }

    /// The object types an entity's objects are fetched as (`kubernetes.objectTypes`, `apiVersionOverrides`).
    pub(crate) fn object_fetches(&self) -> &[crate::objects::ObjectFetch] {
        &self.object_fetches
    }

    /// `kubernetes.customResources`: for the clusters without their own.
    pub(crate) fn default_custom_resources(&self) -> &[kubeauth::core::CustomResourceMatcher] {
        &self.default_custom_resources
    }

    /// The browser guard: the loopback rules when the API is open.
    pub(crate) fn browser_guard(&self) -> crate::guard::BrowserGuard {
        crate::guard::BrowserGuard::new(self.auth.is_open(), &self.cors_origins, &self.allowed_hosts)
    }

    /// Locates the clusters and validates each against the registry: what `kubeauth serve` runs before it
    /// listens, so that a wrong configuration starts nothing.
    pub async fn check(&self) -> Result<kubeauth::Located, ServerError> {
        let clusters = self.kubeauth.clusters().await?;
        for cluster in clusters.iter() {
            self.kubeauth.registry().validate(cluster).map_err(kubeauth::Error::from)?;
        }
        Ok(clusters)
    }

    /// Serves the API on `listener` until `shutdown` completes, within `kubeauth.server.limits` (connections,
    /// the time to send a request's headers, idle connections). An open API (no API auth) is served only on a
    /// loopback address: the proxy authenticates with the server's own credentials, so beyond loopback its
    /// callers must authenticate too.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let address = listener.local_addr().map_err(|e| ServerError::Listen(e.to_string()))?;
        self.check_listen_address(address)?;
        let limits = self.gates.limits().clone();
        let (app, overflow) = self.routers();
        crate::listen::serve(listener, app, overflow, &limits, shutdown).await
    }

    /// The rule [`serve`](Self::serve) applies: an open API only on a loopback address.
    pub fn check_listen_address(&self, address: SocketAddr) -> Result<(), ServerError> {
        if !address.ip().is_loopback() && self.auth.is_open() {
            return Err(ServerError::setting(
                None,
                "kubeauth.server.auth.bearerTokens",
                format!(
                    "required to listen on {address}, a non-loopback address: the proxy authenticates with the \
                     server's own credentials, so its callers must authenticate too"
                ),
            ));
        }
        Ok(())
    }

    /// The located clusters; the connector forgets the ones no longer located.
    pub(crate) async fn clusters(&self) -> Result<kubeauth::Located, ServerError> {
        Ok(self.kubeauth.clusters().await?)
    }

    /// The cluster called `name`, or the only one when no name is given.
    pub(crate) async fn cluster(&self, name: Option<&str>) -> Result<LocatedCluster, ServerError> {
        let list = self.clusters().await?;
        let index = match (name, list.len()) {
            (Some(name), _) => {
                list.iter().position(|c| c.name == name).ok_or_else(|| ServerError::ClusterNotFound(name.to_owned()))?
            }
            (None, 1) => 0,
            (None, count) => return Err(ServerError::ClusterHeaderRequired(count)),
        };
        Ok(LocatedCluster { list, index })
    }

    /// Who requests to `cluster` for `caller` impersonate, when `kubeauth.server.impersonation` applies to it.
    pub(crate) fn impersonated(
        &self,
        cluster: &ClusterDetails,
        caller: &crate::Caller,
    ) -> Result<Option<crate::Impersonated>, ServerError> {
        match &self.impersonation {
            Some(impersonation) => impersonation.identity_for(self.kubeauth.registry(), cluster, caller),
            None => Ok(None),
        }
    }

    /// kubeauth's own audit log (`kubeauth.server.audit`), if it is kept.
    pub(crate) fn audit_log(&self) -> Option<&Arc<crate::audit::AuditLog>> {
        self.audit.as_ref()
    }

    /// `kubeauth.server.permissions`.
    pub(crate) fn permissions(&self) -> &crate::access::Permissions {
        &self.permissions
    }

    /// A kube client for `cluster` made for `caller`, over the connector's connections of the cluster: it
    /// impersonates the caller where `kubeauth.server.impersonation` says so, and its requests carry the
    /// caller's request's `Audit-ID`.
    pub(crate) async fn client(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
        caller: &crate::Caller,
        record: &crate::audit::AuditRecord,
    ) -> Result<kube::Client, ServerError> {
        let identity = self.impersonated(cluster, caller)?;
        record.cluster(&cluster.name);
        record.impersonated(identity.as_ref());
        let mut headers = identity.as_ref().map(crate::Impersonated::headers).transpose()?.unwrap_or_default();
        headers.insert("audit-id", record.audit_id());
        Ok(self.kubeauth.connector().http_client(cluster, auth).await?.with_headers(headers).kube_client())
    }

    /// The proxy's raw client for `cluster`, over the same connections: with the caller's own credential when
    /// given, else the cluster's provider's (with the user's tokens of `auth` for a client-side one).
    pub(crate) async fn http_client(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
        callers_own: Option<kubeauth::Credential>,
    ) -> Result<kubeauth::ClusterHttpClient, ServerError> {
        let connector = self.kubeauth.connector();
        Ok(match callers_own {
            Some(credential) => connector.http_client_with(cluster, credential).await?,
            None => connector.http_client(cluster, auth).await?,
        })
    }
}

/// One cluster of the located list, without a copy of it.
pub(crate) struct LocatedCluster {
    list: kubeauth::Located,
    index: usize,
}

impl std::ops::Deref for LocatedCluster {
    type Target = ClusterDetails;

    fn deref(&self) -> &ClusterDetails {
        &self.list[self.index]
    }
}

/// The verifier of `kubeauth.server.auth.backstage`, if configured; a wrong setting is an error naming it.
fn backstage_tokens(config: &AppConfig, env: &ResolveContext) -> Result<Option<crate::BackstageTokens>, ServerError> {
    let Some(backstage) = config.kubeauth.server.auth.as_ref().and_then(|a| a.backstage.as_ref()) else {
        return Ok(None);
    };
    const KEY: &str = "kubeauth.server.auth.backstage";
    let origin = config.origin.as_deref();
    let backend =
        kubeauth::locator::catalog::backend_from_config(config, env, KEY, &backstage.base_url, &backstage.ca_file)?;
    let mut settings = crate::BackstageTokenSettings::default();
    let plugin_id = |key: String, id: &str| {
        if crate::backstage_auth::plugin_id_allowed(id) {
            Ok(())
        } else {
            Err(ServerError::setting(origin, &key, format!("`{id}` is not a plugin id (letters, digits, `_`, `-`)")))
        }
    };
    for (i, plugin) in backstage.plugins.iter().enumerate() {
        plugin_id(format!("{KEY}.plugins[{i}]"), plugin)?;
    }
    settings.plugins.clone_from(&backstage.plugins);
    if let Some(id) = &backstage.plugin_id {
        plugin_id(format!("{KEY}.pluginId"), id)?;
        settings.plugin_id.clone_from(id);
    }
    if let Some(skew) = backstage.clock_skew_seconds {
        if skew > 300 {
            return Err(ServerError::setting(
                origin,
                &format!("{KEY}.clockSkewSeconds"),
                format!("{skew} is over 300"),
            ));
        }
        settings.clock_skew = std::time::Duration::from_secs(skew);
    }
    Ok(Some(crate::BackstageTokens::new(backend, settings)))
}

/// The tokens of `kubeauth.server.auth.bearerTokens`: none when the list is left out, an error naming the key
/// for a short token, or for an empty list with no Backstage either.
fn api_tokens(config: &AppConfig, env: &ResolveContext) -> Result<crate::ApiTokens, ServerError> {
    let Some(auth) = &config.kubeauth.server.auth else { return Ok(crate::ApiTokens::default()) };
    let ctx = config.resolve_context(env);
    let origin = config.origin.as_deref();
    let mut tokens = Vec::new();
    for (i, value) in auth.bearer_tokens.iter().enumerate() {
        let key = format!("kubeauth.server.auth.bearerTokens[{i}]");
        let token = value.resolve(&ctx).map_err(|m| ServerError::setting(origin, &key, m))?;
        if token.trim().chars().count() < MIN_API_TOKEN_LENGTH {
            return Err(ServerError::setting(
                origin,
                &key,
                format!("too short (at least {MIN_API_TOKEN_LENGTH} characters)"),
            ));
        }
        tokens.push(token.into());
    }
    if tokens.is_empty() && auth.backstage.is_none() {
        return Err(ServerError::setting(
            origin,
            "kubeauth.server.auth.bearerTokens",
            "empty; give at least one token".into(),
        ));
    }
    Ok(crate::ApiTokens::new(tokens))
}

/// One entry of `GET /api/kubernetes/clusters`, in Backstage's shape.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterItem {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dashboard_url: Option<String>,
    auth_provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc_token_provider: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    auth: std::collections::BTreeMap<String, String>,
}

pub(crate) async fn clusters(State(server): State<Arc<KubeauthServer>>) -> Result<impl IntoResponse, ServerError> {
    let items: Vec<ClusterItem> = server
        .clusters()
        .await?
        .iter()
        .map(|c| ClusterItem {
            auth: server.kubeauth.registry().present_auth_metadata(c),
            auth_provider: c.auth_provider().unwrap_or_default().to_owned(),
            oidc_token_provider: c.oidc_token_provider().map(str::to_owned),
            name: c.name.clone(),
            title: c.title.clone(),
            dashboard_url: c.dashboard_url.clone(),
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

pub(crate) async fn readyz(State(server): State<Arc<KubeauthServer>>) -> impl IntoResponse {
    match server.clusters().await {
        Ok(clusters) => (StatusCode::OK, format!("ok: {} clusters\n", clusters.len())),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", kubeauth::report(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The YAML examples of docs/server.md that set `kubeauth.server`.
    fn documented_server_settings() -> Vec<String> {
        let page = include_str!("../../../docs/server.md");
        page.split("```yaml\n")
            .skip(1)
            .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml.to_owned()))
            .filter(|yaml| yaml.contains("\n  server:\n"))
            .collect()
    }

    #[test]
    fn an_unknown_server_key_or_a_number_out_of_range_stops_the_server() {
        let refused = |yaml: &str| {
            let yaml = format!("kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters: []\n{yaml}");
            let config = AppConfig::from_yaml_str(&yaml, Some(std::path::Path::new("app-config.yaml"))).unwrap();
            KubeauthServer::from_config(&config, &ResolveContext::new(|_| None)).unwrap_err().to_string()
        };
        assert_eq!(
            refused("kubeauth:\n  server:\n    permisions: []\n"),
            "app-config.yaml: kubeauth.server.permisions: not a key of kubeauth's server settings (did you mean \
             `permissions`?); the server does not start with it"
        );
        assert!(
            refused("kubeauth:\n  server:\n    permissions:\n      - callers: ['*']\n        verbs: [get]\n        namespace: [a]\n")
                .contains("kubeauth.server.permissions[0].namespace: not a key of kubeauth's server settings (did you mean `namespaces`?)")
        );
        assert_eq!(
            refused("kubeauth:\n  server:\n    limits:\n      maxConnections: 18446744073709551615\n"),
            "app-config.yaml: kubeauth.server.limits.maxConnections: must be between 1 and 1000000"
        );
    }

    #[tokio::test]
    async fn every_documented_server_setting_configures_a_server() {
        let examples = documented_server_settings();
        assert!(examples.len() >= 4, "{} examples", examples.len());
        let env = ResolveContext::new(|name| (name == "KUBEAUTH_API_TOKEN").then(|| "a-token-of-24-characters".into()));
        for yaml in examples {
            let config = AppConfig::from_yaml_str(&yaml, None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            let server = KubeauthServer::from_config(&config, &env).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            let open = server.api_auth().is_open();
            assert_eq!(open, !yaml.contains("\n    auth:\n"), "{yaml}");
            // An open server only on loopback; any server with API auth anywhere.
            assert_eq!(server.check_listen_address("0.0.0.0:7007".parse().unwrap()).is_ok(), !open, "{yaml}");
            if let Some(limits) = config.kubeauth.server.limits.as_ref() {
                assert_eq!(server.gates().limits().max_connections, limits.max_connections.unwrap_or(1024));
            }
        }
    }
}
