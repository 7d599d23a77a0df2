//! The Backstage catalog: a client of its HTTP API, and the `catalog` locator (Resource entities of type
//! `kubernetes-cluster`) with Backstage's newest SSRF rules on by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use kubeauth_core::{ClusterDetails, ExposeSecret as _, SecretString, metadata};
use serde_json::Value;

use crate::LocatorError;
use crate::combined::{ClusterLocator, ClustersFuture};

/// A client of a Backstage catalog's HTTP API (`<baseUrl>/api/catalog`). Redirects are not followed.
#[derive(Clone)]
pub struct CatalogClient {
    base_url: String,
    token: Option<SecretString>,
    http: reqwest::Client,
}

impl std::fmt::Debug for CatalogClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogClient")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why a catalog request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The entity does not exist.
    #[error("entity {0} not found in the catalog")]
    NotFound(String),
    /// The catalog answered with an error or could not be reached.
    #[error("the catalog at {url}: {message}")]
    Failed {
        /// The request URL (without query).
        url: String,
        /// What went wrong.
        message: String,
    },
}

impl CatalogClient {
    /// A client of the catalog of the Backstage backend at `base_url`, sending `token` as a bearer token.
    pub fn new(base_url: &str, token: Option<SecretString>, ca_pem: Option<&[u8]>) -> Result<Self, String> {
        let url = reqwest::Url::parse(base_url).map_err(|e| format!("baseUrl `{base_url}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("baseUrl `{base_url}` must be http or https"));
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("kubeauth/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("caFile: {e}"))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), token, http })
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>, CatalogError> {
        let url = format!("{}/api/catalog{path}", self.base_url);
        let failed = |message: String| CatalogError::Failed { url: url.clone(), message };
        let full = reqwest::Url::parse_with_params(&url, query).map_err(|e| failed(e.to_string()))?;
        let mut request = self.http.get(full);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = request.send().await.map_err(|e| failed(e.without_url().to_string()))?;
        match response.status().as_u16() {
            200 => response.json().await.map(Some).map_err(|e| failed(format!("not JSON: {}", e.without_url()))),
            404 => Ok(None),
            status => Err(failed(format!("HTTP {status}"))),
        }
    }

    /// The entities matching a catalog filter (`kind=resource,spec.type=kubernetes-cluster`).
    pub async fn entities(&self, filter: &str) -> Result<Vec<Value>, CatalogError> {
        match self.get("/entities", &[("filter", filter)]).await? {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(CatalogError::Failed {
                url: format!("{}/api/catalog/entities", self.base_url),
                message: "not a list of entities".into(),
            }),
            None => Ok(Vec::new()),
        }
    }

    /// One entity by its reference `kind:namespace/name` (namespace `default` when left out).
    pub async fn entity(&self, reference: &EntityRef) -> Result<Value, CatalogError> {
        let path = format!("/entities/by-name/{}/{}/{}", reference.kind, reference.namespace, reference.name);
        self.get(&path, &[]).await?.ok_or_else(|| CatalogError::NotFound(reference.to_string()))
    }
}

/// The catalog client of `kubeauth.catalog` (an error naming the key when it is missing or wrong).
pub fn client_from_config(
    config: &crate::AppConfig,
    ctx: &crate::ResolveContext,
) -> Result<CatalogClient, LocatorError> {
    let ctx = config.resolve_context(ctx);
    let key_error = |key: &str, message: String| LocatorError::Key {
        origin: config.origin.clone(),
        key: format!("kubeauth.catalog{key}"),
        message,
    };
    let catalog = config.kubeauth.catalog.as_ref().ok_or_else(|| {
        key_error("", "missing: the catalog's baseUrl (and token) are needed to read entities".into())
    })?;
    let base_url = catalog.base_url.as_ref().ok_or_else(|| key_error(".baseUrl", "missing".into()))?;
    let base_url = base_url.resolve(&ctx).map_err(|m| key_error(".baseUrl", m))?;
    let token = match &catalog.token {
        Some(t) => Some(SecretString::from(t.resolve(&ctx).map_err(|m| key_error(".token", m))?)),
        None => None,
    };
    let ca = match &catalog.ca_file {
        Some(file) => {
            let path = ctx.path(&file.resolve(&ctx).map_err(|m| key_error(".caFile", m))?);
            Some(std::fs::read(&path).map_err(|e| key_error(".caFile", format!("{}: {e}", path.display())))?)
        }
        None => None,
    };
    CatalogClient::new(&base_url, token, ca.as_deref()).map_err(|m| key_error("", m))
}

/// An entity reference: `kind:namespace/name`, `kind:name` (namespace `default`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityRef {
    /// The kind, lowercased.
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl std::fmt::Display for EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.kind, self.namespace, self.name)
    }
}

impl std::str::FromStr for EntityRef {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("entity reference `{text}` has no kind (expected kind:namespace/name)"))?;
        let (namespace, name) = rest.split_once('/').unwrap_or(("default", rest));
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 253
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(kind) || !valid(namespace) || !valid(name) {
            return Err(format!("entity reference `{text}` is not kind:namespace/name"));
        }
        Ok(Self { kind: kind.to_ascii_lowercase(), namespace: namespace.to_owned(), name: name.to_owned() })
    }
}

