use std::collections::BTreeMap;
use std::sync::Arc;

use kubeauth_core::{
    ClientSideProvider, ClusterDetails, Credential, Error as AuthError, LoginName, LoginPreset, ProviderSide,
    RequestAuth, ServerSideProvider, ValidationIssue,
};
use tracing::Instrument as _;

use crate::RegistryError;

/// A registered provider, server side or client side.
///
/// ```
/// use kubeauth::{Credential, Provider, Registry};
///
/// let mut registry = Registry::with_defaults();
/// registry.add("vault", Provider::server_fn(|cluster| async move {
///     Ok(Credential::bearer(format!("token-for-{}", cluster.name)))
/// }))?;
/// # Ok::<(), kubeauth::RegistryError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum Provider {
    /// Authenticates as the application.
    Server(Arc<dyn ServerSideProvider>),
    /// Authenticates as the signed-in user.
    Client(Arc<dyn ClientSideProvider>),
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Server(_) => "Provider::Server",
            Self::Client(_) => "Provider::Client",
        })
    }
}

impl Provider {
    /// A server-side provider.
    pub fn server(provider: impl ServerSideProvider) -> Self {
        Self::Server(Arc::new(provider))
    }

    /// A client-side provider.
    pub fn client(provider: impl ClientSideProvider) -> Self {
        Self::Client(Arc::new(provider))
    }

    /// A server-side provider from an async function of the cluster (see [`kubeauth_core::server_side_fn`]).
    pub fn server_fn<F, Fut>(fetch: F) -> Self
    where
        F: Fn(ClusterDetails) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Credential, AuthError>> + Send + 'static,
    {
        Self::server(kubeauth_core::server_side_fn(fetch))
    }

    /// A client-side provider from an async function of the cluster and the user's request auth (see
    /// [`kubeauth_core::client_side_fn`]).
    pub fn client_fn<F, Fut>(fetch: F) -> Self
    where
        F: Fn(ClusterDetails, RequestAuth) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Credential, AuthError>> + Send + 'static,
    {
        Self::client(kubeauth_core::client_side_fn(fetch))
    }

    /// Whose identity the provider presents.
    pub fn side(&self) -> ProviderSide {
        match self {
            Self::Server(_) => ProviderSide::Server,
            Self::Client(_) => ProviderSide::Client,
        }
    }

    /// Whether an anonymous credential of this provider is accepted.
    pub fn allows_anonymous(&self) -> bool {
        match self {
            Self::Server(p) => p.allows_anonymous(),
            Self::Client(p) => p.allows_anonymous(),
        }
    }

    /// The cluster as the provider reaches it, when not as located (see [`ServerSideProvider::endpoint`]).
    pub fn endpoint(&self, cluster: &ClusterDetails) -> Option<ClusterDetails> {
        match self {
            Self::Server(p) => p.endpoint(cluster),
            Self::Client(_) => None,
        }
    }

    /// The credential for `cluster` (`key` is the provider's key, for messages). Client-side providers take the
    /// user's token from `auth`; server-side ones never see it. An anonymous credential from a provider that
    /// does not allow anonymous access is an error, never a silent unauthenticated request; errors carry the
    /// cluster's and the provider's names.
    pub async fn credential(
        &self,
        key: &str,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<Credential, AuthError> {
        let credential = match self {
            Self::Server(p) => p.credential(cluster).await,
            Self::Client(p) => p.credential(cluster, auth).await,
        }
        .map_err(|e| e.named(&cluster.name, key))?;
        if matches!(credential, Credential::Anonymous) && !self.allows_anonymous() {
            return Err(AuthError::NoCredential { cluster: cluster.name.clone(), provider: key.to_owned() });
        }
        Ok(credential)
    }

    /// The provider's own checks of `cluster`.
    pub fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        match self {
            Self::Server(p) => p.validate_cluster(cluster),
            Self::Client(p) => p.validate_cluster(cluster),
        }
    }

    fn present_auth_metadata(&self, cluster: &ClusterDetails) -> BTreeMap<String, String> {
        match self {
            Self::Server(p) => p.present_auth_metadata(cluster),
            Self::Client(p) => p.present_auth_metadata(cluster),
        }
    }
}

