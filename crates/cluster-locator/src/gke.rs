use std::sync::Arc;
use std::time::Duration;

use kubeauth_core::{ClusterDetails, Credential, ExposeSecret as _};
use serde::Deserialize;

use crate::AccessTokenSource;
use crate::combined::{ClusterLocator, ClustersFuture};

/// The settings of a `gke` method, resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GkeSettings {
    /// The project.
    pub project_id: String,
    /// The location, or `-` for all.
    pub region: String,
    /// `google` or `googleServiceAccount`.
    pub auth_provider: String,
    /// Skip verifying the API servers' certificates.
    pub skip_tls_verify: bool,
    /// Do not fetch pod metrics.
    pub skip_metrics_lookup: bool,
    /// Link clusters to the Google Cloud console.
    pub expose_dashboard: bool,
    /// Labels every listed cluster must have.
    pub matching_resource_labels: Vec<(String, String)>,
    /// How often the list is fetched again.
    pub refresh_interval: Duration,
    /// The GKE API's base URL.
    pub api_base_url: String,
}

impl GkeSettings {
    /// The settings of a method listing the clusters of `project_id`, with the defaults of the config: every
    /// location, the `google` provider, TLS verified with the clusters' CA, metrics looked up, no dashboard,
    /// no label filter, refreshed every 60 minutes, Google's GKE API.
    pub fn new(project_id: impl Into<String>) -> Self {
        Self {
            project_id: project_id.into(),
            region: "-".into(),
            auth_provider: "google".into(),
            skip_tls_verify: false,
            skip_metrics_lookup: false,
            expose_dashboard: false,
            matching_resource_labels: Vec::new(),
            refresh_interval: Duration::from_secs(60 * 60),
            api_base_url: "https://container.googleapis.com".into(),
        }
    }
}

/// The `gke` method: the clusters of a Google Cloud project, from the GKE API (`projects/{p}/locations/{r}/clusters`),
/// each with its endpoint as URL and — beyond Backstage — its cluster CA as `caData`, so TLS is verified.
///
/// The list is fetched again after the refresh interval; if that fails, the last good list is kept (and the
/// failure logged).
pub struct GkeLocator {
    settings: GkeSettings,
    source: String,
    token: Arc<dyn AccessTokenSource>,
    http: reqwest::Client,
    last: crate::refreshed::RefreshedList,
}

impl std::fmt::Debug for GkeLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GkeLocator")
            .field("settings", &self.settings)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClusterList {
    #[serde(default)]
    clusters: Vec<GkeCluster>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GkeCluster {
    name: String,
    endpoint: Option<String>,
    location: Option<String>,
    #[serde(default)]
    resource_labels: std::collections::BTreeMap<String, String>,
    master_auth: Option<MasterAuth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MasterAuth {
    cluster_ca_certificate: Option<String>,
}

impl GkeLocator {
    /// A locator with `settings`, listing with tokens from `token`; `source` names it in messages.
    pub fn new(settings: GkeSettings, source: impl Into<String>, token: Arc<dyn AccessTokenSource>) -> Self {
        Self {
            settings,
            source: source.into(),
            token,
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap_or_default(),
            last: crate::refreshed::RefreshedList::default(),
        }
    }

    async fn fetch(&self) -> Result<Vec<ClusterDetails>, String> {
        let s = &self.settings;
        let token = match self.token.access_token(&self.source).await.map_err(|e| kubeauth_core::report(&e))? {
            Credential::BearerToken { token, .. } => token,
            other => return Err(format!("the token source gave a {} instead of an access token", other.kind())),
        };
        let url = format!(
            "{}/v1/projects/{}/locations/{}/clusters",
            s.api_base_url.trim_end_matches('/'),
            s.project_id,
            s.region
        );
        let response = self
            .http
            .get(&url)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| format!("the GKE API could not be reached ({url}): {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let message: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            return Err(format!(
                "the GKE API answered {status} for project {}: {}",
                s.project_id,
                message["error"]["message"].as_str().unwrap_or("no message")
            ));
        }
        let list: ClusterList =
            response.json().await.map_err(|e| format!("the GKE API's answer is not a cluster list: {e}"))?;
        Ok(list.clusters.into_iter().filter(|c| self.matches(c)).filter_map(|c| self.details(c)).collect())
    }

    fn matches(&self, cluster: &GkeCluster) -> bool {
        self.settings.matching_resource_labels.iter().all(|(k, v)| cluster.resource_labels.get(k) == Some(v))
    }

    fn details(&self, cluster: GkeCluster) -> Option<ClusterDetails> {
        let s = &self.settings;
        let Some(endpoint) = cluster.endpoint.filter(|e| !e.is_empty()) else {
            tracing::warn!(cluster = %cluster.name, "GKE cluster without an endpoint (still provisioning?): left out");
            return None;
        };
        let mut details = ClusterDetails::new(cluster.name.clone(), format!("https://{endpoint}"));
        details.set_auth_provider(s.auth_provider.clone());
        details.skip_tls_verify = s.skip_tls_verify;
        details.skip_metrics_lookup = s.skip_metrics_lookup;
        details.ca_data = cluster.master_auth.and_then(|m| m.cluster_ca_certificate).filter(|c| !c.is_empty());
        if s.expose_dashboard {
            details.dashboard_app = Some("gke".into());
            details.dashboard_parameters = Some(serde_json::json!({
                "projectId": s.project_id,
                "region": cluster.location.unwrap_or_else(|| s.region.clone()),
                "clusterName": cluster.name,
            }));
        }
        details.source = self.source.clone();
        Some(details)
    }
}

impl ClusterLocator for GkeLocator {
    fn clusters(&self) -> ClustersFuture<'_> {
        Box::pin(self.last.get(self.settings.refresh_interval, &self.source, "GKE cluster list", || self.fetch()))
    }
}
