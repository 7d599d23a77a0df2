//! A chain of server-side providers: the first one configured for a cluster gives its credential.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::Instrument as _;

use crate::{ClusterDetails, CredentialFuture, Error, ServerSideProvider, ValidationIssue};

/// Server-side providers tried in order for each cluster, like a cloud SDK's credential chain.
///
/// Resolution order: each link is asked in the order it was added; a link that answers
/// [`Error::NotConfigured`] ("nothing of mine is set up for this cluster") hands over to the next one; the first
/// link that gives a credential, or that is configured and fails with any other error, ends the chain. When
/// every link is not configured, the chain's error lists each link's reason.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use kubeauth_core::{ClusterDetails, Credential, Error, ServerSideChain, server_side_fn};
///
/// let chain = ServerSideChain::new()
///     .or("vault", server_side_fn(|cluster| async move {
///         match cluster.auth_metadata.get("example.com/vault-path") {
///             Some(path) => Ok(Credential::bearer(format!("from-vault:{path}"))),
///             None => Err(Error::not_configured("no example.com/vault-path")),
///         }
///     }))
///     .or("static", server_side_fn(|_| async { Ok(Credential::bearer("fallback")) }));
/// let cluster = ClusterDetails::new("prod", "https://10.0.0.1:6443");
/// use kubeauth_core::ServerSideProvider as _;
/// assert!(chain.credential(&cluster).await.is_ok());
/// # });
/// ```
#[derive(Clone, Default)]
pub struct ServerSideChain {
    links: Vec<(String, Arc<dyn ServerSideProvider>)>,
}

impl std::fmt::Debug for ServerSideChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSideChain")
            .field("links", &self.links.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .finish()
    }
}

impl ServerSideChain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `provider` as the next link; `name` identifies it in logs and errors.
    #[must_use]
    pub fn or(mut self, name: impl Into<String>, provider: impl ServerSideProvider) -> Self {
        self.links.push((name.into(), Arc::new(provider)));
        self
    }
}

impl ServerSideProvider for ServerSideChain {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move {
            let mut skipped = Vec::new();
            for (name, link) in &self.links {
                let span = tracing::debug_span!("chain link", link = %name);
                match link.credential(cluster).instrument(span).await {
                    Err(error) if error.is_not_configured() => {
                        tracing::debug!(link = %name, error = %error, "not configured here; trying the next link");
                        skipped.push(match error {
                            Error::NotConfigured { reason, .. } => format!("{name}: {reason}"),
                            other => format!("{name}: {other}"),
                        });
                    }
                    other => return other,
                }
            }
            Err(Error::not_configured(if skipped.is_empty() {
                "the chain has no link".to_owned()
            } else {
                skipped.join("; ")
            }))
        })
    }

    /// The problems every link finds, when no link is free of problems (a link that can serve the cluster is
    /// enough).
    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        let mut all = Vec::new();
        for (_, link) in &self.links {
            let issues = link.validate_cluster(cluster);
            if issues.is_empty() {
                return Vec::new();
            }
            all.extend(issues);
        }
        all
    }

    fn present_auth_metadata(&self, cluster: &ClusterDetails) -> BTreeMap<String, String> {
        self.links.iter().flat_map(|(_, link)| link.present_auth_metadata(cluster)).collect()
    }

    fn allows_anonymous(&self) -> bool {
        self.links.iter().any(|(_, link)| link.allows_anonymous())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credential, ExposeSecret as _, server_side_fn};

    fn token(c: &Credential) -> String {
        match c {
            Credential::BearerToken { token, .. } => token.expose_secret().to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn not_configured_goes_on_and_any_other_error_stops() {
        let cluster = ClusterDetails::new("prod", "https://10.0.0.1:6443");
        let absent = || server_side_fn(|_| async { Err(Error::not_configured("no key file")) });
        let chain = ServerSideChain::new()
            .or("first", absent())
            .or("second", server_side_fn(|_| async { Ok(Credential::bearer("second")) }))
            .or("third", server_side_fn(|_| async { Ok(Credential::bearer("third")) }));
        assert_eq!(token(&chain.credential(&cluster).await.unwrap()), "second");

        let failing = ServerSideChain::new()
            .or("broken", server_side_fn(|_| async { Err(Error::failed("endpoint down")) }))
            .or("never", server_side_fn(|_| async { Ok(Credential::bearer("never")) }));
        let err = failing.credential(&cluster).await.unwrap_err().named("prod", "mine");
        assert!(matches!(err, Error::Provider { .. }), "{err}");

        let none = ServerSideChain::new().or("a", absent()).or("b", absent());
        let err = none.credential(&cluster).await.unwrap_err().named("prod", "mine");
        assert_eq!(
            err.to_string(),
            "cluster 'prod': the mine provider is not configured here: a: no key file; b: no key file"
        );
    }
}