/// What the `catalog` locator lets through beyond Backstage's defaults.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CatalogRules {
    /// URL patterns (`*` matches any run of characters) of API servers allowed even at non-public addresses,
    /// matched against `https://host:port` (`dangerouslyAllowClusterUrls`).
    pub allowed_urls: Vec<String>,
    /// Honour `kubernetes.io/skip-tls-verify: 'true'` (`dangerouslyAllowSkipTLSVerify`).
    pub allow_skip_tls_verify: bool,
}

/// The `catalog` method: Resource entities of type `kubernetes-cluster` from the Backstage catalog, refreshed
/// after the refresh interval (the last good list is kept when a refresh fails).
///
/// An entity becomes a cluster only if it passes these rules, else it is skipped with a warning naming it and
/// the rule: the API server URL is `https`, has no user info, and its host is neither a non-public IP literal nor
/// a name resolving to a non-public address, unless the URL is allow-listed; its provider is not
/// `serviceAccount` (whose token would go wherever the entity points); auth metadata comes only from
/// `kubernetes.io/` annotations; `skip-tls-verify` is honoured only when allowed; no redirects are followed.
pub struct CatalogLocator {
    client: CatalogClient,
    rules: CatalogRules,
    source: String,
    refresh: Duration,
    last: crate::refreshed::RefreshedList,
}

impl std::fmt::Debug for CatalogLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogLocator")
            .field("client", &self.client)
            .field("rules", &self.rules)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The catalog filter of cluster entities.
pub const CLUSTER_FILTER: &str = "kind=resource,spec.type=kubernetes-cluster";

impl CatalogLocator {
    /// A locator reading `client`'s catalog; `source` names it in messages.
    pub fn new(client: CatalogClient, rules: CatalogRules, refresh: Duration, source: impl Into<String>) -> Self {
        Self { client, rules, source: source.into(), refresh, last: crate::refreshed::RefreshedList::default() }
    }

    async fn fetch(&self) -> Result<Vec<ClusterDetails>, String> {
        let entities = self.client.entities(CLUSTER_FILTER).await.map_err(|e| e.to_string())?;
        let mut clusters = Vec::new();
        for entity in &entities {
            let reference = entity_ref(entity);
            match self.cluster(entity).await {
                Ok(cluster) => clusters.push(cluster),
                Err(reason) => {
                    tracing::warn!(locator = %self.source, entity = %reference, %reason, "refused a cluster entity of the catalog");
                }
            }
        }
        Ok(clusters)
    }

    /// The cluster of one entity, or why it is refused.
    pub async fn cluster(&self, entity: &Value) -> Result<ClusterDetails, String> {
        let name = entity["metadata"]["name"].as_str().filter(|n| !n.is_empty()).ok_or("it has no metadata.name")?;
        let annotations = entity["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
        let annotation = |key: &str| annotations.get(key).and_then(Value::as_str).map(str::to_owned);
        let url = annotation("kubernetes.io/api-server").ok_or("it has no kubernetes.io/api-server annotation")?;
        let provider = annotation(metadata::AUTH_PROVIDER).ok_or("it has no kubernetes.io/auth-provider annotation")?;
        if provider == "serviceAccount" {
            return Err(
                "authProvider serviceAccount is not allowed for catalog clusters: the server's token would go \
                        to any URL an entity names"
                    .into(),
            );
        }
        check_url(&url, &self.rules).await?;
        let mut cluster = ClusterDetails::new(name, url);
        cluster.title = entity["metadata"]["title"].as_str().map(str::to_owned);
        cluster.source = self.source.clone();
        // Auth metadata only from kubernetes.io/ annotations.
        for (key, value) in &annotations {
            if let (true, Some(value)) = (key.starts_with("kubernetes.io/"), value.as_str()) {
                cluster.auth_metadata.insert(key.clone(), value.to_owned());
            }
        }
        cluster.ca_data = annotation("kubernetes.io/api-server-certificate-authority");
        cluster.skip_metrics_lookup = annotation("kubernetes.io/skip-metrics-lookup").as_deref() == Some("true");
        if annotation("kubernetes.io/skip-tls-verify").as_deref() == Some("true") {
            if self.rules.allow_skip_tls_verify {
                cluster.skip_tls_verify = true;
            } else {
                tracing::warn!(locator = %self.source, cluster = %name, "ignoring kubernetes.io/skip-tls-verify: not allowed for catalog clusters (dangerouslyAllowSkipTLSVerify)");
            }
        }
        cluster.dashboard_url = annotation("kubernetes.io/dashboard-url");
        cluster.dashboard_app = annotation("kubernetes.io/dashboard-app");
        if let Some(parameters) = annotation("kubernetes.io/dashboard-parameters") {
            cluster.dashboard_parameters = Some(
                serde_json::from_str(&parameters)
                    .map_err(|e| format!("kubernetes.io/dashboard-parameters is not JSON: {e}"))?,
            );
        }
        Ok(cluster)
    }
}

fn entity_ref(entity: &Value) -> String {
    format!(
        "{}:{}/{}",
        entity["kind"].as_str().unwrap_or("?").to_ascii_lowercase(),
        entity["metadata"]["namespace"].as_str().unwrap_or("default"),
        entity["metadata"]["name"].as_str().unwrap_or("?")
    )
}

impl ClusterLocator for CatalogLocator {
    fn clusters(&self) -> ClustersFuture<'_> {
        Box::pin(self.last.get(self.refresh, &self.source, "catalog cluster list", || self.fetch()))
    }
}

