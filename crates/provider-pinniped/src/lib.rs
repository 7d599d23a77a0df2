//! The `pinniped` providers: a token the cluster's [Pinniped](https://pinniped.dev) Concierge trusts, exchanged
//! for a short-lived client certificate of the cluster.
//!
//! The Concierge's `TokenCredentialRequest` API (`login.concierge.pinniped.dev/v1alpha1`, cluster-scoped) takes
//! a token and the authenticator that vouches for it (a `JWTAuthenticator` or a `WebhookAuthenticator` of
//! `authentication.concierge.pinniped.dev`) and answers with a client certificate and key (PEM) and their
//! expiry, typically five minutes. The request is made without a credential, as the `pinniped` command makes it;
//! the certificate is presented in the TLS handshake with the API server.
//!
//! - [`PinnipedProvider`] (`pinniped`, client side): the token is the signed-in user's OIDC ID token, the one the
//!   `oidc` provider would send (`auth.oidc.<oidcTokenProvider>`), so `kubeauth login` and Backstage frontends
//!   that send an oidc token serve it.
//! - [`PinnipedServerProvider`] (`pinnipedServer`, server side): the token is the cluster's
//!   `serviceAccountToken`, the application's own (for a `WebhookAuthenticator`, or a long-lived JWT).
//!
//! The cluster's auth metadata says where and with what: `kubernetes.io/pinniped-authenticator`
//! (`JWTAuthenticator/<name>`, required), `kubernetes.io/pinniped-concierge-endpoint` (default: the cluster's
//! URL, where the Concierge's aggregated API is served), `kubernetes.io/pinniped-concierge-ca-data` (default:
//! the cluster's CA), `kubernetes.io/pinniped-api-group-suffix` (default `pinniped.dev`).
//!
//! Certificates are kept per cluster (as located: name, URL, Concierge) and token until a minute before they expire: one exchange per user and
//! cluster every few minutes, however many requests.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use kubeauth_core::{
    ClientSideProvider, ClusterDetails, Credential, CredentialFuture, Error, ExposeSecret as _, KeyedCredentialCache,
    LoginName, RequestAuth, ServerSideProvider, ValidationIssue, metadata,
};
use sha2::{Digest as _, Sha256};

/// How long before its expiry a certificate is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How often certificates that expired are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The largest answer read from a Concierge (a certificate and key are a few KiB).
const MAX_ANSWER: usize = 256 * 1024;
/// How long the Concierge may take to answer.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The exchange both providers share: the Concierge's HTTP clients and the certificates got.
struct Exchange {
    provider: &'static str,
    certificates: KeyedCredentialCache<[u8; 32]>,
    clients: Mutex<HashMap<(String, Option<String>), reqwest::Client>>,
    pruned: Mutex<Instant>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").field("provider", &self.provider).finish_non_exhaustive()
    }
}

/// Where and with what a cluster's token is exchanged.
struct Target {
    endpoint: String,
    ca_pem: Option<Vec<u8>>,
    authenticator_kind: String,
    authenticator_name: String,
    suffix: String,
}

impl Exchange {
    fn new(provider: &'static str) -> Self {
        Self {
            provider,
            certificates: KeyedCredentialCache::new(REFRESH_MARGIN),
            clients: Mutex::new(HashMap::new()),
            pruned: Mutex::new(Instant::now()),
        }
    }

    /// The cluster's certificate for `token`: the kept one while it is fresh, else a new exchange.
    async fn certificate(&self, cluster: &ClusterDetails, token: &str) -> Result<Credential, Error> {
        // Per cluster as located (a cluster found again at another address or Concierge gets its own) and token.
        let mut key = Sha256::new();
        for part in [
            cluster.name.as_str(),
            cluster.url.as_str(),
            cluster.auth_metadata.get(metadata::PINNIPED_CONCIERGE_ENDPOINT).map_or("", String::as_str),
            cluster.auth_metadata.get(metadata::PINNIPED_AUTHENTICATOR).map_or("", String::as_str),
            token,
        ] {
            key.update(part.as_bytes());
            key.update([0]);
        }
        let key: [u8; 32] = key.finalize().into();
        // Users come and go: their expired certificates are dropped, at most once a minute.
        {
            let mut pruned = self.pruned.lock().unwrap_or_else(PoisonError::into_inner);
            if pruned.elapsed() >= PRUNE_EVERY {
                *pruned = Instant::now();
                self.certificates.retain_valid();
            }
        }
        let cache = self.certificates.cache(key);
        let cached = cache.get(|| self.exchange(cluster, token)).await?;
        Ok(cached.credential)
    }

