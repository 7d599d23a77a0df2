use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use kubeauth_core::{ClusterDetails, ValidationIssue, metadata};

use super::file::{self, FromFile, Merged, UserEntry};
use crate::combined::{ClusterLocator, ClustersFuture};
use crate::{Located, LocatorError};

/// The settings of a `kubeconfig` method, resolved.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct KubeconfigSettings {
    /// The files, merged as kubectl merges `KUBECONFIG` (the first file that sets a name wins).
    pub files: Vec<PathBuf>,
    /// Whether every file must exist (a `path` given in the config); files of `KUBECONFIG` that do not exist
    /// are skipped, as kubectl skips them.
    pub files_must_exist: bool,
    /// The contexts to serve; empty: every context of the files.
    pub contexts: Vec<String>,
}

impl KubeconfigSettings {
    /// One file, which must exist (a `path` of the config).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self { files: vec![path.into()], files_must_exist: true, contexts: Vec::new() }
    }

    /// Only these contexts.
    #[must_use]
    pub fn with_contexts(mut self, contexts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.contexts = contexts.into_iter().map(Into::into).collect();
        self
    }

    /// The files kubectl reads: those of `KUBECONFIG` (split on `:`), else `~/.kube/config`.
    pub fn kubectl_default(env: impl Fn(&str) -> Option<String>) -> Self {
        let files: Vec<PathBuf> = match env("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(list) => std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect(),
            None => env("HOME").map(|home| PathBuf::from(home).join(".kube").join("config")).into_iter().collect(),
        };
        Self { files, files_must_exist: false, contexts: Vec::new() }
    }
}

/// The `kubeconfig` method: one cluster per context of kubectl's kubeconfig files.
///
/// Each context gives a cluster of the context's name, with its cluster's `server`, CA
/// (`certificate-authority[-data]`), `insecure-skip-tls-verify`, `tls-server-name` and `proxy-url`. Its user
/// decides the provider: a user with a `token` only is a `serviceAccount` cluster with that token (as if written
/// in the config); any other credential (`tokenFile`, a client certificate, an `exec` plugin, the legacy
/// `auth-provider: oidc`) is served by the `kubeconfig` provider, which reads the user from its file at each
/// credential ([`KubeconfigProvider`](super::KubeconfigProvider)).
///
/// The files are read again when asked for clusters; an unchanged text gives the same list, and a file that no
/// longer reads keeps the last good list (the failure is logged). A context kubeauth cannot serve (basic
/// authentication, impersonation, a missing cluster) is skipped with a warning, unless `contexts` names it:
/// then it is an error when the locator is built.
pub struct KubeconfigLocator {
    settings: KubeconfigSettings,
    method: String,
    last: Mutex<Option<(Texts, Located)>>,
    /// The last failure to read the files, said once.
    failure: Mutex<Option<String>>,
}

/// The files' texts a list was made from.
type Texts = Vec<(PathBuf, String)>;

impl std::fmt::Debug for KubeconfigLocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeconfigLocator").field("settings", &self.settings).field("method", &self.method).finish()
    }
}

