use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use kubeauth::{ClusterDetails, CombinedLocator, ProviderSide, Registry, RequestAuth};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::ServerError;

/// The server: a registry of providers, the locators, and a `kube::Client` per server-side cluster.
pub struct KubeauthServer {
    registry: Registry,
    locator: CombinedLocator,
    service_locator: crate::ServiceLocator,
    api_tokens: crate::ApiTokens,
    catalog: Option<kubeauth::locator::catalog::CatalogClient>,
    clients: Mutex<HashMap<String, kube::Client>>,
    http_clients: Mutex<HashMap<String, kubeauth::ClusterHttpClient>>,
}

impl std::fmt::Debug for KubeauthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeauthServer").field("locator", &self.locator).finish_non_exhaustive()
    }
}

impl KubeauthServer {
    /// A server over the clusters `locator` finds, authenticated by `registry`'s providers.
    pub fn new(registry: Registry, locator: CombinedLocator) -> Self {
        Self {
            registry,
            locator,
            service_locator: crate::ServiceLocator::default(),
            api_tokens: crate::ApiTokens::default(),
            catalog: None,
            clients: Mutex::new(HashMap::new()),
            http_clients: Mutex::new(HashMap::new()),
        }
    }

    /// Which clusters an entity's objects are looked for in (`kubernetes.serviceLocatorMethod`).
    pub fn with_service_locator(mut self, service_locator: crate::ServiceLocator) -> Self {
        self.service_locator = service_locator;
        self
    }

    /// Callers of the API must present one of these tokens (`Authorization: Bearer …`); `/healthz` and
    /// `/readyz` stay open. No tokens: the API is open (for a loopback listener).
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

    pub(crate) fn catalog(&self) -> Option<&kubeauth::locator::catalog::CatalogClient> {
        self.catalog.as_ref()
    }

    pub(crate) fn api_tokens(&self) -> &crate::ApiTokens {
        &self.api_tokens
    }

    pub(crate) fn locator(&self) -> &CombinedLocator {
        &self.locator
    }

    pub(crate) fn service_locator(&self) -> crate::ServiceLocator {
        self.service_locator
    }

    /// Locates the clusters and validates each against the registry: what `kubeauth serve` runs before it
    /// listens, so that a wrong configuration starts nothing.
    pub async fn check(&self) -> Result<Vec<ClusterDetails>, ServerError> {
        let clusters = self.locator.clusters().await?;
        for cluster in &clusters {
            self.registry.validate(cluster).map_err(kubeauth::Error::from)?;
        }
        Ok(clusters)
    }

    pub(crate) async fn cluster(&self, name: Option<&str>) -> Result<ClusterDetails, ServerError> {
        let clusters = self.locator.clusters().await?;
        match name {
            Some(name) => clusters
                .into_iter()
                .find(|c| c.name == name)
                .ok_or_else(|| ServerError::ClusterNotFound(name.to_owned())),
            None if clusters.len() == 1 => Ok(clusters.into_iter().next().expect("one cluster")),
            None => Err(ServerError::ClusterHeaderRequired(clusters.len())),
        }
    }

    /// A client for `cluster`: kept per cluster for server-side providers; built per request for client-side
    /// ones, which carry the user's tokens.
    pub(crate) async fn client(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<kube::Client, ServerError> {
        let (_, provider) = self.registry.provider_for(cluster).map_err(kubeauth::Error::from)?;
        if provider.side() == ProviderSide::Client {
            return Ok(self.registry.kube_client(cluster, auth).await?);
        }
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&cluster.name) {
            return Ok(client.clone());
        }
        let client = self.registry.kube_client(cluster, &RequestAuth::none()).await?;
        clients.insert(cluster.name.clone(), client.clone());
        Ok(client)
    }
}

impl KubeauthServer {
    /// The proxy's raw client for `cluster`: kept per cluster for server-side providers; built per request for
    /// client-side ones.
    pub(crate) async fn http_client(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<kubeauth::ClusterHttpClient, ServerError> {
        let (_, provider) = self.registry.provider_for(cluster).map_err(kubeauth::Error::from)?;
        if provider.side() == ProviderSide::Client {
            return Ok(self.registry.http_client(cluster, auth).await?);
        }
        if let Some(client) = self.http_clients.lock().await.get(&cluster.name) {
            return Ok(client.clone());
        }
        let client = self.registry.http_client(cluster, &RequestAuth::none()).await?;
        self.http_clients.lock().await.entry(cluster.name.clone()).or_insert(client.clone());
        Ok(client)
    }
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
        .locator
        .clusters()
        .await?
        .into_iter()
        .map(|c| ClusterItem {
            auth: server.registry.present_auth_metadata(&c),
            auth_provider: c.auth_provider().unwrap_or_default().to_owned(),
            oidc_token_provider: c.oidc_token_provider().map(str::to_owned),
            name: c.name,
            title: c.title,
            dashboard_url: c.dashboard_url,
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

pub(crate) async fn readyz(State(server): State<Arc<KubeauthServer>>) -> impl IntoResponse {
    match server.locator.clusters().await {
        Ok(clusters) => (StatusCode::OK, format!("ok: {} clusters\n", clusters.len())),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", kubeauth::report(&e))),
    }
}
