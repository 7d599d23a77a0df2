//! The `azure` provider: Entra ID access tokens for AKS (and other Entra-protected clusters) as the
//! application's Azure identity.
//!
//! The token is for the scope `6dae42f8-4368-4678-94ff-3960e28e3630/.default` (AKS's server application), or the
//! cluster's `kubernetes.io/azure-scope`.
//!
//! The credential source is the cluster's `kubernetes.io/azure-credential` when set (one of [`Source`]'s names),
//! else the first available, in this order (like the other Azure SDKs' `DefaultAzureCredential`):
//! 1. `clientSecret`: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`;
//!    `clientCertificate`: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_CERTIFICATE_PATH` (a PEM file with
//!    the certificate and its RSA key);
//! 2. `workloadIdentity`: `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` (AKS workload identity);
//! 3. `managedIdentity`: only where the environment says there is one (`IDENTITY_ENDPOINT` or `MSI_ENDPOINT`); on a
//!    virtual machine, select it explicitly: it is never probed blindly;
//! 4. `azureCli`: `az` on the PATH (`az login`);
//! 5. `azureDeveloperCli`: `azd` on the PATH (`azd auth login`).
//!
//! A source that is not configured says why and the next is tried; one that is configured and fails stops with
//! its error. Tokens are cached per (source, scope), asked for again 15 minutes before they expire by one caller
//! while the others keep the current one (the SDK's own caching credentials then hand out their current token
//! until 5 minutes before expiry), kept while still valid if a refresh fails, and each fetch is limited to 10
//! seconds.

mod aks;
mod certificate;

pub use aks::{AKS_USER_SCOPE, AksProvider};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::credentials::TokenCredential;
use kubeauth_core::{
    ClusterDetails, Credential, CredentialFuture, Error, KeyedCredentialCache, ServerSideProvider, ValidationIssue,
    metadata,
};
use tracing::Instrument as _;

/// The provider key, as written in `authProvider`.
pub const KEY: &str = "azure";

/// The AKS server application's scope: what `kubelogin` and Backstage ask for.
pub const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/// kubeauth: the credential source of a cluster (see [`Source`]).
pub const CREDENTIAL: &str = "kubernetes.io/azure-credential";

/// kubeauth: the client id of a user-assigned managed identity.
pub const MANAGED_IDENTITY_CLIENT_ID: &str = "kubernetes.io/azure-managed-identity-client-id";
/// kubeauth: the object (principal) id of a user-assigned managed identity.
pub const MANAGED_IDENTITY_OBJECT_ID: &str = "kubernetes.io/azure-managed-identity-object-id";
/// kubeauth: the Azure resource id of a user-assigned managed identity.
pub const MANAGED_IDENTITY_RESOURCE_ID: &str = "kubernetes.io/azure-managed-identity-resource-id";

/// Which user-assigned managed identity a cluster names, if any: (metadata key, id).
fn managed_identity(cluster: &ClusterDetails) -> Option<(&'static str, &str)> {
    [MANAGED_IDENTITY_CLIENT_ID, MANAGED_IDENTITY_OBJECT_ID, MANAGED_IDENTITY_RESOURCE_ID]
        .into_iter()
        .find_map(|key| cluster.auth_metadata.get(key).map(|id| (key, id.as_str())))
}

/// Tokens are replaced this long before they expire (as Backstage does).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

/// How long one token request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A service principal's client secret from the environment.
    ClientSecret,
    /// A service principal's client certificate from the environment.
    ClientCertificate,
    /// A federated token file (AKS workload identity).
    WorkloadIdentity,
    /// The managed identity of the host.
    ManagedIdentity,
    /// The Azure CLI's signed-in account.
    AzureCli,
    /// The Azure Developer CLI's signed-in account.
    AzureDeveloperCli,
}

impl Source {
    /// Every source, in the automatic order.
    pub const ALL: [Source; 6] = [
        Self::ClientSecret,
        Self::ClientCertificate,
        Self::WorkloadIdentity,
        Self::ManagedIdentity,
        Self::AzureCli,
        Self::AzureDeveloperCli,
    ];