/// The authentication providers by key (`authProvider` in the config), and nothing else: connections are the
/// [`Connector`](crate::Connector)'s, the config is read by [`Kubeauth`](crate::Kubeauth).
///
/// [`Registry::with_defaults`] holds every default provider compiled in (cargo features `service-account`,
/// `local-kubectl-proxy`, `oidc`, `google`, `aws`, `google-service-account`, `azure`, `pinniped`, `kubeconfig`,
/// all on by default). A custom provider is added beside them under its own key with [`add`](Self::add);
/// adding under a taken key is an error, and replacing a built-in takes the explicit [`replace`](Self::replace).
///
/// ```
/// use kubeauth::{Credential, Provider, Registry};
///
/// let vault = || Provider::server_fn(|_| async { Ok(Credential::bearer("from-vault")) });
/// let mut registry = Registry::with_defaults();
/// registry.add("vault", vault()).unwrap();
/// assert!(registry.add("serviceAccount", vault()).is_err(), "built-ins are kept");
/// assert!(registry.add("my-vault", vault()).is_err(), "dashes are refused");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Registry {
    providers: BTreeMap<String, Provider>,
}

impl Registry {
    /// A registry with no provider at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A registry with every default provider compiled in.
    pub fn with_defaults() -> Self {
        #[allow(unused_mut)]
        let mut providers: BTreeMap<String, Provider> = BTreeMap::new();
        #[cfg(feature = "service-account")]
        providers.insert(
            kubeauth_service_account::ServiceAccountProvider::KEY.into(),
            Provider::server(kubeauth_service_account::ServiceAccountProvider::new()),
        );
        #[cfg(feature = "local-kubectl-proxy")]
        providers.insert(
            kubeauth_local_kubectl_proxy::LocalKubectlProxyProvider::KEY.into(),
            Provider::server(kubeauth_local_kubectl_proxy::LocalKubectlProxyProvider),
        );
        #[cfg(feature = "oidc")]
        providers.insert(kubeauth_oidc::OidcProvider::KEY.into(), Provider::client(kubeauth_oidc::OidcProvider));
        #[cfg(feature = "google-service-account")]
        providers.insert(
            kubeauth_google_service_account::KEY.into(),
            Provider::server(kubeauth_google_service_account::GoogleServiceAccountProvider::default()),
        );
        #[cfg(feature = "azure")]
        providers.insert(kubeauth_azure::KEY.into(), Provider::server(kubeauth_azure::AzureProvider::default()));
        #[cfg(feature = "azure")]
        providers.insert(kubeauth_azure::AksProvider::KEY.into(), Provider::client(kubeauth_azure::AksProvider));
        #[cfg(feature = "aws")]
        providers.insert(kubeauth_aws::KEY.into(), Provider::server(kubeauth_aws::AwsProvider::new()));
        #[cfg(feature = "google")]
        providers
            .insert(kubeauth_google::GoogleProvider::KEY.into(), Provider::client(kubeauth_google::GoogleProvider));
        #[cfg(feature = "pinniped")]
        providers.insert(
            kubeauth_pinniped::PinnipedProvider::KEY.into(),
            Provider::client(kubeauth_pinniped::PinnipedProvider::default()),
        );
        #[cfg(feature = "pinniped")]
        providers.insert(
            kubeauth_pinniped::PinnipedServerProvider::KEY.into(),
            Provider::server(kubeauth_pinniped::PinnipedServerProvider::default()),
        );
        #[cfg(feature = "kubeconfig")]
        {
            use kubeauth_cluster_locator::KubeconfigProvider;
            #[cfg(feature = "login")]
            let provider = KubeconfigProvider::new().with_oidc_refresh(Arc::new(crate::login::KubeconfigOidcRefresh));
            #[cfg(not(feature = "login"))]
            let provider = KubeconfigProvider::new();
            providers.insert(KubeconfigProvider::KEY.into(), Provider::server(provider));
        }
        Self { providers }
    }

    /// Adds a provider under a new key (letters, digits and `_`).
    pub fn add(&mut self, key: impl Into<String>, provider: Provider) -> Result<&mut Self, RegistryError> {
        let key = key.into();
        check_key(&key)?;
        if self.providers.contains_key(&key) {
            return Err(RegistryError::KeyTaken { key });
        }
        self.providers.insert(key, provider);
        Ok(self)
    }

    /// Puts a provider under `key`, replacing whatever was there (a built-in too); returns the one replaced.
    pub fn replace(&mut self, key: impl Into<String>, provider: Provider) -> Result<Option<Provider>, RegistryError> {
        let key = key.into();
        check_key(&key)?;
        Ok(self.providers.insert(key, provider))
    }

    /// The registered keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// The provider under `key`.
    pub fn get(&self, key: &str) -> Option<&Provider> {
        self.providers.get(key)
    }

