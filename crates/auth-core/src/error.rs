use std::path::PathBuf;

use crate::ValidationIssue;

/// A boxed error from a provider's own machinery (a cloud SDK, an HTTP client, …).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong between a located cluster and a credential for it.
///
/// Every variant names the cluster, and where a config key is at fault, the key. No message contains a secret:
/// providers put secrets in [`SecretString`](crate::SecretString)s, never in errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cluster's configuration is wrong; every problem found is listed.
    #[error("invalid cluster '{cluster}': {}", join(issues))]
    InvalidCluster {
        /// The cluster's name.
        cluster: String,
        /// The problems, each with its config key.
        issues: Vec<ValidationIssue>,
    },
    /// One config key of the cluster is wrong.
    #[error("cluster '{cluster}': {key}: {message}")]
    Config {
        /// The cluster's name.
        cluster: String,
        /// The config key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file named by the cluster's configuration cannot be read.
    #[error("cluster '{cluster}': {key}: cannot read `{}`", path.display())]
    Io {
        /// The cluster's name.
        cluster: String,
        /// The config key that names the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No provider is registered under the cluster's `authProvider`.
    #[error("cluster '{cluster}': authProvider: \"{provider}\" has no authentication provider registered (registered: {})", known.join(", "))]
    UnknownAuthProvider {
        /// The cluster's name.
        cluster: String,
        /// The key asked for.
        provider: String,
        /// The keys that are registered.
        known: Vec<String>,
    },
    /// A client-side provider found no token of the signed-in user in the request.
    #[error(
        "cluster '{cluster}': the {provider} provider needs the user's token under `auth.{path}` of the request, and there is none"
    )]
    MissingUserToken {
        /// The cluster's name.
        cluster: String,
        /// The provider's key.
        provider: String,
        /// Where the token was looked for, e.g. `oidc.okta`.
        path: String,
    },
    /// A provider that does not allow anonymous access (all but `localKubectlProxy`) gave no credential.
    #[error(
        "cluster '{cluster}': the {provider} provider gave no bearer token or client certificate, and it does not allow anonymous access"
    )]
    NoCredential {
        /// The cluster's name.
        cluster: String,
        /// The provider's key.
        provider: String,
    },
    /// The provider does not apply here (nothing of it is configured): a chain tries the next one.
    #[error("cluster '{cluster}': the {provider} provider is not configured here: {reason}")]
    NotConfigured {
        /// The cluster's name.
        cluster: String,
        /// The provider's key or the credential source's name.
        provider: String,
        /// What is missing.
        reason: String,
    },
    /// The provider is configured and failed to produce a credential.
    #[error("cluster '{cluster}': the {provider} provider failed to get a credential")]
    Provider {
        /// The cluster's name.
        cluster: String,
        /// The provider's key.
        provider: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// The credential took longer than allowed.
    #[error("cluster '{cluster}': the {provider} provider did not answer within {seconds} s")]
    Timeout {
        /// The cluster's name.
        cluster: String,
        /// The provider's key.
        provider: String,
        /// The limit.
        seconds: u64,
    },
}

impl Error {
    /// The name of the cluster the error is about.
    pub fn cluster(&self) -> &str {
        match self {
            Self::InvalidCluster { cluster, .. }
            | Self::Config { cluster, .. }
            | Self::Io { cluster, .. }
            | Self::UnknownAuthProvider { cluster, .. }
            | Self::MissingUserToken { cluster, .. }
            | Self::NoCredential { cluster, .. }
            | Self::NotConfigured { cluster, .. }
            | Self::Provider { cluster, .. }
            | Self::Timeout { cluster, .. } => cluster,
        }
    }

    /// Whether a chain of credential sources should go on to the next one.
    pub fn is_not_configured(&self) -> bool {
        matches!(self, Self::NotConfigured { .. })
    }

    /// The provider is configured and failed: `source` says why. The cluster and provider names are filled
    /// in by the registry (see [`named`](Self::named)), so a provider need not repeat them.
    ///
    /// ```
    /// use kubeauth_core::Error;
    ///
    /// let err = Error::failed("the vault answered 503").named("prod", "vault");
    /// assert_eq!(err.to_string(), "cluster 'prod': the vault provider failed to get a credential");
    /// assert_eq!(kubeauth_core::report(&err), "cluster 'prod': the vault provider failed to get a credential: the vault answered 503");
    /// ```
    pub fn failed(source: impl Into<BoxError>) -> Self {
        Self::Provider { cluster: String::new(), provider: String::new(), source: source.into() }
    }

    /// One config key of the cluster is wrong (`key` as written in the config, e.g. `authMetadata.example.com/role`).
    /// The cluster's name is filled in by the registry.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config { cluster: String::new(), key: key.into(), message: message.into() }
    }

    /// Nothing of the provider is configured for the cluster: a [`ServerSideChain`](crate::ServerSideChain)
    /// tries its next link. The names are filled in by the registry.
    pub fn not_configured(reason: impl Into<String>) -> Self {
        Self::NotConfigured { cluster: String::new(), provider: String::new(), reason: reason.into() }
    }

    /// The error with the cluster's and the provider's names where they are empty; names already set stay.
    #[must_use]
    pub fn named(mut self, cluster_name: &str, provider_key: &str) -> Self {
        let fill = |slot: &mut String, value: &str| {
            if slot.is_empty() {
                value.clone_into(slot);
            }
        };
        match &mut self {
            Self::InvalidCluster { cluster, .. }
            | Self::Config { cluster, .. }
            | Self::Io { cluster, .. }
            | Self::UnknownAuthProvider { cluster, .. } => fill(cluster, cluster_name),
            Self::MissingUserToken { cluster, provider, .. }
            | Self::NoCredential { cluster, provider }
            | Self::NotConfigured { cluster, provider, .. }
            | Self::Provider { cluster, provider, .. }
            | Self::Timeout { cluster, provider, .. } => {
                fill(cluster, cluster_name);
                fill(provider, provider_key);
            }
        }
        self
    }
}

fn join(issues: &[ValidationIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The error and all its sources on one line, `outer: inner: innermost`, for logs and command-line output.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = source.source();
    }
    out
}
