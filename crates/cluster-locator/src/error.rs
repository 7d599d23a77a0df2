use std::fmt;
use std::path::{Path, PathBuf};

use kubeauth_core::ValidationIssue;

/// Why no cluster list could be had: the config is wrong, or a locator failed.
///
/// Messages name the file, line and column, the locator method, the cluster and the key; never a value that
/// may be a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocatorError {
    /// The config file cannot be read.
    #[error("cannot read config file `{}`", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config is not valid YAML, or a value has the wrong shape.
    #[error("{}line {line}, column {column}: {message}", origin_prefix(origin))]
    Yaml {
        /// The file, if the config came from one.
        origin: Option<PathBuf>,
        /// 1-based line.
        line: u64,
        /// 1-based column.
        column: u64,
        /// What is wrong.
        message: String,
    },
    /// A cluster entry is wrong.
    #[error("{}clusterLocatorMethods[{method_index}] (config), cluster '{cluster}'{}: {}", origin_prefix(origin), line_suffix(*line), join(issues))]
    Cluster {
        /// The file, if the config came from one.
        origin: Option<PathBuf>,
        /// Index of the method in `clusterLocatorMethods`.
        method_index: usize,
        /// The cluster's name, or `#N` (its position) when it has none.
        cluster: String,
        /// Line of the cluster entry, if known.
        line: Option<u64>,
        /// Every problem found, each with its config key.
        issues: Vec<ValidationIssue>,
    },
    /// A method entry is wrong (unknown type, keys that do not belong to it).
    #[error("{}clusterLocatorMethods[{index}]: {message}", origin_prefix(origin))]
    Method {
        /// The file, if the config came from one.
        origin: Option<PathBuf>,
        /// Index of the method.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A key outside the locator methods is wrong (`kubernetes.clusterLocatorContinueOnError`,
    /// `kubeauth.login.oidc.okta.clientId`, …).
    #[error("{}{key}: {message}", origin_prefix(origin))]
    Key {
        /// The file, if the config came from one.
        origin: Option<PathBuf>,
        /// The key's full path from the root of the config.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A locator failed to list its clusters.
    #[error("cluster locator {method} failed")]
    Locator {
        /// The locator, e.g. `clusterLocatorMethods[1] (gke)`.
        method: String,
        /// Why.
        #[source]
        source: kubeauth_core::BoxError,
    },
}

impl LocatorError {
    pub(crate) fn from_yaml(error: serde_saphyr::Error, origin: Option<&Path>) -> Self {
        let (line, column) = error.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        let message = error.to_string();
        // serde-saphyr renders the location itself at the start or in a snippet; keep the first line, which
        // holds the message.
        let mut message = message.lines().next().unwrap_or_default();
        message = message.strip_prefix("error: ").unwrap_or(message);
        if let Some(rest) = message.strip_prefix("line ")
            && let Some((_, after)) = rest.split_once(": ")
            && rest.split_once(": ").is_some_and(|(loc, _)| loc.contains("column"))
        {
            message = after;
        }
        let message = message.to_owned();
        Self::Yaml { origin: origin.map(Path::to_owned), line, column, message }
    }
}

fn origin_prefix(origin: &Option<PathBuf>) -> String {
    origin.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
}

fn line_suffix(line: Option<u64>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// `clusterLocatorMethods[N] (type)`: how messages name a locator.
pub(crate) struct MethodName<'a>(pub(crate) usize, pub(crate) &'a str);

impl fmt::Display for MethodName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "clusterLocatorMethods[{}] ({})", self.0, self.1)
    }
}

fn join(issues: &[ValidationIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