    /// The name used in `kubernetes.io/azure-credential`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientSecret => "clientSecret",
            Self::ClientCertificate => "clientCertificate",
            Self::WorkloadIdentity => "workloadIdentity",
            Self::ManagedIdentity => "managedIdentity",
            Self::AzureCli => "azureCli",
            Self::AzureDeveloperCli => "azureDeveloperCli",
        }
    }

    /// The source called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The SDK credentials made so far, per source and managed identity (`key=id`).
type Built = HashMap<(Source, Option<String>), Arc<dyn TokenCredential>>;

/// The `azure` provider. See the [crate docs](crate).
pub struct AzureProvider {
    env: Lookup,
    client_options: azure_core::http::ClientOptions,
    given: HashMap<Source, Arc<dyn TokenCredential>>,
    built: tokio::sync::Mutex<Built>,
    tokens: KeyedCredentialCache<(Source, Option<String>, String)>,
    timeout: Duration,
}

impl std::fmt::Debug for AzureProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProvider").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// Settings of an [`AzureProvider`].
pub struct AzureProviderBuilder {
    env: Lookup,
    client_options: azure_core::http::ClientOptions,
    given: HashMap<Source, Arc<dyn TokenCredential>>,
    timeout: Duration,
}

impl std::fmt::Debug for AzureProviderBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureProviderBuilder").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl AzureProviderBuilder {
    /// Read the `AZURE_*` variables (and `PATH`) through `env` instead of the process environment.
    pub fn env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// HTTP options of the Azure SDK's credentials (a custom cloud's authority host, a transport).
    pub fn client_options(mut self, options: azure_core::http::ClientOptions) -> Self {
        self.client_options = options;
        self
    }

    /// Use `credential` for `source` (for instance a credential type of your own); it counts as configured.
    pub fn credential(mut self, source: Source, credential: Arc<dyn TokenCredential>) -> Self {
        self.given.insert(source, credential);
        self
    }

    /// How long one token request may take (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The provider.
    pub fn build(self) -> AzureProvider {
        AzureProvider {
            env: self.env,
            client_options: self.client_options,
            given: self.given,
            built: tokio::sync::Mutex::new(HashMap::new()),
            tokens: KeyedCredentialCache::new(REFRESH_MARGIN),
            timeout: self.timeout,
        }
    }
}