    /// The provider that serves `cluster`, and its key.
    pub fn provider_for<'a>(&'a self, cluster: &ClusterDetails) -> Result<(&'a str, &'a Provider), AuthError> {
        let key = cluster.auth_provider().unwrap_or_default();
        self.providers.get_key_value(key).map(|(k, p)| (k.as_str(), p)).ok_or_else(|| AuthError::UnknownAuthProvider {
            cluster: cluster.name.clone(),
            provider: key.to_owned(),
            known: self.providers.keys().cloned().collect(),
        })
    }

    /// Every problem with `cluster`: the checks that hold for all clusters, an `authProvider` with no provider,
    /// and the provider's own checks. Run before any provider sees the cluster.
    pub fn validate(&self, cluster: &ClusterDetails) -> Result<(), AuthError> {
        let mut issues = cluster.validate();
        if cluster.auth_provider().is_some_and(|p| !p.trim().is_empty()) {
            match self.provider_for(cluster) {
                Ok((_, provider)) => issues.extend(provider.validate_cluster(cluster)),
                Err(AuthError::UnknownAuthProvider { provider, known, .. }) => issues.push(ValidationIssue::new(
                    "authProvider",
                    format!(
                        "\"{provider}\" has no authentication provider registered (registered: {})",
                        known.join(", ")
                    ),
                )),
                Err(other) => return Err(other),
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(AuthError::InvalidCluster { cluster: cluster.name.clone(), issues })
        }
    }

    /// The credential for `cluster`, from the provider its `authProvider` names. Client-side providers take the
    /// user's token from `auth`; server-side ones never see it.
    pub async fn credential(&self, cluster: &ClusterDetails, auth: &RequestAuth) -> Result<Credential, AuthError> {
        let (key, provider) = self.provider_for(cluster)?;
        let span = tracing::debug_span!("credential", cluster = %cluster.name, provider = %key);
        provider.credential(key, cluster, auth).instrument(span).await
    }

    /// The auth metadata the provider allows the clusters list to show.
    pub fn present_auth_metadata(&self, cluster: &ClusterDetails) -> BTreeMap<String, String> {
        self.provider_for(cluster).map(|(_, p)| p.present_auth_metadata(cluster)).unwrap_or_default()
    }

    /// The login that gives `cluster` its user token on a workstation, when its provider is a client-side one
    /// that names one (`oidc.okta` for an oidc cluster of `oidcTokenProvider: okta`).
    pub fn user_login(&self, cluster: &ClusterDetails) -> Option<LoginName> {
        match self.provider_for(cluster).ok()?.1 {
            Provider::Client(p) => p.user_login(cluster),
            Provider::Server(_) => None,
        }
    }

    /// The defaults of the identity provider behind `login`, from the client-side provider it belongs to.
    pub fn login_preset(&self, login: &LoginName) -> Option<LoginPreset> {
        self.providers.values().find_map(|p| match p {
            Provider::Client(p) => p.login_preset(login),
            Provider::Server(_) => None,
        })
    }
}

