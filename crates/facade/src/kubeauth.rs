//! Everything a config sets up: the providers, the locators, the connections and the logins.

use std::sync::Arc;

use kubeauth_cluster_locator::{AppConfig, CombinedLocator, Located, LocatorServices, ResolveContext};
use kubeauth_core::{ClusterDetails, RequestAuth};

use crate::{Connector, Error, Provider, Registry};

/// The toolkit set up from an app-config: the [`Registry`] of providers (the defaults, configured from the
/// config, and yours), the cluster locators of `kubernetes.clusterLocatorMethods`, a [`Connector`] that owns
/// the connections to the located clusters, and (feature `login`) the workstation logins of
/// `kubeauth.login`.
///
/// ```no_run
/// use kubeauth::{AppConfig, Kubeauth, RequestAuth, ResolveContext};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = AppConfig::from_file("app-config.yaml".as_ref())?;
/// let kubeauth = Kubeauth::from_config(&config, &ResolveContext::from_process_env())?;
/// for cluster in kubeauth.clusters().await?.iter() {
///     let client = kubeauth.kube_client(cluster, &RequestAuth::none()).await?;
///     println!("{}: {}", cluster.name, client.apiserver_version().await?.git_version);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Kubeauth {
    registry: Arc<Registry>,
    locator: CombinedLocator,
    connector: Connector,
    /// The list the connector was last trimmed to.
    retained: Arc<std::sync::Mutex<Option<Located>>>,
    #[cfg(feature = "login")]
    logins: crate::login::Logins,
}

impl std::fmt::Debug for Kubeauth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeauth")
            .field("providers", &self.registry.keys().collect::<Vec<_>>())
            .field("locator", &self.locator)
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Kubeauth`] from a config, with providers of your own beside the defaults.
///
/// ```
/// use kubeauth::{AppConfig, Credential, Kubeauth, Provider, ResolveContext};
///
/// let config = AppConfig::from_yaml_str("kubernetes:\n  clusterLocatorMethods: []\n", None)?;
/// let kubeauth = Kubeauth::builder(&config, &ResolveContext::from_process_env())?
///     .provider("vault", Provider::server_fn(|_| async { Ok(Credential::bearer("from-vault")) }))?
///     .build()?;
/// assert!(kubeauth.registry().get("vault").is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct KubeauthBuilder<'a> {
    config: &'a AppConfig,
    env: &'a ResolveContext,
    registry: Registry,
    services: LocatorServices,
}

impl std::fmt::Debug for KubeauthBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeauthBuilder").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl<'a> KubeauthBuilder<'a> {
    /// Adds a provider beside the others (see [`Registry::add`]).
    pub fn provider(mut self, key: impl Into<String>, provider: Provider) -> Result<Self, Error> {
        self.registry.add(key, provider)?;
        Ok(self)
    }

    /// Replaces a provider, a built-in too (see [`Registry::replace`]).
    pub fn replace_provider(mut self, key: impl Into<String>, provider: Provider) -> Result<Self, Error> {
        self.registry.replace(key, provider)?;
        Ok(self)
    }

    /// The registry as it stands, to change it directly.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The locators, the connector and the logins over the providers. Every locator value is resolved now, so
    /// a wrong config is an error here.
    pub fn build(self) -> Result<Kubeauth, Error> {
        let registry = Arc::new(self.registry);
        let mut services = self.services;
        // The catalog skips entities whose provider the registry refuses, and knows the server-side ones.
        let checking = registry.clone();
        services.provider_check = Some(Arc::new(move |cluster| {
            checking.validate(cluster).map_err(|e| kubeauth_core::report(&e))?;
            let (_, provider) = checking.provider_for(cluster).map_err(|e| kubeauth_core::report(&e))?;
            Ok(provider.side())
        }));
        let locator = CombinedLocator::from_config_with(self.config, self.env, &services)?;
        Ok(Kubeauth {
            connector: Connector::shared(registry.clone()),
            retained: Arc::default(),
            #[cfg(feature = "login")]
            logins: crate::login::Logins::new(self.config, self.env, registry.clone()),
            registry,
            locator,
        })
    }
}

