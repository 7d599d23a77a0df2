//! The credential cache of `kubeauth token`: one file per cluster in the `credentials` folder of kubeauth's
//! [`FileStore`], and its lock so that parallel kubectl invocations refresh once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kubeauth::core::store::{FileStore, StoreError, StoreLock};
use kubeauth::{ClusterDetails, Credential, core::ExposeSecret};
use serde::{Deserialize, Serialize};

/// A credential is served from the cache only while it stays valid this much longer.
pub(crate) const MARGIN: Duration = Duration::from_secs(60);

pub(crate) struct DiskCache {
    files: FileStore,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Stored {
    #[serde(rename_all = "camelCase")]
    Bearer { token: String, expires_at: u64 },
    #[serde(rename_all = "camelCase")]
    ClientCertificate { certificate: String, key: String, expires_at: u64 },
}

impl DiskCache {
    /// `credentials/` under kubeauth's folder (`$KUBEAUTH_CACHE_DIR`, else `$XDG_CACHE_HOME/kubeauth`, else
    /// `~/.cache/kubeauth`).
    pub(crate) fn open() -> Result<Self, StoreError> {
        Ok(Self { files: FileStore::user()?.folder("credentials")? })
    }

    /// The file name of a cluster's credential: its name, and a hash of what selects its identity.
    fn key(cluster: &ClusterDetails) -> String {
        let mut hasher = DefaultHasher::new();
        cluster.name.hash(&mut hasher);
        cluster.url.hash(&mut hasher);
        cluster.auth_metadata.hash(&mut hasher);
        let safe: String = cluster
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .take(40)
            .collect();
        format!("{safe}-{:016x}.json", hasher.finish())
    }

    /// The cached credential if it is valid for longer than [`MARGIN`].
    pub(crate) fn read(&self, cluster: &ClusterDetails) -> Result<Option<Credential>, StoreError> {
        let Some(bytes) = self.files.read(&Self::key(cluster))? else { return Ok(None) };
        let Ok(stored) = serde_json::from_slice::<Stored>(&bytes) else { return Ok(None) };
        let (credential, expires_at) = match stored {
            Stored::Bearer { token, expires_at } => (Credential::bearer(token), expires_at),
            Stored::ClientCertificate { certificate, key, expires_at } => {
                (Credential::client_certificate(certificate, key), expires_at)
            }
        };
        let credential = credential.with_expiry(UNIX_EPOCH + Duration::from_secs(expires_at));
        Ok(credential.is_fresh_at(SystemTime::now(), MARGIN).then_some(credential))
    }

    /// Stores a credential that has an expiry (one without is fetched every time: no stale token on disk).
    pub(crate) fn write(&self, cluster: &ClusterDetails, credential: &Credential) -> Result<(), StoreError> {
        let Some(expires_at) =
            credential.expires_at().and_then(|at| at.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs())
        else {
            return Ok(());
        };
        let stored = match credential {
            Credential::BearerToken { token, .. } => {
                Stored::Bearer { token: token.expose_secret().to_owned(), expires_at }
            }
            Credential::ClientCertificate { certificate_pem, private_key_pem, .. } => Stored::ClientCertificate {
                certificate: certificate_pem.clone(),
                key: private_key_pem.expose_secret().to_owned(),
                expires_at,
            },
            _ => return Ok(()),
        };
        let bytes = serde_json::to_vec(&stored).unwrap_or_default();
        self.files.write(&Self::key(cluster), &bytes)
    }

    /// Waits for and holds the cluster's lock until the returned guard is dropped.
    pub(crate) async fn lock(&self, cluster: &ClusterDetails) -> Result<StoreLock, StoreError> {
        self.files.lock(&Self::key(cluster)).await
    }

    #[cfg(test)]
    fn in_dir(dir: std::path::PathBuf) -> Self {
        Self { files: FileStore::at(dir) }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn cluster() -> ClusterDetails {
        let mut c = ClusterDetails::new("prod eu", "https://10.0.0.1");
        c.set_auth_provider("aws");
        c
    }

    #[test]
    fn round_trips_with_0600_files_and_honours_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::in_dir(dir.path().join("creds"));
        let hour = SystemTime::now() + Duration::from_secs(3600);
        cache.write(&cluster(), &Credential::bearer_until("cached-token", hour)).unwrap();
        let got = cache.read(&cluster()).unwrap().unwrap();
        assert!(matches!(&got, Credential::BearerToken { token, .. } if token.expose_secret() == "cached-token"));

        let files: Vec<_> = std::fs::read_dir(dir.path().join("creds")).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("creds")).unwrap().permissions().mode() & 0o777, 0o700);

        // Inside the margin: not served.
        cache
            .write(&cluster(), &Credential::bearer_until("soon", SystemTime::now() + Duration::from_secs(30)))
            .unwrap();
        assert!(cache.read(&cluster()).unwrap().is_none());
    }

    #[test]
    fn credentials_without_expiry_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::in_dir(dir.path().to_owned());
        cache.write(&cluster(), &Credential::bearer("forever")).unwrap();
        assert!(cache.read(&cluster()).unwrap().is_none());
    }
}