/// Keys travel in header names and are split on dashes there: letters, digits and `_` only.
fn check_key(key: &str) -> Result<(), RegistryError> {
    let invalid = |reason| Err(RegistryError::InvalidKey { key: key.to_owned(), reason });
    if key.is_empty() {
        return invalid("it is empty");
    }
    if key.contains('-') {
        return invalid(
            "dashes are not allowed: keys travel in Backstage-Kubernetes-Authorization-<key> headers, which are split on dashes",
        );
    }
    if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return invalid("only ASCII letters, digits and '_' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(credential: Credential) -> Provider {
        Provider::server_fn(move |_| {
            let credential = credential.clone();
            async move { Ok(credential) }
        })
    }

    fn cluster(provider: &str) -> ClusterDetails {
        let mut c = ClusterDetails::new("c1", "https://c1.example.com");
        c.set_auth_provider(provider);
        c
    }

    #[test]
    fn defaults_are_registered_with_their_sides() {
        let r = Registry::with_defaults();
        let keys: Vec<&str> = r.keys().collect();
        assert_eq!(
            keys,
            [
                "aks",
                "aws",
                "azure",
                "google",
                "googleServiceAccount",
                "kubeconfig",
                "localKubectlProxy",
                "oidc",
                "pinniped",
                "pinnipedServer",
                "serviceAccount"
            ]
        );
        assert_eq!(r.get("oidc").unwrap().side(), ProviderSide::Client);
        assert_eq!(r.get("aks").unwrap().side(), ProviderSide::Client);
        assert_eq!(r.get("serviceAccount").unwrap().side(), ProviderSide::Server);
    }

    #[test]
    fn custom_providers_go_beside_the_defaults_and_replace_only_when_asked() {
        let mut r = Registry::with_defaults();
        r.add("vault", fixed(Credential::bearer("v"))).unwrap();
        assert_eq!(r.keys().count(), 12);
        assert_eq!(
            r.add("serviceAccount", fixed(Credential::bearer("x"))).unwrap_err(),
            RegistryError::KeyTaken { key: "serviceAccount".into() }
        );
        assert!(r.replace("serviceAccount", fixed(Credential::bearer("x"))).unwrap().is_some());
        for bad in ["my-vault", "", "a b"] {
            assert!(matches!(r.add(bad, fixed(Credential::Anonymous)), Err(RegistryError::InvalidKey { .. })), "{bad}");
        }
    }

    #[test]
    fn an_unknown_auth_provider_names_the_cluster_and_key() {
        let err = Registry::with_defaults().validate(&cluster("kerberos")).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid cluster 'c1': authProvider: \"kerberos\" has no authentication provider"),
            "{err}"
        );
    }

    #[test]
    fn oidc_without_a_token_provider_is_refused_at_validation() {
        let err = Registry::with_defaults().validate(&cluster("oidc")).unwrap_err().to_string();
        assert!(err.contains("cluster 'c1'") && err.contains("oidcTokenProvider: missing"), "{err}");
    }

    #[tokio::test]
    async fn anonymous_is_only_for_providers_that_allow_it() {
        let mut r = Registry::with_defaults();
        r.add("nothing", fixed(Credential::Anonymous)).unwrap();
        let err = r.credential(&cluster("nothing"), &RequestAuth::none()).await.unwrap_err();
        assert!(matches!(err, AuthError::NoCredential { .. }), "{err}");
        assert!(err.to_string().contains("cluster 'c1'"));
        let ok = r.credential(&cluster("localKubectlProxy"), &RequestAuth::none()).await.unwrap();
        assert!(matches!(ok, Credential::Anonymous));
        // The capability, not the key: the same provider under another key keeps it.
        r.add("proxied", Provider::server(kubeauth_local_kubectl_proxy::LocalKubectlProxyProvider)).unwrap();
        assert!(matches!(r.credential(&cluster("proxied"), &RequestAuth::none()).await, Ok(Credential::Anonymous)));
    }

    #[tokio::test]
    async fn the_registry_names_the_cluster_and_provider_in_errors() {
        let mut r = Registry::with_defaults();
        r.add("vault", Provider::server_fn(|_| async { Err(AuthError::failed("sealed")) })).unwrap();
        let err = r.credential(&cluster("vault"), &RequestAuth::none()).await.unwrap_err();
        assert_eq!(kubeauth_core::report(&err), "cluster 'c1': the vault provider failed to get a credential: sealed");
    }

    #[test]
    fn client_side_providers_say_which_login_their_clusters_need() {
        let r = Registry::with_defaults();
        let mut oidc = cluster("oidc");
        oidc.auth_metadata.insert(kubeauth_core::metadata::OIDC_TOKEN_PROVIDER.into(), "okta".into());
        assert_eq!(r.user_login(&oidc).map(|l| l.to_string()).as_deref(), Some("oidc.okta"));
        assert_eq!(r.user_login(&cluster("google")).map(|l| l.to_string()).as_deref(), Some("google"));
        assert_eq!(r.user_login(&cluster("serviceAccount")), None);
        let google = r.login_preset(&"google".parse().unwrap()).unwrap();
        assert_eq!(google.issuer.as_deref(), Some("https://accounts.google.com"));
        assert!(r.login_preset(&"oidc.okta".parse().unwrap()).unwrap().issuer.is_none());
        assert!(r.login_preset(&"nobody".parse().unwrap()).is_none());
    }

    #[tokio::test]
    async fn server_side_providers_never_see_the_users_token() {
        let r = Registry::with_defaults();
        let mut c = cluster("serviceAccount");
        c.service_account_token = Some("app-token".into());
        let mut auth = RequestAuth::none();
        auth.insert_token("serviceAccount", "user-token");
        match r.credential(&c, &auth).await.unwrap() {
            Credential::BearerToken { token, .. } => {
                assert_eq!(kubeauth_core::ExposeSecret::expose_secret(&token), "app-token");
            }
            other => panic!("{other:?}"),
        }
    }
}
