//! The `localKubectlProxy` provider: no credential at all.
//!
//! For a cluster reached through `kubectl proxy`, which adds the credentials of the user's kubeconfig itself.
//! It is the only built-in provider that allows anonymous access (see
//! [`ServerSideProvider::allows_anonymous`]).

use kubeauth_core::{ClusterDetails, Credential, CredentialFuture, ServerSideProvider, ValidationIssue};

/// The `localKubectlProxy` provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalKubectlProxyProvider;

impl LocalKubectlProxyProvider {
    /// The provider key, as written in `authProvider`.
    pub const KEY: &'static str = "localKubectlProxy";
}

impl ServerSideProvider for LocalKubectlProxyProvider {
    fn credential<'a>(&'a self, _cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async { Ok(Credential::Anonymous) })
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        if cluster.service_account_token.is_some() {
            vec![ValidationIssue::new("serviceAccountToken", "is not used by localKubectlProxy: remove it")]
        } else {
            vec![]
        }
    }

    /// `kubectl proxy` adds the user's own credentials: requests to it carry none.
    fn allows_anonymous(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gives_an_anonymous_credential() {
        let cluster = ClusterDetails::new("local", "http://localhost:8001");
        let cred = LocalKubectlProxyProvider.credential(&cluster).await.unwrap();
        assert!(matches!(cred, Credential::Anonymous));
    }
}