impl Default for AzureProvider {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl AzureProvider {
    /// Settings; the default reads the process environment.
    pub fn builder() -> AzureProviderBuilder {
        AzureProviderBuilder {
            env: Arc::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
            client_options: azure_core::http::ClientOptions::default(),
            given: HashMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    fn on_path(&self, program: &str) -> bool {
        self.var("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    }

    /// `Ok(())` if `source` is configured here, else what it lacks.
    fn available(&self, source: Source) -> Result<(), String> {
        if self.given.contains_key(&source) {
            return Ok(());
        }
        let need = |vars: &[&str]| {
            let missing: Vec<&str> = vars.iter().copied().filter(|v| self.var(v).is_none()).collect();
            if missing.is_empty() { Ok(()) } else { Err(format!("{} not set", missing.join(", "))) }
        };
        match source {
            Source::ClientSecret => need(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]),
            Source::ClientCertificate => need(&["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERTIFICATE_PATH"]),
            Source::WorkloadIdentity => need(&["AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"]),
            Source::ManagedIdentity => {
                if self.var("IDENTITY_ENDPOINT").is_some() || self.var("MSI_ENDPOINT").is_some() {
                    Ok(())
                } else {
                    Err("no IDENTITY_ENDPOINT or MSI_ENDPOINT (select managedIdentity explicitly on a virtual machine)"
                        .into())
                }
            }
            Source::AzureCli => {
                if self.on_path("az") {
                    Ok(())
                } else {
                    Err("az is not on the PATH".into())
                }
            }
            Source::AzureDeveloperCli => {
                if self.on_path("azd") {
                    Ok(())
                } else {
                    Err("azd is not on the PATH".into())
                }
            }
        }
    }

    /// The source for `cluster`: its `kubernetes.io/azure-credential`, else the first available.
    fn source(&self, cluster: &ClusterDetails) -> Result<Source, Error> {
        if let Some(name) = cluster.auth_metadata.get(CREDENTIAL) {
            let source = Source::from_name(name).ok_or_else(|| Error::Config {
                cluster: cluster.name.clone(),
                key: format!("authMetadata.{CREDENTIAL}"),
                message: format!("`{name}` is not a credential source"),
            })?;
            // Chosen by config: not being configured is this cluster's error, not a reason to try another.
            return self.available(source).map(|()| source).map_err(|reason| Error::Config {
                cluster: cluster.name.clone(),
                key: format!("authMetadata.{CREDENTIAL}"),
                message: format!("{} is selected but not configured: {reason}", source.name()),
            });
        }
        let mut tried = Vec::new();
        for source in Source::ALL {
            match self.available(source) {
                Ok(()) => return Ok(source),
                Err(reason) => tried.push(format!("{}: {reason}", source.name())),
            }
        }
        Err(Error::NotConfigured {
            cluster: cluster.name.clone(),
            provider: KEY.into(),
            reason: format!("no Azure credential source is configured ({})", tried.join("; ")),
        })
    }

    async fn credential_for(
        &self,
        source: Source,
        managed_id: Option<(&str, &str)>,
    ) -> azure_core::Result<Arc<dyn TokenCredential>> {
        if let Some(given) = self.given.get(&source) {
            return Ok(given.clone());
        }
        let key = (source, managed_id.map(|(k, id)| format!("{k}={id}")));
        let mut built = self.built.lock().await;
        if let Some(credential) = built.get(&key) {
            return Ok(credential.clone());
        }
        let var = |name: &str| self.var(name).unwrap_or_default();
        let credential: Arc<dyn TokenCredential> = match source {
            Source::ClientSecret => {
                let options =
                    azure_identity::ClientSecretCredentialOptions { client_options: self.client_options.clone() };
                azure_identity::ClientSecretCredential::new(
                    &var("AZURE_TENANT_ID"),
                    var("AZURE_CLIENT_ID"),
                    var("AZURE_CLIENT_SECRET").into(),
                    Some(options),
                )?
            }
            Source::ClientCertificate => {
                let tenant = var("AZURE_TENANT_ID");
                let path = var("AZURE_CLIENT_CERTIFICATE_PATH");
                let pem_text = std::fs::read_to_string(&path).map_err(|e| {
                    azure_core::Error::with_message(
                        azure_core::error::ErrorKind::Credential,
                        format!("AZURE_CLIENT_CERTIFICATE_PATH `{path}`: {e}"),
                    )
                })?;
                let audience = format!("{}/{tenant}/oauth2/v2.0/token", self.authority_host());
                let assertion = certificate::CertificateAssertion::new(&var("AZURE_CLIENT_ID"), audience, &pem_text)
                    .map_err(|e| {
                        azure_core::Error::with_message(
                            azure_core::error::ErrorKind::Credential,
                            format!("AZURE_CLIENT_CERTIFICATE_PATH `{path}` {e}"),
                        )
                    })?;
                let options =
                    azure_identity::ClientAssertionCredentialOptions { client_options: self.client_options.clone() };
                azure_identity::ClientAssertionCredential::new(
                    tenant,
                    var("AZURE_CLIENT_ID"),
                    assertion,
                    Some(options),
                )?
            }
            Source::WorkloadIdentity => {
                let mut options = azure_identity::WorkloadIdentityCredentialOptions::default();
                options.credential_options.client_options = self.client_options.clone();
                options.client_id = Some(var("AZURE_CLIENT_ID"));
                options.tenant_id = Some(var("AZURE_TENANT_ID"));
                options.token_file_path = Some(var("AZURE_FEDERATED_TOKEN_FILE").into());
                azure_identity::WorkloadIdentityCredential::new(Some(options))?
            }
            Source::ManagedIdentity => {
                let options = azure_identity::ManagedIdentityCredentialOptions {
                    client_options: self.client_options.clone(),
                    user_assigned_id: managed_id.map(|(key, id)| match key {
                        MANAGED_IDENTITY_OBJECT_ID => azure_identity::UserAssignedId::ObjectId(id.to_owned()),
                        MANAGED_IDENTITY_RESOURCE_ID => azure_identity::UserAssignedId::ResourceId(id.to_owned()),
                        _ => azure_identity::UserAssignedId::ClientId(id.to_owned()),
                    }),
                };
                azure_identity::ManagedIdentityCredential::new(Some(options))?
            }
            Source::AzureCli => azure_identity::AzureCliCredential::new(None)?,
            Source::AzureDeveloperCli => azure_identity::AzureDeveloperCliCredential::new(None)?,
        };
        built.insert(key, credential.clone());
        Ok(credential)
    }

    /// The authority host the SDK sends token requests to: a custom cloud's, else `AZURE_AUTHORITY_HOST`, else
    /// Entra's public one.
    fn authority_host(&self) -> String {
        let custom = self.client_options.cloud.as_deref().and_then(|cloud| match cloud {
            azure_core::cloud::CloudConfiguration::Custom(c) => Some(c.authority_host.clone()),
            _ => None,
        });
        custom
            .or_else(|| self.var("AZURE_AUTHORITY_HOST"))
            .unwrap_or_else(|| "https://login.microsoftonline.com".into())
            .trim_end_matches('/')
            .to_owned()
    }

    async fn fetch(
        &self,
        cluster: &ClusterDetails,
        source: Source,
        managed_id: Option<(&str, &str)>,
        scope: &str,
    ) -> Result<Credential, Error> {
        let failed = |message: String| Error::Provider {
            cluster: cluster.name.clone(),
            provider: KEY.into(),
            source: message.into(),
        };
        let request = async {
            let credential =
                self.credential_for(source, managed_id).await.map_err(|e| failed(format!("{}: {e}", source.name())))?;
            credential
                .get_token(&[scope], None)
                .await
                .map_err(|e| failed(format!("{} could not get a token for {scope}: {e}", source.name())))
        };
        let token = tokio::time::timeout(self.timeout, request).await.map_err(|_| Error::Timeout {
            cluster: cluster.name.clone(),
            provider: KEY.into(),
            seconds: self.timeout.as_secs().max(1),
        })??;
        Ok(Credential::bearer_until(token.token.secret(), SystemTime::from(token.expires_on)))
    }
}

impl ServerSideProvider for AzureProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move {
            let scope = cluster.auth_metadata.get(metadata::AZURE_SCOPE).map(String::as_str).unwrap_or(AKS_SCOPE);
            let source = self.source(cluster)?;
            let managed_id = managed_identity(cluster);
            let span = tracing::debug_span!("azure", cluster = %cluster.name, source = source.name(), %scope);
            let cache = self.tokens.cache((source, managed_id.map(|(k, id)| format!("{k}={id}")), scope.to_owned()));
            Ok(cache.get(|| self.fetch(cluster, source, managed_id, scope)).instrument(span).await?.credential)
        })
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        let mut issues = Vec::new();
        if let Some(name) = cluster.auth_metadata.get(CREDENTIAL)
            && Source::from_name(name).is_none()
        {
            let names: Vec<&str> = Source::ALL.iter().map(|s| s.name()).collect();
            issues.push(ValidationIssue::new(
                format!("authMetadata.{CREDENTIAL}"),
                format!("`{name}` is not a credential source; one of {}", names.join(", ")),
            ));
        }
        let ids = [MANAGED_IDENTITY_CLIENT_ID, MANAGED_IDENTITY_OBJECT_ID, MANAGED_IDENTITY_RESOURCE_ID]
            .into_iter()
            .filter(|k| cluster.auth_metadata.contains_key(*k))
            .count();
        if ids > 1 {
            issues.push(ValidationIssue::new(
                format!("authMetadata.{MANAGED_IDENTITY_CLIENT_ID}"),
                "name the managed identity once: by client id, object id or resource id",
            ));
        }
        if let Some(scope) = cluster.auth_metadata.get(metadata::AZURE_SCOPE)
            && (scope.trim().is_empty() || scope.contains(char::is_whitespace))
        {
            issues.push(ValidationIssue::new(
                format!("authMetadata.{}", metadata::AZURE_SCOPE),
                "must be one scope, like <app id>/.default",
            ));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use azure_core::credentials::{AccessToken, TokenRequestOptions};
    use kubeauth_core::ExposeSecret as _;

    use super::*;

    /// A token credential that counts its requests, remembers their scopes, and can be told to fail or hang.
    #[derive(Debug, Default)]
    struct Scripted {
        requests: AtomicUsize,
        scopes: Mutex<Vec<String>>,
        lifetime_secs: i64,
        fail_after: Option<usize>,
        hang: bool,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Scripted {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = self.requests.fetch_add(1, Ordering::SeqCst);
            self.scopes.lock().unwrap().extend(scopes.iter().map(|s| (*s).to_owned()));
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.fail_after.is_some_and(|after| n >= after) {
                return Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Other,
                    "Entra ID answered 503",
                ));
            }
            // Let every concurrent caller queue up behind this request.
            tokio::task::yield_now().await;
            let expires =
                azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::seconds(self.lifetime_secs);
            Ok(AccessToken::new(format!("entra-token-{n}"), expires))
        }
    }

