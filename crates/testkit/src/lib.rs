//! Test environments for kubeauth: a real etcd and kube-apiserver on loopback ([`TestCluster`]), a real
//! `kubectl`, a TokenReview webhook that token verifiers plug into ([`TokenReviewWebhook`]), and a throwaway
//! certificate authority ([`pki`]).
//!
//! The binaries come from `cargo xtask envtest` (run by `cargo xtask test`). A test that needs them and does not
//! find them fails with a message saying so: it never passes silently.
//!
//! Dev-only: nothing here is meant for production code.

pub mod aws;
pub mod azure;
pub mod backstage;
pub mod backstage_auth;
mod binaries;
pub mod catalog;
mod cluster;
pub mod concierge;
pub mod faults;
pub mod forward;
pub mod google;
pub mod http;
pub mod oidc;
pub mod pki;
mod process;
mod server;
mod webhook;

pub use binaries::EnvtestBinaries;
pub use cluster::{TestCluster, TestClusterBuilder, service_account, user};
pub use process::{Supervised, free_port};
pub use webhook::{StaticTokens, TokenReviewWebhook, TokenVerifier, UserInfo, VerifyFuture};
