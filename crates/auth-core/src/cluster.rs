use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::metadata;

/// One Kubernetes cluster as a locator found it: where it is, how to trust it, and how to authenticate to it.
///
/// The fields are those of a cluster entry of Backstage's `config` locator. The authentication provider and its
/// settings live in [`auth_metadata`](Self::auth_metadata) under the keys of [`metadata`]; the config keys
/// `authProvider`, `oidcTokenProvider`, `assumeRole` and `externalId` are stored there.
///
/// `Debug` shows no secret: the service-account token and every non-public metadata value print `[redacted]`.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ClusterDetails {
    /// Unique name (config key `name`).
    pub name: String,
    /// Display name (config key `title`).
    pub title: Option<String>,
    /// API server URL, `https://…` (or `http://` for a local `kubectl proxy`) (config key `url`).
    pub url: String,
    /// Provider selection and provider settings (config keys `authProvider`, `authMetadata`, …).
    pub auth_metadata: BTreeMap<String, String>,
    /// Token for the `serviceAccount` provider (config key `serviceAccountToken`).
    pub service_account_token: Option<SecretString>,
    /// Do not verify the API server's certificate (config key `skipTLSVerify`).
    pub skip_tls_verify: bool,
    /// Do not ask the cluster for pod metrics (config key `skipMetricsLookup`).
    pub skip_metrics_lookup: bool,
    /// Base64 of the PEM CA bundle that signs the API server's certificate (config key `caData`).
    pub ca_data: Option<String>,
    /// Path of a PEM CA bundle (config key `caFile`).
    pub ca_file: Option<PathBuf>,
    /// Link to the cluster's dashboard (config key `dashboardUrl`).
    pub dashboard_url: Option<String>,
    /// Which dashboard formatter builds links (config key `dashboardApp`).
    pub dashboard_app: Option<String>,
    /// Parameters of the dashboard formatter (config key `dashboardParameters`).
    pub dashboard_parameters: Option<serde_json::Value>,
    /// Custom resources to fetch for this cluster (config key `customResources`).
    pub custom_resources: Vec<CustomResourceMatcher>,
    /// Which locator found the cluster, e.g. `config #0`: error messages about duplicates name both sources.
    pub source: String,
    /// The addresses the URL's host was checked at (the `catalog` locator's rules): connections go to these,
    /// and the name is not resolved again (a name that resolves elsewhere later cannot redirect them). Empty:
    /// the name is resolved at each connection.
    pub connect_addresses: Vec<std::net::IpAddr>,
    /// An HTTP proxy the API server is reached through, with CONNECT (config key `proxyUrl`,
    /// `http://[user:password@]host:port`); when not set, `HTTPS_PROXY`/`HTTP_PROXY` and `NO_PROXY` of the
    /// environment decide, loopback hosts never proxied (as kubectl's rule).
    pub proxy_url: Option<String>,
    /// The name the API server's certificate is checked against and sent in SNI, when not the URL's host
    /// (config key `tlsServerName`, kubeconfig's `tls-server-name`): an API server reached by IP address or
    /// through a tunnel whose certificate names it otherwise.
    pub tls_server_name: Option<String>,
}

/// A custom resource to fetch: `{group, apiVersion, plural}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceMatcher {
    /// API group, e.g. `argoproj.io`.
    pub group: String,
    /// API version, e.g. `v1alpha1`.
    pub api_version: String,
    /// Plural resource name, e.g. `rollouts`.
    pub plural: String,
}

/// One problem found by validating a cluster: the config key at fault and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationIssue {
    /// The config key at fault, e.g. `caData` or `authMetadata.kubernetes.io/aws-assume-role`.
    pub key: String,
    /// What is wrong, without the offending value when that value may be a secret.
    pub message: String,
}

impl ValidationIssue {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ValidationIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl ClusterDetails {
    /// A cluster with a name and an API server URL; every other field empty.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self { name: name.into(), url: url.into(), ..Self::default() }
    }

    /// The authentication provider's key (`kubernetes.io/auth-provider`).
    pub fn auth_provider(&self) -> Option<&str> {
        self.auth_metadata.get(metadata::AUTH_PROVIDER).map(String::as_str)
    }

    /// Sets the authentication provider's key.
    pub fn set_auth_provider(&mut self, key: impl Into<String>) {
        self.auth_metadata.insert(metadata::AUTH_PROVIDER.to_owned(), key.into());
    }

    /// The OIDC token provider (`kubernetes.io/oidc-token-provider`), for the `oidc` provider.
    pub fn oidc_token_provider(&self) -> Option<&str> {
        self.auth_metadata.get(metadata::OIDC_TOKEN_PROVIDER).map(String::as_str)
    }

