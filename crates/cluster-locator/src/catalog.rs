//! The Backstage catalog: a client of its HTTP API, and the `catalog` locator (Resource entities of type
//! `kubernetes-cluster`) with Backstage's newest SSRF rules on by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use kubeauth_core::{ClusterDetails, ExposeSecret as _, ProviderSide, SecretString, metadata};
use serde_json::Value;

use crate::LocatorError;
use crate::combined::{ClusterLocator, ClustersFuture};

/// An HTTP client of a Backstage backend (`<baseUrl>/api/<plugin>/…`): the catalog, and the key sets that
/// Backstage tokens are checked against. Redirects are not followed; a request takes at most 20 seconds.
#[derive(Clone, Debug)]
pub struct BackstageBackend {
    base_url: String,
    http: reqwest::Client,
}

impl BackstageBackend {
    /// A client of the backend at `base_url` (http or https), trusting `ca_pem` besides the system's roots.
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>) -> Result<Self, String> {
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
        Ok(Self { base_url: base_url.trim_end_matches('/').to_owned(), http })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET <baseUrl><path>` as JSON, with `token` as a bearer token: `None` on 404, an error on any other
    /// status than 200 (the URL in errors never carries the query).
    pub async fn get_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        token: Option<&SecretString>,
    ) -> Result<Option<Value>, CatalogError> {
        let url = format!("{}{path}", self.base_url);
        let failed = |message: String| CatalogError::Failed { url: url.clone(), message };
        let full = reqwest::Url::parse_with_params(&url, query).map_err(|e| failed(e.to_string()))?;
        let mut request = self.http.get(full);
        if let Some(token) = token {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = request.send().await.map_err(|e| failed(e.without_url().to_string()))?;
        match response.status().as_u16() {
            200 => response.json().await.map(Some).map_err(|e| failed(format!("not JSON: {}", e.without_url()))),
            404 => Ok(None),
            status => Err(failed(format!("HTTP {status}"))),
        }
    }
}

/// A client of a Backstage catalog's HTTP API (`<baseUrl>/api/catalog`).
#[derive(Clone)]
pub struct CatalogClient {
    backend: BackstageBackend,
    token: Option<SecretString>,
}

impl std::fmt::Debug for CatalogClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogClient")
            .field("base_url", &self.backend.base_url)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Why a request to a Backstage backend (its catalog, its key sets) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The entity does not exist.
    #[error("entity {0} not found in the catalog")]
    NotFound(String),
    /// The backend answered with an error or could not be reached.
    #[error("the Backstage backend at {url}: {message}")]
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
        Ok(Self { backend: BackstageBackend::new(base_url, ca_pem)?, token })
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Option<Value>, CatalogError> {
        self.backend.get_json(&format!("/api/catalog{path}"), query, self.token.as_ref()).await
    }

    /// The entities matching a catalog filter (`kind=resource,spec.type=kubernetes-cluster`).
    pub async fn entities(&self, filter: &str) -> Result<Vec<Value>, CatalogError> {
        match self.get("/entities", &[("filter", filter)]).await? {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(CatalogError::Failed {
                url: format!("{}/api/catalog/entities", self.backend.base_url),
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
    let resolved = config.resolve_context(ctx);
    let key_error = |key: &str, message: String| LocatorError::Key {
        origin: config.origin.clone(),
        key: format!("kubeauth.catalog{key}"),
        message,
    };
    let catalog = config.kubeauth.catalog.as_ref().ok_or_else(|| {
        key_error("", "missing: the catalog's baseUrl (and token) are needed to read entities".into())
    })?;
    let token = match &catalog.token {
        Some(t) => t.resolve_optional(&resolved).map_err(|m| key_error(".token", m))?.map(SecretString::from),
        None => None,
    };
    let backend = backend_from_config(config, ctx, "kubeauth.catalog", &catalog.base_url, &catalog.ca_file)?;
    Ok(CatalogClient { backend, token })
}

/// The backend of a config entry with `baseUrl` and `caFile` under `key` (`kubeauth.catalog`,
/// `kubeauth.server.auth.backstage`): an error naming the key when one is missing or wrong.
pub fn backend_from_config(
    config: &crate::AppConfig,
    ctx: &crate::ResolveContext,
    key: &str,
    base_url: &Option<crate::ConfigString>,
    ca_file: &Option<crate::ConfigString>,
) -> Result<BackstageBackend, LocatorError> {
    let ctx = config.resolve_context(ctx);
    let key_error = |sub: &str, message: String| LocatorError::Key {
        origin: config.origin.clone(),
        key: format!("{key}{sub}"),
        message,
    };
    let base_url = base_url.as_ref().ok_or_else(|| key_error(".baseUrl", "missing".into()))?;
    let base_url = base_url.resolve(&ctx).map_err(|m| key_error(".baseUrl", m))?;
    let ca_file = match ca_file {
        Some(file) => file.resolve_optional(&ctx).map_err(|m| key_error(".caFile", m))?,
        None => None,
    };
    let ca = match ca_file.filter(|f| !f.is_empty()) {
        Some(file) => {
            let path = ctx.path(&file);
            Some(std::fs::read(&path).map_err(|e| key_error(".caFile", format!("{}: {e}", path.display())))?)
        }
        None => None,
    };
    BackstageBackend::new(&base_url, ca.as_deref()).map_err(|m| key_error(".baseUrl", m))
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
        // Backstage's rules: a kind is letters and digits; a namespace a DNS label; a name letters, digits and
        // `-_.` inside; each at most 63 characters, starting and ending alphanumeric (so never `.` or `..`).
        let edges_alphanumeric = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        };
        let valid_kind = edges_alphanumeric(kind)
            && kind.starts_with(|c: char| c.is_ascii_alphabetic())
            && kind.chars().all(|c| c.is_ascii_alphanumeric());
        let valid_namespace =
            edges_alphanumeric(namespace) && namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let valid_name =
            edges_alphanumeric(name) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !(valid_kind && valid_namespace && valid_name) {
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
    /// URL patterns, as `allowed_urls`, of API servers whose entities may use a server-side provider: the
    /// server's own credential goes there (`dangerouslyAllowServerSideProviders`).
    pub server_side_urls: Vec<String>,
    /// `kubernetes.io/` annotations taken as auth metadata beside the provider's name and
    /// `oidc-token-provider` (`dangerouslyAllowAuthMetadata`).
    pub auth_metadata: Vec<String>,
}

/// The auth metadata every catalog cluster may carry: which provider, and which of the user's ID tokens.
const CATALOG_AUTH_METADATA: [&str; 2] = [metadata::AUTH_PROVIDER, metadata::OIDC_TOKEN_PROVIDER];

/// The providers known to take the signed-in user's token, when no registry is at hand to ask: any other is
/// taken for server-side.
const CLIENT_SIDE_PROVIDERS: [&str; 3] = ["google", "oidc", "aks"];

/// The `catalog` method: Resource entities of type `kubernetes-cluster` from the Backstage catalog, refreshed
/// after the refresh interval (the last good list is kept when a refresh fails, and served while a refresh runs).
///
/// An entity becomes a cluster only if it passes these rules, else it is skipped with a warning naming it and
/// the rule (the other entities are not concerned):
/// - the API server URL is `https`, has no user info, and its host is neither a non-public IP literal nor a name
///   resolving to a non-public address, unless the URL is allow-listed (`dangerouslyAllowClusterUrls`); the
///   addresses checked are the ones connections go to ([`ClusterDetails::connect_addresses`]);
/// - its provider is registered and its settings valid (with a [`ProviderCheck`](crate::ProviderCheck));
/// - a server-side provider (the server's own credential: `aws`, `azure`, `googleServiceAccount`,
///   `serviceAccount`, custom ones) only for URLs allow-listed in `dangerouslyAllowServerSideProviders`;
/// - auth metadata is `kubernetes.io/auth-provider`, `kubernetes.io/oidc-token-provider` and the annotations of
///   `dangerouslyAllowAuthMetadata` only: an entity cannot pick the role, cluster id or scope of the server's
///   credential;
/// - `skip-tls-verify` is honoured only when allowed; no redirects are followed.
///
/// Entities are checked concurrently, outside any lock that requests wait on.
pub struct CatalogLocator {
    client: CatalogClient,
    rules: CatalogRules,
    check: Option<crate::ProviderCheck>,
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

/// How many entities are checked (their host resolved) at once.
const CONCURRENT_CHECKS: usize = 16;

impl CatalogLocator {
    /// A locator reading `client`'s catalog; `source` names it in messages.
    pub fn new(client: CatalogClient, rules: CatalogRules, refresh: Duration, source: impl Into<String>) -> Self {
        Self {
            client,
            rules,
            check: None,
            source: source.into(),
            refresh,
            last: crate::refreshed::RefreshedList::default(),
        }
    }

    /// Checks each entity's provider with `check` (the toolkit's registry): an unknown provider or a wrong
    /// setting skips the entity, and the provider's side decides whether the server-side rule applies.
    /// Without it, providers other than `google`, `oidc` and `aks` are taken for server-side.
    pub fn with_provider_check(mut self, check: crate::ProviderCheck) -> Self {
        self.check = Some(check);
        self
    }

    async fn fetch(&self) -> Result<Vec<ClusterDetails>, String> {
        use futures::StreamExt as _;
        let entities = self.client.entities(CLUSTER_FILTER).await.map_err(|e| e.to_string())?;
        type Check<'a> = std::pin::Pin<Box<dyn Future<Output = Result<ClusterDetails, String>> + Send + 'a>>;
        let checks: Vec<Check<'_>> =
            entities.iter().map(|entity| Box::pin(self.cluster(entity)) as Check<'_>).collect();
        let checked: Vec<_> = futures::stream::iter(checks).buffered(CONCURRENT_CHECKS).collect().await;
        let mut clusters = Vec::new();
        for (entity, result) in entities.iter().zip(checked) {
            match result {
                Ok(cluster) => clusters.push(cluster),
                Err(reason) => {
                    let reference = entity_ref(entity);
                    tracing::warn!(locator = %self.source, entity = %reference, %reason, "skipped a cluster entity of the catalog");
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
        let checked = check_url(&url, &self.rules).await?;
        let mut cluster = ClusterDetails::new(name, url);
        cluster.connect_addresses = checked.addresses;
        cluster.title = entity["metadata"]["title"].as_str().map(str::to_owned);
        cluster.source = self.source.clone();
        for (key, value) in &annotations {
            let Some(value) = value.as_str() else { continue };
            if CATALOG_AUTH_METADATA.contains(&key.as_str()) || self.rules.auth_metadata.iter().any(|k| k == key) {
                cluster.auth_metadata.insert(key.clone(), value.to_owned());
            } else if is_auth_annotation(key) {
                tracing::warn!(locator = %self.source, cluster = %name, annotation = %key, "ignoring an annotation that would shape the server's credential (dangerouslyAllowAuthMetadata)");
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
        let side = match &self.check {
            Some(check) => check(&cluster)?,
            None if CLIENT_SIDE_PROVIDERS.contains(&provider.as_str()) => ProviderSide::Client,
            None => ProviderSide::Server,
        };
        if side == ProviderSide::Server
            && !self.rules.server_side_urls.iter().any(|pattern| wildcard_match(pattern, &checked.origin))
        {
            return Err(format!(
                "authProvider {provider} authenticates with the server's own credential, which would go to {}; \
                 allow that URL with dangerouslyAllowServerSideProviders",
                checked.origin
            ));
        }
        Ok(cluster)
    }
}

/// An annotation of Backstage's or kubeauth's that a provider reads (not one of the connection's, such as the
/// CA or the dashboard).
fn is_auth_annotation(key: &str) -> bool {
    key.starts_with("kubernetes.io/")
        && ![
            "kubernetes.io/api-server",
            "kubernetes.io/api-server-certificate-authority",
            "kubernetes.io/skip-metrics-lookup",
            "kubernetes.io/skip-tls-verify",
            "kubernetes.io/dashboard-url",
            "kubernetes.io/dashboard-app",
            "kubernetes.io/dashboard-parameters",
        ]
        .contains(&key)
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

/// A URL that passed the rules: `https://host:port`, and the addresses its host was checked at (none for an
/// allow-listed URL or an IP literal).
#[derive(Debug)]
struct CheckedUrl {
    origin: String,
    addresses: Vec<IpAddr>,
}

/// Backstage's URL rules for catalog clusters.
async fn check_url(url: &str, rules: &CatalogRules) -> Result<CheckedUrl, String> {
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
        return Ok(CheckedUrl { origin, addresses: Vec::new() });
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let (addresses, literal) = match bare.parse::<IpAddr>() {
        Ok(ip) => (vec![ip], true),
        Err(_) => (
            tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| format!("kubernetes.io/api-server host `{bare}` does not resolve: {e}"))?
                .map(|a| a.ip())
                .collect(),
            false,
        ),
    };
    if let Some(ip) = addresses.iter().find(|ip| !is_public(ip)) {
        return Err(format!(
            "kubernetes.io/api-server `{origin}` is at the non-public address {ip}; allow it with dangerouslyAllowClusterUrls"
        ));
    }
    Ok(CheckedUrl { origin, addresses: if literal { Vec::new() } else { addresses } })
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
        for traversal in
            ["component:default/..", "component:../x", "component:./x", "component:default/.", ".:default/x"]
        {
            assert!(traversal.parse::<EntityRef>().is_err(), "{traversal}");
        }
        assert!("component:default/a.b_c-d".parse::<EntityRef>().is_ok());
    }
}
