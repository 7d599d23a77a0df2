//! kubectl's kubeconfig files: the parts kubeauth reads, and the merge of a `KUBECONFIG` list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One kubeconfig file as written (`apiVersion: v1`, `kind: Config`). Unknown keys are ignored, as kubectl
/// ignores them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KubeconfigFile {
    #[serde(default)]
    clusters: Option<Vec<Named<ClusterEntry>>>,
    #[serde(default)]
    users: Option<Vec<Named<UserEntry>>>,
    #[serde(default)]
    contexts: Option<Vec<Named<ContextEntry>>>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

/// `{name, <kind>: {...}}`, the shape of every list entry of a kubeconfig.
#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

/// `clusters[].cluster`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct ClusterEntry {
    pub(crate) server: Option<String>,
    pub(crate) certificate_authority: Option<String>,
    pub(crate) certificate_authority_data: Option<String>,
    #[serde(default)]
    pub(crate) insecure_skip_tls_verify: bool,
    pub(crate) tls_server_name: Option<String>,
    pub(crate) proxy_url: Option<String>,
}

/// `users[].user`. The exec section keeps kubectl's camelCase keys, the others their kebab-case ones.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct UserEntry {
    pub(crate) token: Option<String>,
    #[serde(rename = "tokenFile")]
    pub(crate) token_file: Option<String>,
    pub(crate) client_certificate: Option<String>,
    pub(crate) client_certificate_data: Option<String>,
    pub(crate) client_key: Option<String>,
    pub(crate) client_key_data: Option<String>,
    pub(crate) exec: Option<ExecEntry>,
    pub(crate) auth_provider: Option<AuthProviderEntry>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    #[serde(rename = "as")]
    pub(crate) impersonate: Option<String>,
    #[serde(rename = "as-groups")]
    pub(crate) impersonate_groups: Option<Vec<String>>,
}

/// `users[].user.exec`: a credential plugin.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecEntry {
    pub(crate) command: Option<String>,
    #[serde(default)]
    pub(crate) args: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) env: Option<Vec<ExecEnv>>,
    pub(crate) api_version: Option<String>,
    pub(crate) install_hint: Option<String>,
    #[serde(default)]
    pub(crate) provide_cluster_info: bool,
    pub(crate) interactive_mode: Option<String>,
}

/// One `exec.env` entry.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ExecEnv {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// `users[].user.auth-provider`: a legacy in-tree plugin (`oidc`; `gcp` and `azure` are gone from kubectl).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct AuthProviderEntry {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) config: BTreeMap<String, String>,
}

/// `contexts[].context`.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ContextEntry {
    pub(crate) cluster: Option<String>,
    pub(crate) user: Option<String>,
}

/// An entry and the file it came from (relative paths in it are relative to that file's folder).
#[derive(Clone, Debug)]
pub(crate) struct FromFile<T> {
    pub(crate) value: T,
    pub(crate) file: PathBuf,
}

impl<T> FromFile<T> {
    /// `path` as kubectl reads a path of this entry: relative to the folder of its file.
    pub(crate) fn path(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() { path.to_owned() } else { self.file.parent().unwrap_or(Path::new("")).join(path) }
    }
}

/// The kubeconfig kubectl sees: every file of the list merged, the first file that sets a name winning (kubectl's
/// rule for `KUBECONFIG=a:b`), entries in the order first seen.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    pub(crate) clusters: BTreeMap<String, FromFile<ClusterEntry>>,
    pub(crate) users: BTreeMap<String, FromFile<UserEntry>>,
    pub(crate) contexts: Vec<(String, FromFile<ContextEntry>)>,
    pub(crate) current_context: Option<String>,
}

/// Why a kubeconfig file cannot be used.
#[derive(Debug)]
pub(crate) struct FileError {
    pub(crate) file: PathBuf,
    pub(crate) message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kubeconfig `{}`: {}", self.file.display(), self.message)
    }
}