    /// The checks that hold for every cluster whatever its provider: a name, an http(s) URL, an auth provider,
    /// and a CA that can be read. Provider-specific checks are the provider's
    /// [`validate_cluster`](crate::ServerSideProvider::validate_cluster).
    pub fn validate(&self) -> Vec<ValidationIssue> {
        let mut issues = Vec::new();
        if self.name.trim().is_empty() {
            issues.push(ValidationIssue::new("name", "must not be empty"));
        }
        if let Err(message) = check_url(&self.url) {
            issues.push(ValidationIssue::new("url", message));
        }
        if let Some(proxy) = &self.proxy_url {
            let authority =
                proxy.strip_prefix("http://").map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
            match authority.map(|a| a.rsplit_once('@').map_or(a, |(_, host)| host)) {
                None => issues.push(ValidationIssue::new(
                    "proxyUrl",
                    format!(
                        "`{}` is not an http:// URL (proxies are spoken to in plain HTTP)",
                        without_userinfo(proxy)
                    ),
                )),
                Some("") => {
                    issues.push(ValidationIssue::new("proxyUrl", format!("`{}` has no host", without_userinfo(proxy))));
                }
                Some(_) => {}
            }
        }
        if let Some(name) = &self.tls_server_name
            && bad_server_name(name)
        {
            issues.push(ValidationIssue::new("tlsServerName", format!("`{name}` is not a DNS name or IP address")));
        }
        match self.auth_provider() {
            None => issues.push(ValidationIssue::new(
                "authProvider",
                "missing: say which authentication provider serves this cluster",
            )),
            Some(p) if p.trim().is_empty() => issues.push(ValidationIssue::new("authProvider", "must not be empty")),
            Some(_) => {}
        }
        match self.ca_certificates_der() {
            Err(Error::Config { key, message, .. }) => issues.push(ValidationIssue::new(key, message)),
            Err(Error::Io { key, path, source, .. }) => {
                issues.push(ValidationIssue::new(key, format!("cannot read `{}`: {source}", path.display())));
            }
            _ => {}
        }
        issues
    }

    /// Like [`validate`](Self::validate), as a `Result` whose error names the cluster and every key at fault.
    pub fn check(&self) -> Result<(), Error> {
        let issues = self.validate();
        if issues.is_empty() { Ok(()) } else { Err(Error::InvalidCluster { cluster: self.name.clone(), issues }) }
    }

    /// The CA certificates (DER) from `caFile`, else `caData` (Backstage's order: a file wins over inline
    /// data); `None` when neither is set (use the system roots).
    pub fn ca_certificates_der(&self) -> Result<Option<Vec<Vec<u8>>>, Error> {
        let Some((key, pem_text)) = self.ca_pem_with_key()? else { return Ok(None) };
        let blocks = pem::parse_many(&pem_text).map_err(|e| Error::Config {
            cluster: self.name.clone(),
            key: key.into(),
            message: format!("not a PEM certificate bundle: {e}"),
        })?;
        let certs: Vec<Vec<u8>> =
            blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect();
        if certs.is_empty() {
            return Err(Error::Config {
                cluster: self.name.clone(),
                key: key.into(),
                message: "holds no PEM `CERTIFICATE` block".into(),
            });
        }
        Ok(Some(certs))
    }

    /// The CA bundle as PEM text, from `caFile`, else `caData`, as [`ca_certificates_der`](Self::ca_certificates_der)
    /// reads it (for clients that take PEM: an exec plugin's cluster info, a Pinniped Concierge at the cluster).
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.ca_pem_with_key()?.map(|(_, pem)| pem))
    }

    /// The CA bundle as PEM text and the key it came from.
    fn ca_pem_with_key(&self) -> Result<Option<(&'static str, Vec<u8>)>, Error> {
        if let Some(path) = &self.ca_file {
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                cluster: self.name.clone(),
                key: "caFile".into(),
                path: path.clone(),
                source,
            })?;
            return Ok(Some(("caFile", bytes)));
        }
        let Some(data) = &self.ca_data else { return Ok(None) };
        let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).map_err(|e| Error::Config {
                cluster: self.name.clone(),
                key: "caData".into(),
                message: format!("not valid base64 ({e}); caData is the base64 of a PEM CA bundle"),
            })?;
        Ok(Some(("caData", bytes)))
    }
}