    fn target(cluster: &ClusterDetails) -> Result<Target, Vec<ValidationIssue>> {
        let get = |key: &str| cluster.auth_metadata.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut issues = Vec::new();
        let authenticator = format!("authMetadata.{}", metadata::PINNIPED_AUTHENTICATOR);
        let (authenticator_kind, authenticator_name) =
            match get(metadata::PINNIPED_AUTHENTICATOR).map(|a| a.split_once('/').unwrap_or(("", a))) {
                Some((kind @ ("JWTAuthenticator" | "WebhookAuthenticator"), name)) if !name.is_empty() => {
                    (kind.to_owned(), name.to_owned())
                }
                Some(_) => {
                    issues.push(ValidationIssue::new(
                        &authenticator,
                        "must be `JWTAuthenticator/<name>` or `WebhookAuthenticator/<name>`",
                    ));
                    Default::default()
                }
                None => {
                    issues.push(ValidationIssue::new(
                    &authenticator,
                    "missing: the Concierge authenticator that vouches for the token, e.g. `JWTAuthenticator/corp-sso`",
                ));
                    Default::default()
                }
            };
        let endpoint = get(metadata::PINNIPED_CONCIERGE_ENDPOINT).unwrap_or(&cluster.url).trim_end_matches('/');
        if !endpoint.starts_with("https://") {
            issues.push(ValidationIssue::new(
                format!("authMetadata.{}", metadata::PINNIPED_CONCIERGE_ENDPOINT),
                format!("`{endpoint}` is not an https:// URL: the token must not travel in clear"),
            ));
        }
        let ca_pem = match get(metadata::PINNIPED_CONCIERGE_CA_DATA) {
            Some(data) => {
                let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
                match base64::engine::general_purpose::STANDARD.decode(compact) {
                    Ok(pem) => Some(pem),
                    Err(e) => {
                        issues.push(ValidationIssue::new(
                            format!("authMetadata.{}", metadata::PINNIPED_CONCIERGE_CA_DATA),
                            format!("not valid base64 ({e})"),
                        ));
                        None
                    }
                }
            }
            // The Concierge at another address has its own CA (or a public one); at the cluster's, the cluster's.
            None if get(metadata::PINNIPED_CONCIERGE_ENDPOINT).is_some() => None,
            // The cluster's own checks name a CA that does not read.
            None => cluster.ca_pem().ok().flatten(),
        };
        let suffix = get(metadata::PINNIPED_API_GROUP_SUFFIX).unwrap_or("pinniped.dev").to_owned();
        if issues.is_empty() {
            Ok(Target { endpoint: endpoint.to_owned(), ca_pem, authenticator_kind, authenticator_name, suffix })
        } else {
            Err(issues)
        }
    }

