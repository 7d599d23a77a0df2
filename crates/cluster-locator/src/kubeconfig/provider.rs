use std::path::PathBuf;

use base64::Engine as _;
use kubeauth_core::{
    ClusterDetails, Credential, CredentialFuture, Error, ServerSideProvider, ValidationIssue, metadata,
};

use super::exec::ExecPlugins;
use super::file::{self, FromFile, UserEntry};
use super::oidc::OidcRefresher;

/// The `kubeconfig` provider: the credential of a kubeconfig user, as kubectl would present it.
///
/// It serves the clusters of the [`KubeconfigLocator`](super::KubeconfigLocator), whose auth metadata name the
/// file and the user (`kubeauth.io/kubeconfig-file`, `kubeauth.io/kubeconfig-user`); the user is read from the
/// file at each credential, so a rotated token file or certificate is picked up. In kubectl's order:
/// 1. `exec`: the plugin is run as kubectl runs it (ExecCredential `client.authentication.k8s.io/v1` or
///    `v1beta1`, `KUBERNETES_EXEC_INFO` with `interactive` and, with `provideClusterInfo`, the cluster), and its
///    answer — a token or a client certificate — is kept until a minute before its `expirationTimestamp` (one
///    without is kept five minutes);
/// 2. `auth-provider: oidc` (legacy): the `id-token` while valid, then a new one from the issuer's token
///    endpoint with the `refresh-token` (kept in memory; the file is not written);
/// 3. a client certificate (`client-certificate[-data]` and `client-key[-data]`), presented in the TLS
///    handshake (it wins over a token, as the API server's x509 authenticator runs first);
/// 4. `tokenFile`, read again each time, else `token`.
///
/// A server-side provider: the credential is the identity of whoever runs kubeauth. Catalog entities can never
/// name the file or the user (the catalog locator passes `kubernetes.io/` annotations only).
#[derive(Debug, Default)]
pub struct KubeconfigProvider {
    exec: ExecPlugins,
    oidc: OidcRefresher,
}

impl KubeconfigProvider {
    /// The provider's key (`authProvider: kubeconfig`).
    pub const KEY: &'static str = "kubeconfig";

    /// A provider with empty caches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refreshes legacy `auth-provider: oidc` ID tokens with `refresh` (without it, an expired one is an error).
    #[must_use]
    pub fn with_oidc_refresh(mut self, refresh: std::sync::Arc<dyn super::OidcRefresh>) -> Self {
        self.oidc.refresh = Some(refresh);
        self
    }

    /// The file and the user of `cluster`, from its auth metadata.
    fn user_ref(cluster: &ClusterDetails) -> Result<(PathBuf, String), Vec<ValidationIssue>> {
        let get = |key: &str| cluster.auth_metadata.get(key).filter(|v| !v.is_empty());
        match (get(metadata::KUBECONFIG_FILE), get(metadata::KUBECONFIG_USER)) {
            (Some(file), Some(user)) => Ok((PathBuf::from(file), user.clone())),
            _ => Err(vec![ValidationIssue::new(
                "authProvider",
                format!(
                    "`{}` serves the clusters of a kubeconfig locator only (auth metadata `{}` and `{}`)",
                    Self::KEY,
                    metadata::KUBECONFIG_FILE,
                    metadata::KUBECONFIG_USER
                ),
            )]),
        }
    }

    async fn fetch(&self, cluster: &ClusterDetails) -> Result<Credential, Error> {
        let (file, user_name) = Self::user_ref(cluster)
            .map_err(|issues| Error::InvalidCluster { cluster: cluster.name.clone(), issues })?;
        let user =
            file::user_of(&file, &user_name).map_err(|e| config_error(cluster, &user_name, "", e.to_string()))?;
        let u = &user.value;
        if let Some(exec) = &u.exec {
            return self.exec.credential(cluster, &user, &user_name, exec).await;
        }
        if let Some(provider) = &u.auth_provider {
            return self.oidc.credential(cluster, &user, &user_name, provider).await;
        }
        if let Some(credential) = client_certificate(cluster, &user, &user_name)? {
            return Ok(credential);
        }
        if let Some(path) = &u.token_file {
            let path = user.path(path);
            let token = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                cluster: cluster.name.clone(),
                key: format!("users[{user_name}].user.tokenFile"),
                path,
                source,
            })?;
            return Ok(Credential::bearer(token.trim()));
        }
        match u.token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => Ok(Credential::bearer(token)),
            None => Err(config_error(cluster, &user_name, "token", "missing: the user has no credential".into())),
        }
    }
}

/// A [`Error::Config`] about key `key` of user `user` (the whole user when `key` is empty).
pub(super) fn config_error(cluster: &ClusterDetails, user: &str, key: &str, message: String) -> Error {
    let key = if key.is_empty() { format!("users[{user}]") } else { format!("users[{user}].user.{key}") };
    Error::Config { cluster: cluster.name.clone(), key, message }
}

/// The user's client certificate and key, from `*-data` (base64 of PEM) or files, if it has them.
fn client_certificate(
    cluster: &ClusterDetails,
    user: &FromFile<UserEntry>,
    name: &str,
) -> Result<Option<Credential>, Error> {
    let u = &user.value;
    let read = |data: &Option<String>, path: &Option<String>, key: &str| -> Result<Option<String>, Error> {
        if let Some(data) = data.as_deref().filter(|d| !d.is_empty()) {
            let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| config_error(cluster, name, &format!("{key}-data"), format!("not valid base64 ({e})")))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| config_error(cluster, name, &format!("{key}-data"), "not PEM text".into()))?;
            return Ok(Some(text));
        }
        let Some(path) = path.as_deref().filter(|p| !p.is_empty()) else { return Ok(None) };
        let path = user.path(path);
        std::fs::read_to_string(&path).map(Some).map_err(|source| Error::Io {
            cluster: cluster.name.clone(),
            key: format!("users[{name}].user.{key}"),
            path,
            source,
        })
    };
    let certificate = read(&u.client_certificate_data, &u.client_certificate, "client-certificate")?;
    let key = read(&u.client_key_data, &u.client_key, "client-key")?;
    Ok(certificate.zip(key).map(|(certificate, key)| Credential::client_certificate(certificate, key)))
}

impl ServerSideProvider for KubeconfigProvider {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(self.fetch(cluster))
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        Self::user_ref(cluster).err().unwrap_or_default()
    }
}
