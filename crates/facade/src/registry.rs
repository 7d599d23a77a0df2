use std::collections::BTreeMap;
use std::sync::Arc;

use kubeauth_core::{
    ClientSideProvider, ClusterDetails, Credential, Error as AuthError, ProviderSide, RequestAuth, ServerSideProvider,
    ValidationIssue,
};

use crate::RegistryError;

/// A registered provider, server side or client side.
#[derive(Clone)]
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
    /// Whose identity the provider presents.
    pub fn side(&self) -> ProviderSide {
        match self {
            Self::Server(_) => ProviderSide::Server,
            Self::Client(_) => ProviderSide::Client,
        }
    }

    /// The credential for `cluster`. Only the `localKubectlProxy` key may yield an anonymous credential: any
    /// other provider that gives none is an error, never a silent unauthenticated request.
    pub async fn credential(
        &self,
        key: &str,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<Credential, AuthError> {
        let credential = match self {
            Self::Server(p) => p.credential(cluster).await?,
            Self::Client(p) => p.credential(cluster, auth).await?,
        };
        if matches!(credential, Credential::Anonymous) && key != LOCAL_KUBECTL_PROXY {
            return Err(AuthError::NoCredential { cluster: cluster.name.clone(), provider: key.to_owned() });
        }
        Ok(credential)
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
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

const LOCAL_KUBECTL_PROXY: &str = "localKubectlProxy";

/// The authentication providers by key (`authProvider` in the config).
///
/// [`Registry::with_defaults`] holds every default provider compiled in (cargo features `service-account`,
/// `local-kubectl-proxy`, `oidc`, `google`, `aws`, `google-service-account`, `azure`, all on by default). A custom provider is added beside them under
/// its own key; adding under a taken key is an error, and replacing a built-in takes the explicit
/// `replace_*` call.
///
/// ```
/// use kubeauth::{ClusterDetails, Credential, CredentialFuture, Registry, ServerSideProvider};
///
/// struct Vault;
/// impl ServerSideProvider for Vault {
///     fn credential<'a>(&'a self, _: &'a ClusterDetails) -> CredentialFuture<'a> {
///         Box::pin(async { Ok(Credential::bearer("from-vault")) })
///     }
/// }
///
/// let mut registry = Registry::with_defaults();
/// registry.add_server_side("vault", Vault).unwrap();
/// assert!(registry.add_server_side("serviceAccount", Vault).is_err(), "built-ins are kept");
/// assert!(registry.add_server_side("my-vault", Vault).is_err(), "dashes are refused");
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
            Provider::Server(Arc::new(kubeauth_service_account::ServiceAccountProvider::new())),
        );
        #[cfg(feature = "local-kubectl-proxy")]
        providers.insert(
            kubeauth_local_kubectl_proxy::LocalKubectlProxyProvider::KEY.into(),
            Provider::Server(Arc::new(kubeauth_local_kubectl_proxy::LocalKubectlProxyProvider)),
        );
        #[cfg(feature = "oidc")]
        providers
            .insert(kubeauth_oidc::OidcProvider::KEY.into(), Provider::Client(Arc::new(kubeauth_oidc::OidcProvider)));
        #[cfg(feature = "google-service-account")]
        providers.insert(
            kubeauth_google_service_account::KEY.into(),
            Provider::Server(Arc::new(kubeauth_google_service_account::GoogleServiceAccountProvider::default())),
        );
        #[cfg(feature = "azure")]
        providers
            .insert(kubeauth_azure::KEY.into(), Provider::Server(Arc::new(kubeauth_azure::AzureProvider::default())));
        #[cfg(feature = "azure")]
        providers
            .insert(kubeauth_azure::AksProvider::KEY.into(), Provider::Client(Arc::new(kubeauth_azure::AksProvider)));
        #[cfg(feature = "aws")]
        providers.insert(kubeauth_aws::KEY.into(), Provider::Server(Arc::new(kubeauth_aws::AwsProvider::new())));
        #[cfg(feature = "google")]
        providers.insert(
            kubeauth_google::GoogleProvider::KEY.into(),
            Provider::Client(Arc::new(kubeauth_google::GoogleProvider)),
        );
        Self { providers }
    }

    /// Adds a server-side provider under a new key.
    pub fn add_server_side(
        &mut self,
        key: impl Into<String>,
        provider: impl ServerSideProvider,
    ) -> Result<&mut Self, RegistryError> {
        self.add(key.into(), Provider::Server(Arc::new(provider)))
    }

    /// Adds a client-side provider under a new key.
    pub fn add_client_side(
        &mut self,
        key: impl Into<String>,
        provider: impl ClientSideProvider,
    ) -> Result<&mut Self, RegistryError> {
        self.add(key.into(), Provider::Client(Arc::new(provider)))
    }

    /// Puts a server-side provider under `key`, replacing whatever was there (a built-in too); returns it.
    pub fn replace_server_side(
        &mut self,
        key: impl Into<String>,
        provider: impl ServerSideProvider,
    ) -> Result<Option<Provider>, RegistryError> {
        let key = key.into();
        check_key(&key)?;
        Ok(self.providers.insert(key, Provider::Server(Arc::new(provider))))
    }

    /// Puts a client-side provider under `key`, replacing whatever was there (a built-in too); returns it.
    pub fn replace_client_side(
        &mut self,
        key: impl Into<String>,
        provider: impl ClientSideProvider,
    ) -> Result<Option<Provider>, RegistryError> {
        let key = key.into();
        check_key(&key)?;
        Ok(self.providers.insert(key, Provider::Client(Arc::new(provider))))
    }

    fn add(&mut self, key: String, provider: Provider) -> Result<&mut Self, RegistryError> {
        check_key(&key)?;
        if self.providers.contains_key(&key) {
            return Err(RegistryError::KeyTaken { key });
        }
        self.providers.insert(key, provider);
        Ok(self)
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
    /// and the provider's own checks. Run it at startup, for every located cluster.
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
        let _entered = span.enter();
        provider.credential(key, cluster, auth).await
    }

    /// The auth metadata the provider allows the clusters list to show.
    pub fn present_auth_metadata(&self, cluster: &ClusterDetails) -> BTreeMap<String, String> {
        self.provider_for(cluster).map(|(_, p)| p.present_auth_metadata(cluster)).unwrap_or_default()
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
    use kubeauth_core::CredentialFuture;

    use super::*;

    struct Fixed(Credential);
    impl ServerSideProvider for Fixed {
        fn credential<'a>(&'a self, _: &'a ClusterDetails) -> CredentialFuture<'a> {
            Box::pin(async move { Ok(self.0.clone()) })
        }
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
            ["aks", "aws", "azure", "google", "googleServiceAccount", "localKubectlProxy", "oidc", "serviceAccount"]
        );
        assert_eq!(r.get("oidc").unwrap().side(), ProviderSide::Client);
        assert_eq!(r.get("aks").unwrap().side(), ProviderSide::Client);
        assert_eq!(r.get("serviceAccount").unwrap().side(), ProviderSide::Server);
    }

    #[test]
    fn custom_providers_go_beside_the_defaults_and_replace_only_when_asked() {
        let mut r = Registry::with_defaults();
        r.add_server_side("vault", Fixed(Credential::bearer("v"))).unwrap();
        assert_eq!(r.keys().count(), 9);
        assert_eq!(
            r.add_server_side("serviceAccount", Fixed(Credential::bearer("x"))).unwrap_err(),
            RegistryError::KeyTaken { key: "serviceAccount".into() }
        );
        assert!(r.replace_server_side("serviceAccount", Fixed(Credential::bearer("x"))).unwrap().is_some());
        assert!(matches!(
            r.add_server_side("my-vault", Fixed(Credential::Anonymous)),
            Err(RegistryError::InvalidKey { .. })
        ));
        assert!(matches!(r.add_server_side("", Fixed(Credential::Anonymous)), Err(RegistryError::InvalidKey { .. })));
        assert!(matches!(
            r.add_server_side("a b", Fixed(Credential::Anonymous)),
            Err(RegistryError::InvalidKey { .. })
        ));
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
    async fn anonymous_is_only_for_local_kubectl_proxy() {
        let mut r = Registry::with_defaults();
        r.add_server_side("nothing", Fixed(Credential::Anonymous)).unwrap();
        let err = r.credential(&cluster("nothing"), &RequestAuth::none()).await.unwrap_err();
        assert!(matches!(err, AuthError::NoCredential { .. }), "{err}");
        assert!(err.to_string().contains("cluster 'c1'"));
        let ok = r.credential(&cluster("localKubectlProxy"), &RequestAuth::none()).await.unwrap();
        assert!(matches!(ok, Credential::Anonymous));
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
                assert_eq!(kubeauth_core::ExposeSecret::expose_secret(&token), "app-token")
            }
            other => panic!("{other:?}"),
        }
    }
}
