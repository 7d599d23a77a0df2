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
    api_tokens: crate::ApiTokens,
    catalog: Option<kubeauth::locator::catalog::CatalogClient>,
}

impl std::fmt::Debug for KubeauthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeauthServer")
            .field("kubeauth", &self.kubeauth)
            .field("service_locator", &self.service_locator)
            .field("api_tokens", &self.api_tokens)
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
            api_tokens: crate::ApiTokens::default(),
            catalog: None,
        }
    }

    /// The server a config describes, as `kubeauth serve` runs it: the toolkit of
    /// [`Kubeauth::from_config`], then [`configure`](Self::configure).
    pub fn from_config(config: &AppConfig, env: &ResolveContext) -> Result<Self, ServerError> {
        Self::configure(Kubeauth::from_config(config, env)?, config, env)
    }

    /// A server over a toolkit of your own (with custom providers), with the settings of `config`:
    /// `kubernetes.serviceLocatorMethod`, `kubeauth.server.auth.bearerTokens` (each at least
    /// [`MIN_API_TOKEN_LENGTH`] characters) and `kubeauth.catalog`. Every error names its key.
    pub fn configure(kubeauth: Kubeauth, config: &AppConfig, env: &ResolveContext) -> Result<Self, ServerError> {
        let mut server = Self::new(kubeauth);
        if let Some(method) = &config.kubernetes.service_locator_method {
            server.service_locator = crate::ServiceLocator::from_type(&method.kind).ok_or_else(|| {
                ServerError::setting(
                    config.origin.as_deref(),
                    "kubernetes.serviceLocatorMethod.type",
                    format!("`{}` is not multiTenant or singleTenant", method.kind),
                )
            })?;
        }
        server.api_tokens = api_tokens(config, env)?;
        // Entity references of the workloads and custom-resource queries are resolved in this catalog.
        if config.kubeauth.catalog.is_some() {
            server.catalog = Some(kubeauth::locator::catalog::client_from_config(config, env)?);
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
        self.api_tokens = tokens;
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

    pub(crate) fn api_tokens(&self) -> &crate::ApiTokens {
        &self.api_tokens
    }

    pub(crate) fn service_locator(&self) -> crate::ServiceLocator {
        self.service_locator
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

    /// Serves the API on `listener` until `shutdown` completes. An open API (no API tokens) is served only on a
    /// loopback address: the proxy authenticates with the server's own credentials, so beyond loopback its
    /// callers must authenticate too.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let address = listener.local_addr().map_err(|e| ServerError::Listen(e.to_string()))?;
        self.check_listen_address(address)?;
        use axum::serve::ListenerExt as _;
        // Answers leave at once, without Nagle's delay.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| ServerError::Listen(e.to_string()))
    }

    /// The rule [`serve`](Self::serve) applies: an open API only on a loopback address.
    pub fn check_listen_address(&self, address: SocketAddr) -> Result<(), ServerError> {
        if !address.ip().is_loopback() && self.api_tokens.is_empty() {
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

    /// A kube client for `cluster`, over the connector's connections of the cluster.
    pub(crate) async fn client(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<kube::Client, ServerError> {
        Ok(self.kubeauth.connector().kube_client(cluster, auth).await?)
    }

    /// The proxy's raw client for `cluster`, over the same connections.
    pub(crate) async fn http_client(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<kubeauth::ClusterHttpClient, ServerError> {
        Ok(self.kubeauth.connector().http_client(cluster, auth).await?)
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

/// The tokens of `kubeauth.server.auth.bearerTokens`; an empty list or a short token is an error naming it.
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
    if tokens.is_empty() {
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