impl Kubeauth {
    /// The default providers, set up from the config, and the config's locators.
    pub fn from_config(config: &AppConfig, env: &ResolveContext) -> Result<Self, Error> {
        Self::builder(config, env)?.build()
    }

    /// A builder from the config, to add providers before the locators are made.
    pub fn builder<'a>(config: &'a AppConfig, env: &'a ResolveContext) -> Result<KubeauthBuilder<'a>, Error> {
        #[allow(unused_mut)]
        let mut registry = Registry::with_defaults();
        #[allow(unused_mut)]
        let mut services = LocatorServices::default();
        #[cfg(feature = "google-service-account")]
        {
            // One Google identity (and one token cache) for the provider and the gke locator.
            let google = google_identity(config, env)?;
            registry.replace(kubeauth_google_service_account::KEY, Provider::Server(google.clone()))?;
            services.google_token = Some(Arc::new(GoogleToken(google)));
        }
        #[cfg(feature = "aws")]
        registry.replace(kubeauth_aws::KEY, Provider::server(aws_provider(config, env)?))?;
        Ok(KubeauthBuilder { config, env, registry, services })
    }

    /// A toolkit from parts made by hand: a registry and a locator (no logins are configured).
    pub fn new(registry: Registry, locator: CombinedLocator) -> Self {
        let registry = Arc::new(registry);
        Self {
            connector: Connector::shared(registry.clone()),
            retained: Arc::default(),
            #[cfg(feature = "login")]
            logins: crate::login::Logins::new(&AppConfig::default(), &ResolveContext::new(|_| None), registry.clone()),
            registry,
            locator,
        }
    }

    /// The providers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The locators.
    pub fn locator(&self) -> &CombinedLocator {
        &self.locator
    }

    /// The connections.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The workstation logins of `kubeauth.login`.
    #[cfg(feature = "login")]
    pub fn logins(&self) -> &crate::login::Logins {
        &self.logins
    }

    /// The located clusters, now (the same shared list while no locator's list changed). When the list
    /// changes, the connector forgets the clusters that are no longer located.
    pub async fn clusters(&self) -> Result<Located, Error> {
        let clusters = self.locator.clusters().await?;
        let mut retained = self.retained.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !retained.as_ref().is_some_and(|last| Arc::ptr_eq(last, &clusters)) {
            self.connector.retain(&clusters);
            *retained = Some(clusters.clone());
        }
        Ok(clusters)
    }

    /// A [`kube::Client`] for `cluster` (see [`Connector::kube_client`]).
    pub async fn kube_client(&self, cluster: &ClusterDetails, auth: &RequestAuth) -> Result<kube::Client, Error> {
        self.connector.kube_client(cluster, auth).await
    }
}

/// The `aws` provider with the base credentials of Backstage's `aws.mainAccount`: static keys, else a profile,
/// else the default chain. An unset `${VAR}` makes its key absent, as in Backstage.
#[cfg(feature = "aws")]
fn aws_provider(config: &AppConfig, env: &ResolveContext) -> Result<kubeauth_aws::AwsProvider, Error> {
    let builder = kubeauth_aws::AwsProvider::builder();
    let Some(main) = config.aws.as_ref().and_then(|aws| aws.main_account.as_ref()) else {
        return Ok(builder.build());
    };
    let ctx = config.resolve_context(env);
    let invalid = |key: &str, message: String| kubeauth_cluster_locator::LocatorError::Key {
        origin: config.origin.clone(),
        key: format!("aws.mainAccount.{key}"),
        message,
    };
    let read = |key: &str, value: &Option<kubeauth_cluster_locator::ConfigString>| {
        value.as_ref().map(|v| v.resolve_optional(&ctx)).transpose().map(Option::flatten).map_err(|m| invalid(key, m))
    };
    let key_id = read("accessKeyId", &main.access_key_id)?;
    let secret = read("secretAccessKey", &main.secret_access_key)?;
    let profile = read("profile", &main.profile)?;
    let region = read("region", &main.region)?;
    Ok(match (key_id, secret, profile) {
        (Some(id), Some(secret), _) => builder.static_credentials(&id, &secret, None),
        (Some(_), None, _) => return Err(invalid("secretAccessKey", "missing (accessKeyId is set)".into()).into()),
        (None, Some(_), _) => return Err(invalid("accessKeyId", "missing (secretAccessKey is set)".into()).into()),
        (None, None, Some(profile)) => builder.profile(profile, region),
        (None, None, None) => builder,
    }
    .build())
}

