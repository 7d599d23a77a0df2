//! The kubeauth contract.
//!
//! Everything the other kubeauth crates agree on lives here, and nothing else: the description of a cluster
//! ([`ClusterDetails`]), what a provider hands back ([`Credential`]), the two provider traits
//! ([`ServerSideProvider`] for the application's own identity, [`ClientSideProvider`] for the signed-in user's),
//! the user-supplied tokens that travel with a request ([`RequestAuth`]), what a client-side provider tells the
//! workstation login ([`LoginName`], [`LoginPreset`]), the crate's [`Error`], the [`CredentialCache`] that every
//! provider and the request layer share, providers from async functions ([`server_side_fn`],
//! [`client_side_fn`]) and a chain of them ([`ServerSideChain`]); with the feature `store`, the private file
//! store of the command-line tools ([`store::FileStore`]).
//!
//! This crate depends on no provider and no cloud SDK.
//!
//! ```
//! use kubeauth_core::{ClusterDetails, metadata};
//!
//! let mut cluster = ClusterDetails::new("prod", "https://10.0.0.1:6443");
//! cluster.set_auth_provider("serviceAccount");
//! assert_eq!(cluster.auth_provider(), Some("serviceAccount"));
//! assert_eq!(cluster.auth_metadata.get(metadata::AUTH_PROVIDER).map(String::as_str), Some("serviceAccount"));
//! ```

mod cache;
mod chain;
mod cluster;
mod credential;
mod error;
mod from_fn;
mod login;
pub mod metadata;
mod provider;
mod request_auth;
#[cfg(feature = "store")]
pub mod store;

pub use cache::{CachedCredential, CredentialCache, KeyedCredentialCache};

/// The folder where Kubernetes mounts a pod's service-account token (`token`), CA (`ca.crt`) and namespace.
pub const IN_CLUSTER_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub use chain::ServerSideChain;
pub use cluster::{ClusterDetails, CustomResourceMatcher, ValidationIssue, without_userinfo};
pub use credential::{Credential, CredentialKind};
pub use error::{BoxError, Error, report};
pub use from_fn::{ClientSideFn, ClusterCheck, ServerSideFn, client_side_fn, server_side_fn};
pub use login::{LoginName, LoginPreset, SendToken};
pub use provider::{ClientSideProvider, CredentialFuture, ProviderSide, ServerSideProvider};
pub use request_auth::RequestAuth;
pub use secrecy::{ExposeSecret, SecretString};
