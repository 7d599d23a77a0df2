use kubeauth_core::ClusterDetails;

use crate::combined::{ClusterLocator, ClustersFuture};

/// The `localKubectlProxy` method: one cluster named `local` at `http://localhost:8001`, reached through a
/// `kubectl proxy` that adds the user's own kubeconfig credentials, with the `localKubectlProxy` provider.
#[derive(Debug, Clone, Default)]
pub struct LocalKubectlProxyLocator {
    source: String,
    located: std::sync::OnceLock<crate::Located>,
}

impl LocalKubectlProxyLocator {
    /// The name of the one cluster.
    pub const CLUSTER_NAME: &'static str = "local";
    /// Where `kubectl proxy` listens by default.
    pub const URL: &'static str = "http://localhost:8001";

    /// The locator; `source` names it in messages.
    pub fn new(source: impl Into<String>) -> Self {
        Self { source: source.into(), located: std::sync::OnceLock::new() }
    }

    /// The cluster it finds.
    pub fn cluster(&self) -> ClusterDetails {
        let mut cluster = ClusterDetails::new(Self::CLUSTER_NAME, Self::URL);
        cluster.set_auth_provider("localKubectlProxy");
        cluster.skip_metrics_lookup = true;
        cluster.source = self.source.clone();
        cluster
    }
}

impl ClusterLocator for LocalKubectlProxyLocator {
    fn clusters(&self) -> ClustersFuture<'_> {
        let clusters = self.located.get_or_init(|| vec![self.cluster()].into()).clone();
        Box::pin(async move { Ok(clusters) })
    }
}