    fn client(&self, target: &Target) -> Result<reqwest::Client, String> {
        let key = (target.endpoint.clone(), target.ca_pem.as_ref().map(|p| String::from_utf8_lossy(p).into_owned()));
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("kubeauth/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &target.ca_pem {
            // A cluster's CA is the only one trusted for it, as for the API server's own connections.
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("the Concierge's CA: {e}"))?;
            builder = builder.tls_certs_only(certificates);
        }
        let client = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    async fn exchange(&self, cluster: &ClusterDetails, token: &str) -> Result<Credential, Error> {
        let target =
            Self::target(cluster).map_err(|issues| Error::InvalidCluster { cluster: cluster.name.clone(), issues })?;
        let failed = |message: String| Error::Provider {
            cluster: cluster.name.clone(),
            provider: self.provider.to_owned(),
            source: message.into(),
        };
        let client = self.client(&target).map_err(failed)?;
        let url =
            format!("{}/apis/login.concierge.{}/v1alpha1/tokencredentialrequests", target.endpoint, target.suffix);
        let request = serde_json::json!({
            "apiVersion": format!("login.concierge.{}/v1alpha1", target.suffix),
            "kind": "TokenCredentialRequest",
            "metadata": {},
            "spec": {
                "token": token,
                "authenticator": {
                    "apiGroup": format!("authentication.concierge.{}", target.suffix),
                    "kind": target.authenticator_kind,
                    "name": target.authenticator_name,
                },
            },
        });
        tracing::debug!(cluster = %cluster.name, endpoint = %target.endpoint, "exchanging a token at the Pinniped Concierge");
        let mut response =
            client.post(&url).header("accept", "application/json").json(&request).send().await.map_err(|e| {
                failed(format!("the Concierge at {} did not answer: {}", target.endpoint, kubeauth_core::report(&e)))
            })?;
        let status = response.status();
        // The endpoint may be a catalog entity's cluster URL: its answer is read up to a bound.
        let mut body = Vec::new();
        while let Some(chunk) =
            response.chunk().await.map_err(|e| failed(format!("reading the Concierge's answer: {e}")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(failed(format!("the Concierge's answer is larger than {} KiB", MAX_ANSWER / 1024)));
            }
            body.extend_from_slice(&chunk);
        }
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        // A Kubernetes Status (403, 404: no Concierge there) or the request's own status.
        let message = answer
            .pointer("/status/message")
            .or_else(|| answer.get("message"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let credential = answer.pointer("/status/credential");
        if !status.is_success() || credential.is_none() {
            let message = if message.is_empty() { "no credential in the answer".to_owned() } else { message };
            return Err(failed(format!(
                "the Concierge refused the token ({} {}): {message}",
                status.as_u16(),
                status.canonical_reason().unwrap_or_default()
            )));
        }
        let field = |name: &str| credential.and_then(|c| c.get(name)).and_then(serde_json::Value::as_str);
        let (Some(certificate), Some(key)) = (field("clientCertificateData"), field("clientKeyData")) else {
            return Err(failed("the Concierge's credential has no client certificate and key".into()));
        };
        let mut credential = Credential::client_certificate(certificate, key);
        if let Some(at) = field("expirationTimestamp") {
            let at: jiff::Timestamp =
                at.parse().map_err(|e| failed(format!("expirationTimestamp `{at}` is not RFC 3339: {e}")))?;
            credential = credential.with_expiry(SystemTime::from(at));
        }
        Ok(credential)
    }
}

/// The `pinniped` provider (client side): the signed-in user's OIDC ID token exchanged for a cluster certificate.
/// See the [crate docs](crate).
#[derive(Debug)]
pub struct PinnipedProvider {
    exchange: Exchange,
}

impl Default for PinnipedProvider {
    fn default() -> Self {
        Self { exchange: Exchange::new(Self::KEY) }
    }
}

impl PinnipedProvider {
    /// The provider's key (`authProvider: pinniped`).
    pub const KEY: &'static str = "pinniped";
}

fn token_provider(cluster: &ClusterDetails) -> Option<&str> {
    cluster.oidc_token_provider().filter(|p| !p.trim().is_empty())
}

impl ClientSideProvider for PinnipedProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails, auth: &'a RequestAuth) -> CredentialFuture<'a> {
        Box::pin(async move {
            let login = self.user_login(cluster).ok_or_else(|| {
                Error::config("oidcTokenProvider", "missing: which OIDC provider's ID token the Concierge trusts")
            })?;
            let Credential::BearerToken { token, .. } = auth.user_credential(cluster, &login)? else {
                return Err(Error::config("oidcTokenProvider", "the user's token is not a bearer token"));
            };
            self.exchange.certificate(cluster, token.expose_secret()).await
        })
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        let mut issues = Exchange::target(cluster).err().unwrap_or_default();
        if token_provider(cluster).is_none() {
            issues.push(ValidationIssue::new(
                "oidcTokenProvider",
                "missing: authProvider pinniped exchanges the user's OIDC ID token of this provider, e.g. `oidcTokenProvider: okta`",
            ));
        }
        issues
    }

    fn present_auth_metadata(&self, cluster: &ClusterDetails) -> std::collections::BTreeMap<String, String> {
        // What a frontend needs to send the right token; the Concierge's settings stay on the server.
        token_provider(cluster)
            .map(|p| std::collections::BTreeMap::from([(metadata::OIDC_TOKEN_PROVIDER.to_owned(), p.to_owned())]))
            .unwrap_or_default()
    }

    fn user_login(&self, cluster: &ClusterDetails) -> Option<LoginName> {
        token_provider(cluster).map(|p| LoginName::with_sub("oidc", p))
    }
}

/// The `pinnipedServer` provider (server side): the cluster's `serviceAccountToken` exchanged for a cluster
/// certificate. See the [crate docs](crate).
#[derive(Debug)]
pub struct PinnipedServerProvider {
    exchange: Exchange,
}

impl Default for PinnipedServerProvider {
    fn default() -> Self {
        Self { exchange: Exchange::new(Self::KEY) }
    }
}

impl PinnipedServerProvider {
    /// The provider's key (`authProvider: pinnipedServer`).
    pub const KEY: &'static str = "pinnipedServer";
}

impl ServerSideProvider for PinnipedServerProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move {
            let token = cluster
                .service_account_token
                .as_ref()
                .ok_or_else(|| Error::config("serviceAccountToken", "missing: the token the Concierge exchanges"))?;
            self.exchange.certificate(cluster, token.expose_secret()).await
        })
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        let mut issues = Exchange::target(cluster).err().unwrap_or_default();
        if cluster.service_account_token.is_none() {
            issues.push(ValidationIssue::new(
                "serviceAccountToken",
                "missing: authProvider pinnipedServer exchanges this token (the application's) with the Concierge",
            ));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(metadata: &[(&str, &str)]) -> ClusterDetails {
        let mut c = ClusterDetails::new("dev", "https://dev.example.com:6443");
        c.set_auth_provider(PinnipedProvider::KEY);
        for (k, v) in metadata {
            c.auth_metadata.insert((*k).into(), (*v).into());
        }
        c
    }

    #[test]
    fn the_authenticator_and_the_token_provider_are_required_and_named() {
        let issues = PinnipedProvider::default().validate_cluster(&cluster(&[]));
        let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["authMetadata.kubernetes.io/pinniped-authenticator", "oidcTokenProvider"]);
        let bad = cluster(&[
            (metadata::PINNIPED_AUTHENTICATOR, "OIDCIdentityProvider/x"),
            (metadata::OIDC_TOKEN_PROVIDER, "corp"),
        ]);
        assert!(PinnipedProvider::default().validate_cluster(&bad)[0].message.contains("JWTAuthenticator/<name>"));
        let plain = cluster(&[
            (metadata::PINNIPED_AUTHENTICATOR, "JWTAuthenticator/sso"),
            (metadata::OIDC_TOKEN_PROVIDER, "corp"),
            (metadata::PINNIPED_CONCIERGE_ENDPOINT, "http://concierge.example"),
        ]);
        let issues = PinnipedProvider::default().validate_cluster(&plain);
        assert!(issues[0].message.contains("not an https:// URL"), "{issues:?}");
    }

    #[tokio::test]
    async fn a_missing_user_token_is_that_clusters_error_and_nothing_is_sent() {
        let c = cluster(&[
            (metadata::PINNIPED_AUTHENTICATOR, "JWTAuthenticator/sso"),
            (metadata::OIDC_TOKEN_PROVIDER, "corp"),
        ]);
        let err = PinnipedProvider::default().credential(&c, &RequestAuth::none()).await.unwrap_err();
        assert!(err.to_string().contains("auth.oidc.corp"), "{err}");
    }
}