    fn cluster(md: &[(&str, &str)]) -> ClusterDetails {
        let mut c = ClusterDetails::new("aks-prod", "https://aks-prod.hcp.westeurope.azmk8s.io:443");
        c.set_auth_provider(KEY);
        for (k, v) in md {
            c.auth_metadata.insert((*k).into(), (*v).into());
        }
        c
    }

    fn provider(credential: Arc<Scripted>) -> AzureProvider {
        AzureProvider::builder()
            .env(|_| None)
            .credential(Source::AzureCli, credential)
            .timeout(Duration::from_millis(300))
            .build()
    }

    fn token(c: &Credential) -> String {
        match c {
            Credential::BearerToken { token, .. } => token.expose_secret().to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_thousand_concurrent_callers_make_one_token_request() {
        let scripted = Arc::new(Scripted { lifetime_secs: 3600, ..Default::default() });
        let provider = Arc::new(provider(scripted.clone()));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let provider = provider.clone();
                tokio::spawn(async move { provider.credential(&cluster(&[])).await.map(|c| token(&c)) })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "entra-token-0");
        }
        assert_eq!(scripted.requests.load(Ordering::SeqCst), 1);
        assert_eq!(*scripted.scopes.lock().unwrap(), [AKS_SCOPE]);
    }

    #[tokio::test]
    async fn a_token_inside_the_15_minute_margin_is_refreshed() {
        // Ten minutes left: inside the margin, so every call asks again.
        let scripted = Arc::new(Scripted { lifetime_secs: 600, ..Default::default() });
        let provider = provider(scripted.clone());
        let first = provider.credential(&cluster(&[])).await.unwrap();
        let second = provider.credential(&cluster(&[])).await.unwrap();
        assert_eq!((token(&first), token(&second)), ("entra-token-0".into(), "entra-token-1".into()));
        let left = first.expires_at().unwrap().duration_since(SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600), "the real expiry: {left:?}");
    }