impl KubeconfigLocator {
    /// Reads the files now: an unreadable or broken file, or a context of `contexts` that is missing or cannot
    /// be served, is an error naming the file, the context and the key. `method` names the locator in
    /// messages and in each cluster's `source`.
    pub fn new(settings: KubeconfigSettings, method: impl Into<String>) -> Result<Self, LocatorError> {
        let locator = Self { settings, method: method.into(), last: Mutex::new(None), failure: Mutex::new(None) };
        let texts = file::read_all(&locator.settings.files, locator.settings.files_must_exist)
            .map_err(|e| locator.failed(e.to_string()))?;
        let merged = file::merge(&texts).map_err(|e| locator.failed(e.to_string()))?;
        for wanted in &locator.settings.contexts {
            if !merged.contexts.iter().any(|(name, _)| name == wanted) {
                return Err(locator.failed(format!(
                    "contexts: no context `{wanted}` in {} (contexts there: {})",
                    locator.files_text(),
                    merged.contexts.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let (clusters, skipped) = locator.clusters_of(&merged);
        for (context, reason) in skipped {
            if locator.settings.contexts.contains(&context) {
                return Err(locator.failed(reason));
            }
            tracing::warn!(method = %locator.method, "{reason}: skipped");
        }
        *locator.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((texts, clusters.into()));
        Ok(locator)
    }

    fn failed(&self, message: String) -> LocatorError {
        LocatorError::Locator { method: self.method.clone(), source: message.into() }
    }

    fn files_text(&self) -> String {
        self.settings.files.iter().map(|f| format!("`{}`", f.display())).collect::<Vec<_>>().join(", ")
    }

    /// The clusters of the merged files, and the contexts skipped with why.
    fn clusters_of(&self, merged: &Merged) -> (Vec<ClusterDetails>, Vec<(String, String)>) {
        let mut clusters = Vec::new();
        let mut skipped = Vec::new();
        for (name, context) in &merged.contexts {
            if !self.settings.contexts.is_empty() && !self.settings.contexts.contains(name) {
                continue;
            }
            match self.cluster_of(name, context, merged) {
                Ok(cluster) => clusters.push(cluster),
                Err(issues) => {
                    let issues = issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                    let reason = format!("context `{name}` of `{}`: {issues}", context.file.display());
                    skipped.push((name.clone(), reason));
                }
            }
        }
        (clusters, skipped)
    }

    fn cluster_of(
        &self,
        name: &str,
        context: &FromFile<file::ContextEntry>,
        merged: &Merged,
    ) -> Result<ClusterDetails, Vec<ValidationIssue>> {
        let key = |k: &str| format!("contexts[{name}].context.{k}");
        let cluster_name = context.value.cluster.as_deref().unwrap_or_default();
        let Some(entry) = merged.clusters.get(cluster_name) else {
            return Err(vec![ValidationIssue::new(key("cluster"), format!("no cluster `{cluster_name}`"))]);
        };
        let c = &entry.value;
        let mut cluster = ClusterDetails::new(name, c.server.clone().unwrap_or_default());
        cluster.ca_data = c.certificate_authority_data.clone().filter(|d| !d.is_empty());
        cluster.ca_file = c.certificate_authority.as_deref().filter(|p| !p.is_empty()).map(|p| entry.path(p));
        cluster.skip_tls_verify = c.insecure_skip_tls_verify;
        cluster.tls_server_name = c.tls_server_name.clone().filter(|n| !n.is_empty());
        cluster.proxy_url = c.proxy_url.clone().filter(|p| !p.is_empty());
        cluster.source = format!("{}, {}, context {name}", self.method, context.file.display());

        let user_name = context.value.user.as_deref().unwrap_or_default();
        let user = merged.users.get(user_name);
        let mut issues = Vec::new();
        match user.map(|u| user_credential(u, user_name)) {
            None if user_name.is_empty() && cluster.url.starts_with("http://") => {
                // No user: a `kubectl proxy` (or another local endpoint that authenticates for you).
                cluster.set_auth_provider("localKubectlProxy");
            }
            None => issues.push(ValidationIssue::new(key("user"), format!("no user `{user_name}`"))),
            Some(Err(issue)) => issues.push(issue),
            Some(Ok(UserCredential::Token(token))) => {
                cluster.set_auth_provider("serviceAccount");
                cluster.service_account_token = Some(token.into());
            }
            Some(Ok(UserCredential::FromFile)) => {
                cluster.set_auth_provider(super::KubeconfigProvider::KEY);
                let file = user.map(|u| u.file.display().to_string()).unwrap_or_default();
                cluster.auth_metadata.insert(metadata::KUBECONFIG_FILE.into(), file);
                cluster.auth_metadata.insert(metadata::KUBECONFIG_USER.into(), user_name.into());
            }
        }
        // Checks that hold for every cluster (server, CA, proxy), named with kubeconfig's keys.
        for issue in cluster.validate() {
            let k = match issue.key.as_str() {
                "url" => format!("clusters[{cluster_name}].cluster.server"),
                "caData" => format!("clusters[{cluster_name}].cluster.certificate-authority-data"),
                "caFile" => format!("clusters[{cluster_name}].cluster.certificate-authority"),
                "proxyUrl" => format!("clusters[{cluster_name}].cluster.proxy-url"),
                "tlsServerName" => format!("clusters[{cluster_name}].cluster.tls-server-name"),
                "authProvider" if !issues.is_empty() => continue,
                other => other.to_owned(),
            };
            issues.push(ValidationIssue::new(k, issue.message));
        }
        if issues.is_empty() { Ok(cluster) } else { Err(issues) }
    }
}

/// What a kubeconfig user gives.
enum UserCredential {
    /// A `token` and nothing else: the same as a `serviceAccount` cluster with that token.
    Token(String),
    /// Anything the `kubeconfig` provider reads from the file at each credential.
    FromFile,
}

/// How kubeauth serves `user`, or why it cannot.
fn user_credential(user: &FromFile<UserEntry>, name: &str) -> Result<UserCredential, ValidationIssue> {
    let u = &user.value;
    let key = |k: &str| format!("users[{name}].user.{k}");
    if u.username.is_some() || u.password.is_some() {
        return Err(ValidationIssue::new(
            key("username"),
            "basic authentication is not supported (Kubernetes removed it in 1.19)",
        ));
    }
    if u.impersonate.is_some() || u.impersonate_groups.is_some() {
        return Err(ValidationIssue::new(
            key("as"),
            "impersonation from a kubeconfig is not supported; kubeauth serve impersonates its callers with kubeauth.server.impersonation",
        ));
    }
    if let Some(provider) = &u.auth_provider
        && provider.name != "oidc"
    {
        return Err(ValidationIssue::new(
            key("auth-provider.name"),
            format!(
                "`{}` is not supported (kubectl removed its in-tree auth providers but oidc); use the exec plugin that replaced it",
                provider.name
            ),
        ));
    }
    let has_certificate = u.client_certificate.is_some() || u.client_certificate_data.is_some();
    let has_key = u.client_key.is_some() || u.client_key_data.is_some();
    if has_certificate != has_key {
        let missing = if has_certificate { "client-key" } else { "client-certificate" };
        return Err(ValidationIssue::new(
            key(missing),
            format!("missing: a client certificate needs both {missing} and its pair"),
        ));
    }
    if u.exec.is_some() || u.auth_provider.is_some() || has_certificate || u.token_file.is_some() {
        return Ok(UserCredential::FromFile);
    }
    match u.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Ok(UserCredential::Token(token.to_owned())),
        None => Err(ValidationIssue::new(key("token"), "missing: the user has no credential kubeauth can present")),
    }
}

impl ClusterLocator for KubeconfigLocator {
    fn clusters(&self) -> ClustersFuture<'_> {
        Box::pin(async move {
            let read = file::read_all(&self.settings.files, self.settings.files_must_exist);
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            // Unchanged text: the same list, without parsing (this runs at every listing).
            let read = match read {
                Ok(texts) if last.as_ref().is_some_and(|(held, _)| *held == texts) => Ok(None),
                Ok(texts) => file::merge(&texts).map(|merged| Some((merged, texts))),
                Err(e) => Err(e),
            };
            match read {
                Ok(None) => {}
                Ok(Some((merged, texts))) => {
                    let (clusters, skipped) = self.clusters_of(&merged);
                    for (_, reason) in skipped {
                        tracing::warn!(method = %self.method, "{reason}: skipped");
                    }
                    *last = Some((texts, clusters.into()));
                    *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                Err(e) if last.is_some() => {
                    // Said once per failure, not at every listing.
                    let message = e.to_string();
                    let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
                    if failure.as_deref() != Some(message.as_str()) {
                        tracing::warn!(method = %self.method, "{message}; keeping the clusters read before");
                        *failure = Some(message);
                    }
                }
                Err(e) => return Err(self.failed(e.to_string())),
            }
            Ok(last.as_ref().map(|(_, clusters)| clusters.clone()).unwrap_or_else(|| Vec::new().into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const FILE: &str = "
clusters:
- {name: c, cluster: {server: 'https://10.0.0.1:6443', tls-server-name: api.example, proxy-url: 'http://proxy:3128'}}
- {name: local, cluster: {server: 'http://127.0.0.1:8001'}}
users:
- {name: token, user: {token: t0ken}}
- {name: cert, user: {client-certificate: c.crt, client-key: c.key}}
- {name: half, user: {client-certificate: c.crt}}
- {name: basic, user: {username: u, password: p4ss}}
- {name: gcp, user: {auth-provider: {name: gcp}}}
contexts:
- {name: token, context: {cluster: c, user: token}}
- {name: cert, context: {cluster: c, user: cert}}
- {name: proxy, context: {cluster: local}}
- {name: half, context: {cluster: c, user: half}}
- {name: basic, context: {cluster: c, user: basic}}
- {name: gcp, context: {cluster: c, user: gcp}}
- {name: nowhere, context: {cluster: missing, user: token}}
";

    fn locator(dir: &std::path::Path, text: &str, contexts: &[&str]) -> Result<KubeconfigLocator, LocatorError> {
        let path = dir.join("config");
        std::fs::write(&path, text).unwrap();
        let settings = KubeconfigSettings::file(path).with_contexts(contexts.iter().copied());
        KubeconfigLocator::new(settings, "clusterLocatorMethods[0] (kubeconfig)")
    }

    fn names(located: &Located) -> Vec<(String, Option<String>)> {
        located.iter().map(|c| (c.name.clone(), c.auth_provider().map(str::to_owned))).collect()
    }

    #[tokio::test]
    async fn contexts_kubeauth_cannot_serve_are_skipped_and_the_others_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let located = locator(dir.path(), FILE, &[]).unwrap().clusters().await.unwrap();
        assert_eq!(
            names(&located),
            [
                ("token".into(), Some("serviceAccount".into())),
                ("cert".into(), Some("kubeconfig".into())),
                ("proxy".into(), Some("localKubectlProxy".into())),
            ]
        );
        let cert = &located[1];
        assert_eq!(cert.tls_server_name.as_deref(), Some("api.example"));
        assert_eq!(cert.proxy_url.as_deref(), Some("http://proxy:3128"));
        assert_eq!(cert.auth_metadata[metadata::KUBECONFIG_USER], "cert");
        assert_eq!(cert.auth_metadata[metadata::KUBECONFIG_FILE], dir.path().join("config").display().to_string());
        assert!(!format!("{:?}", located[0]).contains("t0ken"), "no token in Debug");
    }

    #[test]
    fn a_named_context_that_cannot_be_served_stops_the_start_with_file_context_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config").display().to_string();
        for (context, key, says) in [
            ("half", "users[half].user.client-key", "missing"),
            ("basic", "users[basic].user.username", "basic authentication is not supported"),
            ("gcp", "users[gcp].user.auth-provider.name", "`gcp` is not supported"),
            ("nowhere", "contexts[nowhere].context.cluster", "no cluster `missing`"),
        ] {
            let err = locator(dir.path(), FILE, &[context]).unwrap_err();
            let message = kubeauth_core::report(&err);
            assert!(message.contains(&format!("context `{context}` of `{file}`")), "{message}");
            assert!(message.contains(&format!("{key}: {says}")), "{message}");
            assert!(!message.contains("p4ss"), "{message}");
        }
        let err = kubeauth_core::report(&locator(dir.path(), FILE, &["prod"]).unwrap_err());
        assert!(err.contains("contexts: no context `prod`") && err.contains("token, cert, proxy"), "{err}");
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_list() {
        let dir = tempfile::tempdir().unwrap();
        let locator = locator(dir.path(), FILE, &[]).unwrap();
        let first = locator.clusters().await.unwrap();
        assert!(Arc::ptr_eq(&first, &locator.clusters().await.unwrap()), "unchanged: the same list");
        let path = dir.path().join("config");
        std::fs::write(&path, FILE.replace("name: proxy", "name: renamed")).unwrap();
        let second = locator.clusters().await.unwrap();
        assert_eq!(second[2].name, "renamed");
        std::fs::write(&path, "clusters: [").unwrap();
        assert!(Arc::ptr_eq(&second, &locator.clusters().await.unwrap()), "a broken file keeps the last list");
    }
}