/// The application's Google identity, for the `googleServiceAccount` provider and the gke locator: the key of
/// `kubernetes.googleServiceAccountCredentials`, else Application Default Credentials. A custom provider put
/// under `googleServiceAccount` does not change what the gke locator lists clusters as.
#[cfg(feature = "google-service-account")]
fn google_identity(
    config: &AppConfig,
    env: &ResolveContext,
) -> Result<Arc<kubeauth_google_service_account::GoogleServiceAccountProvider>, Error> {
    use kubeauth_google_service_account::GoogleServiceAccountProvider;
    let Some(value) = &config.kubernetes.google_service_account_credentials else {
        return Ok(Arc::new(GoogleServiceAccountProvider::default()));
    };
    let invalid = |message: String| kubeauth_cluster_locator::LocatorError::Key {
        origin: config.origin.clone(),
        key: "kubernetes.googleServiceAccountCredentials".into(),
        message,
    };
    // An unset variable makes the key absent, as in Backstage: Application Default Credentials then.
    match value.resolve_optional(&config.resolve_context(env)).map_err(invalid)? {
        Some(json) => Ok(Arc::new(GoogleServiceAccountProvider::with_key_json(&json).map_err(invalid)?)),
        None => Ok(Arc::new(GoogleServiceAccountProvider::default())),
    }
}

/// The gke locator's token: the application's Google identity.
#[cfg(feature = "google-service-account")]
struct GoogleToken(Arc<kubeauth_google_service_account::GoogleServiceAccountProvider>);

#[cfg(feature = "google-service-account")]
impl kubeauth_cluster_locator::AccessTokenSource for GoogleToken {
    fn access_token<'a>(&'a self, context: &'a str) -> kubeauth_core::CredentialFuture<'a> {
        Box::pin(self.0.access_token(context))
    }
}

#[cfg(all(test, feature = "aws"))]
mod tests {
    use super::*;

    fn built(yaml: &str, vars: &'static [(&'static str, &'static str)]) -> Result<Kubeauth, String> {
        let config = AppConfig::from_yaml_str(yaml, Some(std::path::Path::new("/etc/kubeauth/app-config.yaml")))
            .map_err(|e| e.to_string())?;
        let env = ResolveContext::new(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()));
        Kubeauth::from_config(&config, &env).map_err(|e| kubeauth_core::report(&e))
    }

    #[test]
    fn aws_main_account_keys_come_in_pairs_and_unset_variables_are_absent() {
        let half = "aws:\n  mainAccount:\n    accessKeyId: AKIAEXAMPLE\n    secretAccessKey: ${MAIN_SECRET}\n";
        let err = built(half, &[]).expect_err("a key id without its secret");
        assert!(
            err.contains("/etc/kubeauth/app-config.yaml") && err.contains("aws.mainAccount.secretAccessKey"),
            "{err}"
        );
        assert!(!err.contains("AKIAEXAMPLE"), "{err}");
        built(half, &[("MAIN_SECRET", "s3cret")]).unwrap();
        // Every key unset: the default chain, as Backstage with an empty mainAccount.
        built("aws:\n  mainAccount:\n    accessKeyId: ${K}\n    secretAccessKey: ${S}\n    profile: ${P}\n", &[])
            .unwrap();
        // Other plugins' keys in the section are theirs.
        built("aws:\n  qbusiness:\n    applicationId: x\n  accounts:\n    - accountId: '1'\n", &[]).unwrap();
    }
}