/// Backstage's URL rules for catalog clusters.
async fn check_url(url: &str, rules: &CatalogRules) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("kubernetes.io/api-server `{url}` is not a URL: {e}"))?;
    if parsed.scheme() != "https" {
        return Err(format!("kubernetes.io/api-server `{url}` is not https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("kubernetes.io/api-server has user info in it".into());
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("kubernetes.io/api-server `{url}` has no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let origin = format!("https://{host}:{port}");
    if rules.allowed_urls.iter().any(|pattern| wildcard_match(pattern, &origin)) {
        return Ok(());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("kubernetes.io/api-server host `{bare}` does not resolve: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if let Some(ip) = addresses.iter().find(|ip| !is_public(ip)) {
        return Err(format!(
            "kubernetes.io/api-server `{origin}` is at the non-public address {ip}; allow it with dangerouslyAllowClusterUrls"
        ));
    }
    Ok(())
}

/// `*` matches any run of characters; everything else literally (case-insensitive).
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else { return false };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared, documentation,
/// benchmarking, multicast, reserved or unspecified; IPv4-mapped and NAT64 IPv6 addresses by their IPv4 part).
pub fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(*v4),
        IpAddr::V6(v6) => is_public_v6(*v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] == 0x2001 && segments[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(!is_public(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "35.200.10.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(wildcard_match("https://127.0.0.1:*", "https://127.0.0.1:6443"));
        assert!(wildcard_match("https://*.internal.example:443", "https://k8s.internal.example:443"));
        assert!(!wildcard_match("https://127.0.0.1:*", "https://127.0.0.2:6443"));
        assert!(!wildcard_match("https://*.example:443", "https://evil.test:443"));
        assert!(wildcard_match("https://k8s:443", "HTTPS://K8S:443"));
    }

    #[tokio::test]
    async fn the_url_rules_refuse_what_backstage_refuses() {
        let rules = CatalogRules::default();
        let refused = |url: &'static str| {
            let rules = rules.clone();
            async move { check_url(url, &rules).await.unwrap_err() }
        };
        assert!(refused("http://35.200.10.1").await.contains("not https"));
        assert!(refused("https://user:pw@35.200.10.1").await.contains("user info"));
        assert!(refused("https://127.0.0.1:6443").await.contains("non-public address 127.0.0.1"));
        assert!(refused("https://[::1]:6443").await.contains("non-public"));
        assert!(refused("https://169.254.169.254").await.contains("non-public"));
        assert!(refused("https://localhost:6443").await.contains("non-public"));
        assert!(check_url("https://35.200.10.1", &rules).await.is_ok());
        let allowed = CatalogRules { allowed_urls: vec!["https://127.0.0.1:*".into()], ..Default::default() };
        assert!(check_url("https://127.0.0.1:6443", &allowed).await.is_ok());
    }

    #[test]
    fn entity_refs_parse_like_backstage() {
        let r: EntityRef = "Component:team-a/checkout".parse().unwrap();
        assert_eq!(r.to_string(), "component:team-a/checkout");
        assert_eq!("component:checkout".parse::<EntityRef>().unwrap().namespace, "default");
        assert!("checkout".parse::<EntityRef>().is_err());
        assert!("component:a/b/c".parse::<EntityRef>().is_err());
        assert!("component:".parse::<EntityRef>().is_err());
    }
}