/// The kubeconfig files of the list, as text: a file of `KUBECONFIG` that does not exist is skipped, as kubectl
/// skips it; one named by `path` must exist.
pub(crate) fn read_all(files: &[PathBuf], must_exist: bool) -> Result<Vec<(PathBuf, String)>, FileError> {
    let mut texts = Vec::new();
    for file in files {
        match std::fs::read_to_string(file) {
            Ok(text) => texts.push((file.clone(), text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {}
            Err(e) => return Err(FileError { file: file.clone(), message: format!("cannot be read: {e}") }),
        }
    }
    Ok(texts)
}

/// Parses and merges the texts of [`read_all`].
pub(crate) fn merge(texts: &[(PathBuf, String)]) -> Result<Merged, FileError> {
    let mut merged = Merged::default();
    for (file, text) in texts {
        let parsed: KubeconfigFile = if text.trim().is_empty() {
            KubeconfigFile::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| FileError {
                file: file.clone(),
                message: crate::LocatorError::from_yaml(e, None).to_string(),
            })?
        };
        for entry in parsed.clusters.into_iter().flatten() {
            merged
                .clusters
                .entry(entry.name)
                .or_insert_with(|| FromFile { value: entry.value.unwrap_or_default(), file: file.clone() });
        }
        for entry in parsed.users.into_iter().flatten() {
            merged
                .users
                .entry(entry.name)
                .or_insert_with(|| FromFile { value: entry.value.unwrap_or_default(), file: file.clone() });
        }
        for entry in parsed.contexts.into_iter().flatten() {
            if !merged.contexts.iter().any(|(name, _)| *name == entry.name) {
                merged
                    .contexts
                    .push((entry.name, FromFile { value: entry.value.unwrap_or_default(), file: file.clone() }));
            }
        }
        if merged.current_context.is_none() {
            merged.current_context = parsed.current_context.filter(|c| !c.is_empty());
        }
    }
    Ok(merged)
}

/// The user `name` of one kubeconfig file (what the `kubeconfig` provider reads at each credential).
pub(crate) fn user_of(file: &Path, name: &str) -> Result<FromFile<UserEntry>, FileError> {
    let texts = read_all(&[file.to_owned()], true)?;
    merge(&texts)?
        .users
        .remove(name)
        .ok_or_else(|| FileError { file: file.to_owned(), message: format!("has no user `{name}` any more") })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster:
    server: https://dev.example:6443
    tls-server-name: api.dev.example
users:
- name: dev
  user:
    tokenFile: token.txt
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./plugin
      args: [get-token]
      env: [{name: A, value: b}]
      interactiveMode: Never
      provideClusterInfo: true
contexts:
- name: dev
  context: {cluster: dev, user: dev, namespace: team}
";
    const B: &str = "
clusters:
- name: dev
  cluster: {server: https://other.example}
- name: prod
  cluster: {server: https://prod.example}
contexts:
- name: dev
  context: {cluster: prod, user: nobody}
- name: prod
  context: {cluster: prod, user: dev}
current-context: prod
";

    #[test]
    fn the_first_file_that_sets_a_name_wins_as_in_kubectl() {
        let texts = vec![(PathBuf::from("/k/a"), A.to_owned()), (PathBuf::from("/k/b"), B.to_owned())];
        let merged = merge(&texts).unwrap();
        assert_eq!(merged.current_context.as_deref(), Some("dev"));
        assert_eq!(merged.clusters["dev"].value.server.as_deref(), Some("https://dev.example:6443"));
        assert_eq!(merged.clusters["dev"].value.tls_server_name.as_deref(), Some("api.dev.example"));
        assert_eq!(merged.clusters["prod"].file, PathBuf::from("/k/b"));
        let contexts: Vec<_> = merged.contexts.iter().map(|(n, c)| (n.as_str(), c.value.cluster.clone())).collect();
        assert_eq!(contexts, [("dev", Some("dev".into())), ("prod", Some("prod".into()))]);
        let user = &merged.users["dev"];
        assert_eq!(user.path("token.txt"), PathBuf::from("/k/token.txt"));
        assert_eq!(user.path("/abs/t"), PathBuf::from("/abs/t"));
        let exec = user.value.exec.as_ref().unwrap();
        assert_eq!(exec.interactive_mode.as_deref(), Some("Never"));
        assert!(exec.provide_cluster_info);
        assert_eq!(exec.env.as_ref().unwrap()[0].name, "A");
    }

    #[test]
    fn a_broken_file_is_named_with_its_line() {
        let texts = vec![(PathBuf::from("/k/bad"), "clusters:\n- name: x\n  cluster: [1\n".to_owned())];
        let err = merge(&texts).unwrap_err().to_string();
        assert!(err.starts_with("kubeconfig `/k/bad`: line "), "{err}");
    }

    #[test]
    fn missing_list_files_are_skipped_but_a_named_file_must_exist() {
        let missing = PathBuf::from("/nonexistent/kubeconfig");
        assert!(read_all(std::slice::from_ref(&missing), false).unwrap().is_empty());
        let err = read_all(&[missing], true).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/kubeconfig") && err.contains("cannot be read"), "{err}");
    }
}