    #[tokio::test]
    async fn the_last_good_token_is_kept_while_valid_when_a_refresh_fails() {
        let scripted = Arc::new(Scripted { lifetime_secs: 600, fail_after: Some(1), ..Default::default() });
        let provider = provider(scripted.clone());
        let first = provider.credential(&cluster(&[])).await.unwrap();
        let kept = provider.credential(&cluster(&[])).await.unwrap();
        assert_eq!(token(&kept), token(&first));
        assert_eq!(scripted.requests.load(Ordering::SeqCst), 2, "the refresh was tried");
    }

    #[tokio::test]
    async fn a_hanging_token_request_times_out_naming_the_cluster() {
        let scripted = Arc::new(Scripted { hang: true, ..Default::default() });
        let err = provider(scripted).credential(&cluster(&[])).await.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(err.to_string().starts_with("cluster 'aks-prod': the azure provider did not answer within"), "{err}");
    }

    #[tokio::test]
    async fn the_scope_can_be_overridden_per_cluster_and_is_cached_apart() {
        let scripted = Arc::new(Scripted { lifetime_secs: 3600, ..Default::default() });
        let provider = provider(scripted.clone());
        provider.credential(&cluster(&[])).await.unwrap();
        provider.credential(&cluster(&[(metadata::AZURE_SCOPE, "api://my-cluster/.default")])).await.unwrap();
        assert_eq!(*scripted.scopes.lock().unwrap(), [AKS_SCOPE, "api://my-cluster/.default"]);
    }