/// Whether `name` cannot be a TLS server name: empty, or with characters no DNS name or IP address has.
fn bad_server_name(name: &str) -> bool {
    name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

fn check_url(url: &str) -> Result<(), String> {
    if url.trim().is_empty() {
        return Err("missing: the API server's URL, e.g. https://10.0.0.1:6443".into());
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if authority.contains('@') {
        return Err("must not carry user information (user:password@)".into());
    }
    if url.chars().any(char::is_whitespace) {
        return Err(format!("`{}` contains white space", url.trim()));
    }
    Ok(())
}

impl fmt::Debug for ClusterDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let metadata: BTreeMap<&str, &str> = self
            .auth_metadata
            .iter()
            .map(|(k, v)| {
                (k.as_str(), if metadata::PUBLIC_KEYS.contains(&k.as_str()) { v.as_str() } else { "[redacted]" })
            })
            .collect();
        f.debug_struct("ClusterDetails")
            .field("name", &self.name)
            .field("title", &self.title)
            .field("url", &self.url)
            .field("auth_metadata", &metadata)
            .field("service_account_token", &self.service_account_token.as_ref().map(|_| "[redacted]"))
            .field("skip_tls_verify", &self.skip_tls_verify)
            .field("skip_metrics_lookup", &self.skip_metrics_lookup)
            .field("ca_data", &self.ca_data.as_ref().map(|d| format!("<{} base64 characters>", d.len())))
            .field("ca_file", &self.ca_file)
            .field("dashboard_url", &self.dashboard_url)
            .field("dashboard_app", &self.dashboard_app)
            .field("dashboard_parameters", &self.dashboard_parameters)
            .field("custom_resources", &self.custom_resources)
            .field("source", &self.source)
            .field("connect_addresses", &self.connect_addresses)
            .field("proxy_url", &self.proxy_url.as_deref().map(without_userinfo))
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

/// `url` with any `user:password@` replaced by `***@`: a proxy URL as logs and errors may show it.
pub fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterDetails {
        let mut c = ClusterDetails::new("prod", "https://10.0.0.1:6443");
        c.set_auth_provider("serviceAccount");
        c
    }

    #[test]
    fn a_complete_cluster_is_valid() {
        assert_eq!(cluster().validate(), vec![]);
    }

    #[test]
    fn missing_url_and_provider_are_named() {
        let mut c = ClusterDetails::new("prod", "");
        c.auth_metadata.clear();
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("cluster 'prod'"), "{err}");
        assert!(err.contains("url: missing"), "{err}");
        assert!(err.contains("authProvider: missing"), "{err}");
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_userinfo() {
        for bad in ["ftp://x", "https://", "10.0.0.1:6443", "https://user:pw@host"] {
            let mut c = cluster();
            c.url = bad.into();
            let issues = c.validate();
            assert_eq!(issues.len(), 1, "{bad}: {issues:?}");
            assert_eq!(issues[0].key, "url");
            assert!(!issues[0].message.contains("pw@"), "the password is not repeated");
        }
    }

    #[test]
    fn a_proxy_url_is_checked_and_its_password_never_shown() {
        let mut c = ClusterDetails::new("c", "https://k8s.example.com");
        c.set_auth_provider("serviceAccount");
        c.proxy_url = Some("http://me:hunter2@proxy.corp:3128".into());
        assert!(c.validate().is_empty());
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        assert!(format!("{c:?}").contains("http://***@proxy.corp:3128"));
        c.proxy_url = Some("socks5://me:hunter2@proxy.corp".into());
        let issues = c.validate();
        assert_eq!(issues[0].key, "proxyUrl");
        assert!(issues[0].message.contains("is not an http:// URL") && !issues[0].message.contains("hunter2"));
    }

    #[test]
    fn bad_base64_ca_data_names_the_key() {
        let mut c = cluster();
        c.ca_data = Some("not base64!!".into());
        let issues = c.validate();
        assert_eq!(issues[0].key, "caData");
        assert!(issues[0].message.contains("base64"), "{}", issues[0].message);
    }

    #[test]
    fn ca_data_without_a_certificate_is_refused() {
        let mut c = cluster();
        c.ca_data = Some(base64::engine::general_purpose::STANDARD.encode("hello"));
        assert_eq!(c.validate()[0].key, "caData");
    }

    #[test]
    fn unreadable_ca_file_names_the_key_and_path() {
        let mut c = cluster();
        c.ca_file = Some("/nonexistent/ca.crt".into());
        let issue = &c.validate()[0];
        assert_eq!(issue.key, "caFile");
        assert!(issue.message.contains("/nonexistent/ca.crt"), "{}", issue.message);
    }

    #[test]
    fn debug_hides_the_token_and_private_metadata() {
        let mut c = cluster();
        c.service_account_token = Some("s3cr3t-token".into());
        c.auth_metadata.insert("vendor.example/api-key".into(), "k3y-value".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t-token") && !shown.contains("k3y-value"), "{shown}");
        assert!(shown.contains("serviceAccount"), "public keys stay visible: {shown}");
    }
}
