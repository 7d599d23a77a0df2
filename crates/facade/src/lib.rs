//! kubeauth: Kubernetes authentication for every cluster, as the application or as the signed-in user.
//!
//! - [`Kubeauth`]: everything an app-config sets up — the providers, the cluster locators, the connections
//!   and (feature `login`) the workstation logins — with providers of your own beside the defaults.
//! - [`Registry`]: the authentication providers by key, pre-loaded with the default ones (each behind a cargo
//!   feature); a custom one is a [`Provider`], from a type or an async function ([`Provider::server_fn`]).
//! - [`Connector`]: a [`kube::Client`] or a raw HTTP client for any located cluster, one set of connections per
//!   cluster (one HTTP/2 connection where the API server offers it), the credential applied by one tower layer
//!   ([`CredentialLayer`]) that refreshes it ahead of expiry and retries once with a fresh one after a 401.
//! - Re-exports of the contract ([`kubeauth_core`]) and the cluster locators ([`kubeauth_cluster_locator`]).
//!   The `gke` and `catalog` locators, which ask a service over HTTP, are the features `gke` and `catalog`
//!   (default); without them no HTTP client beyond kube's is built in. The `kubeconfig` locator and provider
//!   (kubectl's contexts, exec plugins included) are the feature `kubeconfig` (default).
//!
//! The one path data takes: config text → locator → [`ClusterDetails`] → the registry picks the provider by
//! the cluster's `authProvider` → [`Credential`] → [`CredentialLayer`] applies it to each HTTP request.
//!
//! ```no_run
//! use kubeauth::{AppConfig, Kubeauth, RequestAuth, ResolveContext};
//! use k8s_openapi::api::core::v1::Namespace;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = AppConfig::from_file("app-config.yaml".as_ref())?;
//! let kubeauth = Kubeauth::from_config(&config, &ResolveContext::from_process_env())?;
//! for cluster in kubeauth.clusters().await?.iter() {
//!     let client = kubeauth.kube_client(cluster, &RequestAuth::none()).await?;
//!     let namespaces = kube::Api::<Namespace>::all(client).list(&Default::default()).await?;
//!     println!("{}: {} namespaces", cluster.name, namespaces.items.len());
//! }
//! # Ok(()) }
//! ```

mod connector;
mod error;
mod http;
mod kubeauth;
mod layer;
#[cfg(feature = "login")]
pub mod login;
mod registry;

pub use connector::{Connector, KUBE_RESPONSE_TIMEOUT, connection_config, connection_proxy};
pub use error::{Error, RegistryError};
pub use http::{ClusterHttpClient, RequestBody};
pub use kubeauth::{Kubeauth, KubeauthBuilder};
pub use layer::{
    ClientIdentity, CredentialLayer, CredentialService, CredentialSource, ReplayableBody, ResponseFuture,
    apply_credential,
};
pub use registry::{Provider, Registry};

pub use kubeauth_cluster_locator::{
    AppConfig, ClusterLocator, CombinedLocator, ConfigLocator, EMBEDDED_DEFAULT_CONFIG, EMBEDDED_IN_CLUSTER_CONFIG,
    LocalKubectlProxyLocator, Located, LocatorError, ResolveContext,
};
pub use kubeauth_core::{
    ClientSideProvider, ClusterDetails, Credential, CredentialCache, CredentialFuture, CredentialKind,
    KeyedCredentialCache, LoginName, ProviderSide, RequestAuth, ServerSideChain, ServerSideProvider, ValidationIssue,
    metadata, report,
};

/// The cluster locators.
pub use kubeauth_cluster_locator as locator;
/// The contract crate, for provider authors.
pub use kubeauth_core as core;

/// The `serviceAccount` provider.
#[cfg(feature = "service-account")]
pub use kubeauth_service_account as service_account;

/// The `localKubectlProxy` provider.
#[cfg(feature = "local-kubectl-proxy")]
pub use kubeauth_local_kubectl_proxy as local_kubectl_proxy;

/// The `oidc` provider.
#[cfg(feature = "oidc")]
pub use kubeauth_oidc as oidc;

/// The `aws` provider.
#[cfg(feature = "aws")]
pub use kubeauth_aws as aws;

/// The `azure` provider.
#[cfg(feature = "azure")]
pub use kubeauth_azure as azure;

/// The `googleServiceAccount` provider.
#[cfg(feature = "google-service-account")]
pub use kubeauth_google_service_account as google_service_account;

/// The `google` provider.
#[cfg(feature = "google")]
pub use kubeauth_google as google;
/// The `pinniped` and `pinnipedServer` providers.
#[cfg(feature = "pinniped")]
pub use kubeauth_pinniped as pinniped;

/// The Rust examples of docs/custom-providers.md, compiled and run as doctests so that the guide stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/custom-providers.md")]
mod custom_providers_guide {}

/// The library example of the README, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}