    #[tokio::test]
    async fn sources_are_chosen_in_order_and_each_says_what_it_lacks() {
        let none = AzureProvider::builder().env(|_| None).build();
        let err = none.credential(&cluster(&[])).await.unwrap_err();
        assert!(err.is_not_configured(), "{err}");
        let text = err.to_string();
        for expected in [
            "clientSecret: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set",
            "clientCertificate: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_CERTIFICATE_PATH not set",
            "workloadIdentity: AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID not set",
            "managedIdentity: no IDENTITY_ENDPOINT or MSI_ENDPOINT",
            "azureCli: az is not on the PATH",
            "azureDeveloperCli: azd is not on the PATH",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }

        let env = |vars: &'static [(&'static str, &'static str)]| {
            AzureProvider::builder()
                .env(move |n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| (*v).to_owned()))
                .build()
        };
        let secret = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("IDENTITY_ENDPOINT", "http://x"),
        ]);
        assert_eq!(secret.source(&cluster(&[])).unwrap(), Source::ClientSecret);
        let managed = env(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"), ("AZURE_CLIENT_ID", "c")]);
        assert_eq!(managed.source(&cluster(&[])).unwrap(), Source::ManagedIdentity);

        // Chosen in config but not configured: that cluster's config error, no fallback.
        let err = managed.source(&cluster(&[(CREDENTIAL, "workloadIdentity")])).unwrap_err().to_string();
        assert_eq!(
            err,
            "cluster 'aks-prod': authMetadata.kubernetes.io/azure-credential: workloadIdentity is selected but not configured: AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID not set"
        );
    }

    #[test]
    fn a_managed_identity_is_named_once() {
        let provider = AzureProvider::builder().env(|_| None).build();
        let c = cluster(&[(MANAGED_IDENTITY_CLIENT_ID, "a"), (MANAGED_IDENTITY_RESOURCE_ID, "/subscriptions/x")]);
        assert_eq!(provider.validate_cluster(&c)[0].key, "authMetadata.kubernetes.io/azure-managed-identity-client-id");
        assert_eq!(
            managed_identity(&cluster(&[(MANAGED_IDENTITY_OBJECT_ID, "o")])),
            Some((MANAGED_IDENTITY_OBJECT_ID, "o"))
        );
    }

    #[test]
    fn an_unknown_credential_source_is_a_config_error() {
        let issues =
            AzureProvider::builder().env(|_| None).build().validate_cluster(&cluster(&[(CREDENTIAL, "devicecode")]));
        assert_eq!(issues[0].key, "authMetadata.kubernetes.io/azure-credential");
        assert!(
            issues[0].message.contains("one of clientSecret, clientCertificate, workloadIdentity"),
            "{}",
            issues[0].message
        );
    }
}
