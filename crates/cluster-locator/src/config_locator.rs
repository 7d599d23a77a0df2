use std::path::Path;

use kubeauth_core::{ClusterDetails, ValidationIssue, metadata};
use serde_saphyr::Spanned;

use crate::combined::{ClusterLocator, ClustersFuture};
use crate::error::MethodName;
use crate::{ClusterConfig, ConfigString, LocatorError, ResolveContext};

/// The `config` method: clusters listed in the config file.
///
/// Every value is resolved (`${VAR}`, `$env`, `$file`) and every cluster checked when the locator is built, so
/// a wrong config stops the application at startup with the file, line, cluster and key at fault.
#[derive(Debug, Clone)]
pub struct ConfigLocator {
    clusters: crate::Located,
}

impl ConfigLocator {
    /// Resolves and checks the clusters of `clusterLocatorMethods[method_index]`.
    pub fn new(
        method_index: usize,
        clusters: &[Spanned<ClusterConfig>],
        ctx: &ResolveContext,
        origin: Option<&Path>,
    ) -> Result<Self, LocatorError> {
        let clusters = clusters
            .iter()
            .enumerate()
            .map(|(i, spanned)| {
                let line = [spanned.defined, spanned.referenced].iter().map(|l| l.line()).find(|l| *l > 0);
                resolve_cluster(&spanned.value, method_index, ctx, line).map_err(|(cluster, issues)| {
                    LocatorError::Cluster {
                        origin: origin.map(Path::to_owned),
                        method_index,
                        cluster: cluster.unwrap_or_else(|| format!("#{i}")),
                        line,
                        issues,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { clusters: clusters.into() })
    }

    /// A locator over clusters built in code.
    pub fn from_clusters(clusters: Vec<ClusterDetails>) -> Self {
        Self { clusters: clusters.into() }
    }

    /// The clusters.
    pub(crate) fn list(&self) -> &crate::Located {
        &self.clusters
    }
}

impl ClusterLocator for ConfigLocator {
    fn clusters(&self) -> ClustersFuture<'_> {
        let clusters = self.clusters.clone();
        Box::pin(async move { Ok(clusters) })
    }
}

type Failure = (Option<String>, Vec<ValidationIssue>);

fn resolve_cluster(
    raw: &ClusterConfig,
    method_index: usize,
    ctx: &ResolveContext,
    line: Option<u64>,
) -> Result<ClusterDetails, Failure> {
    let mut issues = Vec::new();
    // As Backstage reads a cluster entry: a key whose `${VAR}` is not set is absent, and so is an empty string
    // (JavaScript's falsy ''); `name` and `url` are required, so an unset variable there is the error it names.
    let mut get = |key: &str, value: &Option<ConfigString>| -> Option<String> {
        let value = value.as_ref()?;
        let resolved =
            if matches!(key, "name" | "url") { value.resolve(ctx).map(Some) } else { value.resolve_optional(ctx) };
        match resolved {
            Ok(v) => v.filter(|v| !v.is_empty()),
            Err(message) => {
                issues.push(ValidationIssue::new(key, message));
                None
            }
        }
    };

    let name = get("name", &raw.name);
    let mut cluster = ClusterDetails::new(name.clone().unwrap_or_default(), get("url", &raw.url).unwrap_or_default());
    cluster.title = get("title", &raw.title);
    if let Some(p) = get("authProvider", &raw.auth_provider) {
        cluster.set_auth_provider(p);
    }
    for (key, meta, value) in [
        ("oidcTokenProvider", metadata::OIDC_TOKEN_PROVIDER, &raw.oidc_token_provider),
        ("assumeRole", metadata::AWS_ASSUME_ROLE, &raw.assume_role),
        ("externalId", metadata::AWS_EXTERNAL_ID, &raw.external_id),
    ] {
        if let Some(v) = get(key, value) {
            cluster.auth_metadata.insert(meta.to_owned(), v);
        }
    }
    // authMetadata is merged last: it wins over the dedicated keys, as in Backstage.
    for (k, v) in raw.auth_metadata.iter().flatten() {
        if let Some(v) = get(&format!("authMetadata.{k}"), &Some(v.clone())) {
            cluster.auth_metadata.insert(k.clone(), v);
        }
    }
    cluster.service_account_token = get("serviceAccountToken", &raw.service_account_token).map(Into::into);
    // Backstage keeps the token among the auth metadata, so `authMetadata.serviceAccountToken` sets it too (and
    // wins, as authMetadata does); it is the token, never a metadata value.
    if let Some(token) = cluster.auth_metadata.remove("serviceAccountToken") {
        cluster.service_account_token = Some(token.into());
    }
    cluster.ca_data = get("caData", &raw.ca_data);
    cluster.ca_file = get("caFile", &raw.ca_file).map(|p| ctx.path(&p));
    cluster.dashboard_url = get("dashboardUrl", &raw.dashboard_url);
    cluster.proxy_url = get("proxyUrl", &raw.proxy_url);
    cluster.tls_server_name = get("tlsServerName", &raw.tls_server_name);
    cluster.dashboard_app = get("dashboardApp", &raw.dashboard_app);
    if let Some(parameters) = &raw.dashboard_parameters {
        match crate::config::substitute_strings(parameters, ctx) {
            Ok(parameters) => cluster.dashboard_parameters = parameters,
            Err(message) => issues.push(ValidationIssue::new("dashboardParameters", message)),
        }
    }
    for (i, custom) in raw.custom_resources.iter().flatten().enumerate() {
        match custom.resolve(ctx) {
            Ok(matcher) => cluster.custom_resources.push(matcher),
            Err((field, message)) => {
                issues.push(ValidationIssue::new(format!("customResources[{i}].{field}"), message));
            }
        }
    }
    for (key, value, field) in [
        ("skipTLSVerify", &raw.skip_tls_verify, &mut cluster.skip_tls_verify),
        ("skipMetricsLookup", &raw.skip_metrics_lookup, &mut cluster.skip_metrics_lookup),
    ] {
        if let Some(v) = value {
            match v.resolve_optional(ctx) {
                Ok(b) => *field = b.unwrap_or_default(),
                Err(message) => issues.push(ValidationIssue::new(key, message)),
            }
        }
    }
    cluster.source = match line {
        Some(l) => format!("{}, line {l}", MethodName(method_index, "config")),
        None => MethodName(method_index, "config").to_string(),
    };

    // Checks that hold whatever the provider; the provider's own checks run when the registry sees the cluster.
    let failed_keys: Vec<String> = issues.iter().map(|i| i.key.clone()).collect();
    for issue in cluster.validate() {
        if !failed_keys.contains(&issue.key) {
            issues.push(issue);
        }
    }
    if issues.is_empty() { Ok(cluster) } else { Err((name.filter(|n| !n.is_empty()), issues)) }
}
