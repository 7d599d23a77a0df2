//! A registry and locators built from a config: what the command and the server run on.

use std::sync::Arc;

use kubeauth_cluster_locator::{AccessTokenSource, AppConfig, CombinedLocator, LocatorServices, ResolveContext};
use kubeauth_core::{ClusterDetails, CredentialFuture};

use crate::{Error, Provider, Registry};

impl Registry {
    /// The default providers, set up from the config: `kubernetes.googleServiceAccountCredentials` (a
    /// service-account key) for the `googleServiceAccount` provider.
    pub fn from_config(config: &AppConfig, ctx: &ResolveContext) -> Result<Self, Error> {
        #[allow(unused_mut)]
        let mut registry = Self::with_defaults();
        #[cfg(feature = "google-service-account")]
        if let Some(value) = &config.kubernetes.google_service_account_credentials {
            let invalid = |message: String| kubeauth_cluster_locator::LocatorError::Key {
                origin: config.origin.clone(),
                key: "googleServiceAccountCredentials".into(),
                message,
            };
            let json = value.resolve(&config.resolve_context(ctx)).map_err(invalid)?;
            let provider =
                kubeauth_google_service_account::GoogleServiceAccountProvider::with_key_json(&json).map_err(invalid)?;
            registry.replace_server_side(kubeauth_google_service_account::KEY, provider)?;
        }
        #[cfg(not(feature = "google-service-account"))]
        let _ = (config, ctx);
        Ok(registry)
    }
}

/// The gke locator's token: the `googleServiceAccount` provider of the registry (a custom one registered under
/// that key too).
struct RegistryGoogleToken(Provider);

impl AccessTokenSource for RegistryGoogleToken {
    fn access_token<'a>(&'a self, context: &'a str) -> CredentialFuture<'a> {
        Box::pin(async move {
            let cluster = ClusterDetails::new(context, "");
            self.0.credential("googleServiceAccount", &cluster, &kubeauth_core::RequestAuth::none()).await
        })
    }
}

/// The locators of `kubernetes.clusterLocatorMethods`, with what they need from `registry` (the gke method
/// lists clusters with the `googleServiceAccount` provider's identity).
pub fn locator(config: &AppConfig, ctx: &ResolveContext, registry: &Registry) -> Result<CombinedLocator, Error> {
    let services = LocatorServices {
        google_token: registry
            .get("googleServiceAccount")
            .map(|p| Arc::new(RegistryGoogleToken(p.clone())) as Arc<dyn AccessTokenSource>),
    };
    Ok(CombinedLocator::from_config_with(config, ctx, &services)?)
}
