//! The `serviceAccount` provider: a Kubernetes service-account token as the application's identity.
//!
//! The token comes from the cluster's `serviceAccountToken` config key, or, when that is not set, from the
//! in-cluster token file (`/var/run/secrets/kubernetes.io/serviceaccount/token`). The kubelet rotates that
//! file (projected tokens live about an hour); the provider notices a new file and reads it again, so a
//! long-running application never sends an expired token.
//!
//! ```no_run
//! use kubeauth_service_account::ServiceAccountProvider;
//!
//! // Running in a pod: the cluster the pod runs in, with its CA and token.
//! let provider = ServiceAccountProvider::new();
//! let cluster = provider.in_cluster_details("in-cluster", |name| std::env::var(name).ok())?;
//! # Ok::<(), kubeauth_core::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use kubeauth_core::{ClusterDetails, Credential, CredentialFuture, Error, ServerSideProvider, ValidationIssue};

pub use kubeauth_core::IN_CLUSTER_DIR;

/// How the provider reads an environment variable.
type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The `serviceAccount` provider. See the [crate docs](crate).
pub struct ServiceAccountProvider {
    dir: PathBuf,
    token_file: Mutex<Option<TokenFile>>,
    env: Box<EnvLookup>,
}

impl std::fmt::Debug for ServiceAccountProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountProvider")
            .field("dir", &self.dir)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// The last token read from the file, and what the file looked like then.
struct TokenFile {
    stamp: FileStamp,
    token: String,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile").field("stamp", &self.stamp).field("token", &"[redacted]").finish()
    }
}

/// What identifies one version of the token file: the kubelet swaps a symlink to a new file on rotation, so the
/// inode changes; the modification time and size catch files rewritten in place.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Self { modified: metadata.modified().ok(), len: metadata.len(), inode }
    }
}

impl Default for ServiceAccountProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceAccountProvider {
    /// The provider key, as written in `authProvider`.
    pub const KEY: &'static str = "serviceAccount";

    /// Reads the in-cluster token from [`IN_CLUSTER_DIR`] when a cluster has no `serviceAccountToken`.
    pub fn new() -> Self {
        Self::with_token_dir(IN_CLUSTER_DIR)
    }

    /// Reads the in-cluster token (`token`) and CA (`ca.crt`) from `dir` instead.
    pub fn with_token_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), token_file: Mutex::new(None), env: Box::new(|name| std::env::var(name).ok()) }
    }

    /// Reads `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` through `env` instead of the process
    /// environment (see [`ServerSideProvider::endpoint`]).
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Box::new(env);
        self
    }

    /// The in-cluster token file.
    pub fn token_path(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// The cluster this process runs in: the API server from `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT` (read through `env`), the CA from `ca.crt`, authenticated by this provider.
    pub fn in_cluster_details(
        &self,
        name: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ClusterDetails, Error> {
        let missing = |var: &str| Error::NotConfigured {
            cluster: name.to_owned(),
            provider: Self::KEY.to_owned(),
            reason: format!("{var} is not set: this process does not run in a Kubernetes pod"),
        };
        let host = env("KUBERNETES_SERVICE_HOST")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| missing("KUBERNETES_SERVICE_HOST"))?;
        let port = env("KUBERNETES_SERVICE_PORT")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| missing("KUBERNETES_SERVICE_PORT"))?;
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        let mut cluster = ClusterDetails::new(name, format!("https://{host}:{port}"));
        cluster.set_auth_provider(Self::KEY);
        cluster.ca_file = Some(self.dir.join("ca.crt"));
        cluster.source = "in-cluster".into();
        Ok(cluster)
    }

    /// The token in the file, read again only when the file changed.
    fn file_token(&self, cluster: &ClusterDetails) -> Result<String, Error> {
        let path = self.token_path();
        let io_error = |source| Error::Io {
            cluster: cluster.name.clone(),
            key: "serviceAccountToken (not set, so the in-cluster token file)".into(),
            path: path.clone(),
            source,
        };
        let stamp = FileStamp::of(&std::fs::metadata(&path).map_err(io_error)?);
        let mut cached = self.token_file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = cached.as_ref().filter(|f| f.stamp == stamp) {
            return Ok(file.token.clone());
        }
        let token = std::fs::read_to_string(&path).map_err(io_error)?.trim().to_owned();
        if token.is_empty() {
            return Err(Error::Config {
                cluster: cluster.name.clone(),
                key: "serviceAccountToken".into(),
                message: format!("not set, and the in-cluster token file `{}` is empty", path.display()),
            });
        }
        if cached.is_some() {
            tracing::info!(cluster = %cluster.name, path = %path.display(), "service-account token file changed; using the new token");
        }
        *cached = Some(TokenFile { stamp, token: token.clone() });
        Ok(token)
    }
}

impl ServerSideProvider for ServiceAccountProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move {
            if let Some(token) = &cluster.service_account_token {
                use kubeauth_core::ExposeSecret;
                return Ok(Credential::bearer(token.expose_secret()));
            }
            self.file_token(cluster).map(Credential::bearer)
        })
    }

    /// As Backstage: a cluster with no `serviceAccountToken`, in a pod (its CA file is there and
    /// `KUBERNETES_SERVICE_HOST` is set), is reached at the pod's own API server with the pod's CA and token,
    /// whatever its `url` says.
    fn endpoint(&self, cluster: &ClusterDetails) -> Option<ClusterDetails> {
        if cluster.service_account_token.is_some() || !self.dir.join("ca.crt").is_file() {
            return None;
        }
        let here = self.in_cluster_details(&cluster.name, &self.env).ok()?;
        let mut reached = cluster.clone();
        reached.url = here.url;
        reached.ca_file = here.ca_file;
        reached.ca_data = None;
        reached.skip_tls_verify = false;
        reached.connect_addresses = Vec::new();
        Some(reached)
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        use kubeauth_core::ExposeSecret;
        match &cluster.service_account_token {
            Some(token) if token.expose_secret().trim().is_empty() => {
                vec![ValidationIssue::new("serviceAccountToken", "is empty")]
            }
            Some(_) => vec![],
            None if !Path::new(&self.token_path()).exists() => vec![ValidationIssue::new(
                "serviceAccountToken",
                format!(
                    "not set, and there is no in-cluster token file at `{}`: set the token, or run in a pod",
                    self.token_path().display()
                ),
            )],
            None => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use kubeauth_core::ExposeSecret;

    use super::*;

    fn token_of(c: &Credential) -> String {
        match c {
            Credential::BearerToken { token, .. } => token.expose_secret().to_owned(),
            other => panic!("{other:?}"),
        }
    }

    fn cluster() -> ClusterDetails {
        let mut c = ClusterDetails::new("prod", "https://10.0.0.1:6443");
        c.set_auth_provider(ServiceAccountProvider::KEY);
        c
    }

    #[tokio::test]
    async fn a_configured_token_is_sent() {
        let mut c = cluster();
        c.service_account_token = Some("configured".into());
        let provider = ServiceAccountProvider::with_token_dir("/nonexistent");
        assert_eq!(provider.validate_cluster(&c), vec![]);
        assert_eq!(token_of(&provider.credential(&c).await.unwrap()), "configured");
    }

    #[tokio::test]
    async fn a_rotated_token_file_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let provider = ServiceAccountProvider::with_token_dir(dir.path());
        std::fs::write(dir.path().join("token"), "first\n").unwrap();
        assert_eq!(token_of(&provider.credential(&cluster()).await.unwrap()), "first");
        assert_eq!(token_of(&provider.credential(&cluster()).await.unwrap()), "first");

        // The kubelet's way: write a new file, then swap it in atomically.
        std::fs::write(dir.path().join("token.new"), "second-rotated").unwrap();
        std::fs::rename(dir.path().join("token.new"), dir.path().join("token")).unwrap();
        assert_eq!(token_of(&provider.credential(&cluster()).await.unwrap()), "second-rotated");
    }

    #[tokio::test]
    async fn a_missing_token_file_names_the_cluster_key_and_path() {
        let provider = ServiceAccountProvider::with_token_dir("/nonexistent/sa");
        let issues = provider.validate_cluster(&cluster());
        assert_eq!(issues[0].key, "serviceAccountToken");
        let err = provider.credential(&cluster()).await.unwrap_err();
        let shown = kubeauth_core::report(&err);
        assert!(shown.contains("cluster 'prod'") && shown.contains("/nonexistent/sa/token"), "{shown}");
    }

    #[test]
    fn in_cluster_details_come_from_the_environment() {
        let provider = ServiceAccountProvider::with_token_dir("/sa");
        let env = |n: &str| match n {
            "KUBERNETES_SERVICE_HOST" => Some("fd00::1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            _ => None,
        };
        let c = provider.in_cluster_details("here", env).unwrap();
        assert_eq!(c.url, "https://[fd00::1]:443");
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/sa/ca.crt")));
        assert_eq!(c.auth_provider(), Some("serviceAccount"));
        let err = provider.in_cluster_details("here", |_| None).unwrap_err();
        assert!(err.to_string().contains("KUBERNETES_SERVICE_HOST"), "{err}");
    }

    #[test]
    fn in_a_pod_a_cluster_without_token_is_reached_at_the_pods_api_server() {
        let dir = tempfile::tempdir().unwrap();
        let env = |n: &str| match n {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_owned()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_owned()),
            _ => None,
        };
        let provider = ServiceAccountProvider::with_token_dir(dir.path()).with_env(env);
        let mut located = cluster();
        located.ca_data = Some("elsewhere".into());
        assert!(provider.endpoint(&located).is_none(), "not in a pod: no CA file");
        std::fs::write(dir.path().join("ca.crt"), "pem").unwrap();
        let reached = provider.endpoint(&located).unwrap();
        assert_eq!((reached.name.as_str(), reached.url.as_str()), (located.name.as_str(), "https://10.96.0.1:443"));
        assert_eq!((reached.ca_file, reached.ca_data), (Some(dir.path().join("ca.crt")), None));
        located.service_account_token = Some("configured".to_owned().into());
        assert!(provider.endpoint(&located).is_none(), "a configured token keeps the located cluster");
        let outside = ServiceAccountProvider::with_token_dir(dir.path()).with_env(|_| None);
        located.service_account_token = None;
        assert!(outside.endpoint(&located).is_none(), "no KUBERNETES_SERVICE_HOST: as located");
    }

    #[test]
    fn debug_hides_the_cached_token() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hidden-token").unwrap();
        let provider = ServiceAccountProvider::with_token_dir(dir.path());
        provider.file_token(&cluster()).unwrap();
        assert!(!format!("{provider:?}").contains("hidden-token"));
    }
}
