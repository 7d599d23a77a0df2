//! Client-go credential plugins (`users[].user.exec`), run as kubectl runs them.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use kubeauth_core::{ClusterDetails, Credential, Error, KeyedCredentialCache};

use super::file::{ExecEntry, FromFile, UserEntry};
use super::provider::config_error;

const V1: &str = "client.authentication.k8s.io/v1";
const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// The plugins' answers, each kept until it needs refreshing; one run at a time per plugin.
pub(crate) struct ExecPlugins {
    held: KeyedCredentialCache<String>,
}

impl Default for ExecPlugins {
    fn default() -> Self {
        Self { held: KeyedCredentialCache::new(Self::MARGIN).with_unexpiring_ttl(Self::UNEXPIRING_TTL) }
    }
}

impl std::fmt::Debug for ExecPlugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecPlugins").finish_non_exhaustive()
    }
}

impl ExecPlugins {
    /// How long an answer without `expirationTimestamp` is used before the plugin is run again (kubectl runs it
    /// once per command; a long-running kubeauth cannot keep one forever).
    const UNEXPIRING_TTL: Duration = Duration::from_secs(300);
    /// An answer is replaced this long before it expires (the credential layer's margin).
    const MARGIN: Duration = Duration::from_secs(60);
    /// How long a plugin may run (an interactive one waits for its user).
    const TIMEOUT: Duration = Duration::from_secs(300);

    /// The credential of `exec` for `cluster`: the kept answer while it is fresh, else a new run.
    pub(crate) async fn credential(
        &self,
        cluster: &ClusterDetails,
        user: &FromFile<UserEntry>,
        name: &str,
        exec: &ExecEntry,
    ) -> Result<Credential, Error> {
        // kubectl keys its cache by the plugin's settings (and the cluster, when the plugin is told it).
        let key = format!(
            "{}\0{name}\0{:?}\0{:?}\0{:?}\0{:?}\0{}",
            user.file.display(),
            exec.command,
            exec.args,
            exec.env.as_ref().map(|env| env.iter().map(|e| (&e.name, &e.value)).collect::<Vec<_>>()),
            exec.api_version,
            if exec.provide_cluster_info { cluster.url.as_str() } else { "" }
        );
        let kept = self.held.cache(key).get(|| run(cluster, user, name, exec)).await?;
        Ok(kept.credential)
    }
}

/// Runs the plugin once, as client-go does: the command (relative to the kubeconfig's folder when it names a
/// path), its args and env on top of kubeauth's environment, `KUBERNETES_EXEC_INFO`, the terminal's stdin when
/// interactive, stderr passed through; its stdout is the ExecCredential.
async fn run(
    cluster: &ClusterDetails,
    user: &FromFile<UserEntry>,
    name: &str,
    exec: &ExecEntry,
) -> Result<Credential, Error> {
    let bad = |key: &str, message: String| config_error(cluster, name, &format!("exec.{key}"), message);
    let api_version = exec.api_version.as_deref().unwrap_or_default();
    if api_version != V1 && api_version != V1BETA1 {
        return Err(bad("apiVersion", format!("`{api_version}` is not supported: use {V1} or {V1BETA1}")));
    }
    let command = exec.command.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| bad("command", "missing".into()))?;
    let program: PathBuf =
        if command.contains(std::path::MAIN_SEPARATOR) { user.path(command) } else { command.into() };
    let terminal = std::io::stdin().is_terminal();
    let interactive = match (exec.interactive_mode.as_deref(), api_version) {
        (None, V1) => {
            return Err(bad("interactiveMode", format!("missing: {V1} requires Never, IfAvailable or Always")));
        }
        (Some("Never"), _) => false,
        (None | Some("IfAvailable"), _) => terminal,
        (Some("Always"), _) if terminal => true,
        (Some("Always"), _) => {
            return Err(bad(
                "interactiveMode",
                "Always: the plugin needs a terminal, and kubeauth has none here (stdin is not a terminal)".into(),
            ));
        }
        (Some(other), _) => {
            return Err(bad("interactiveMode", format!("`{other}` is not Never, IfAvailable or Always")));
        }
    };
    let info = exec_info(cluster, api_version, interactive, exec.provide_cluster_info)?;

    let mut child = tokio::process::Command::new(&program);
    child
        .args(exec.args.iter().flatten())
        .envs(exec.env.iter().flatten().map(|e| (&e.name, &e.value)))
        .env("KUBERNETES_EXEC_INFO", info)
        .stdin(if interactive { Stdio::inherit() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let failed = |message: String| Error::Provider {
        cluster: cluster.name.clone(),
        provider: super::KubeconfigProvider::KEY.into(),
        source: format!("exec plugin `{command}` of user `{name}`: {message}").into(),
    };
    let spawned = child.spawn().map_err(|e| {
        let hint = match (&exec.install_hint, e.kind()) {
            (Some(hint), std::io::ErrorKind::NotFound) => format!("\n{}", hint.trim_end()),
            _ => String::new(),
        };
        failed(format!("cannot be run: {e}{hint}"))
    })?;
    let output = tokio::time::timeout(ExecPlugins::TIMEOUT, spawned.wait_with_output())
        .await
        .map_err(|_| failed(format!("did not answer within {} s", ExecPlugins::TIMEOUT.as_secs())))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("failed ({})", output.status)));
    }
    // The output holds the credential: errors describe it, never quote it (a syntax error says only where;
    // the fields are read as they are, without typed errors that would repeat a value).
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        failed(format!("its output is not an ExecCredential: not JSON (line {}, column {})", e.line(), e.column()))
    })?;
    let text = |pointer: &str| answer.pointer(pointer).and_then(serde_json::Value::as_str).filter(|v| !v.is_empty());
    if text("/kind") != Some("ExecCredential") {
        return Err(failed("its output is not an ExecCredential: kind is not ExecCredential".into()));
    }
    if text("/apiVersion") != Some(api_version) {
        return Err(failed(format!("its output is not an ExecCredential of {api_version}: apiVersion differs")));
    }
    if !answer.get("status").is_some_and(serde_json::Value::is_object) {
        return Err(failed("its answer has no status".into()));
    }
    let credential = match (text("/status/token"), text("/status/clientCertificateData"), text("/status/clientKeyData"))
    {
        (_, Some(certificate), Some(key)) => Credential::client_certificate(certificate, key),
        (Some(token), None, None) => Credential::bearer(token),
        (_, Some(_), None) | (_, None, Some(_)) => {
            return Err(failed("its answer has only one of clientCertificateData and clientKeyData".into()));
        }
        (None, None, None) => return Err(failed("its answer has no token and no client certificate".into())),
    };
    match text("/status/expirationTimestamp") {
        None => Ok(credential),
        Some(at) => {
            let at: jiff::Timestamp =
                at.parse().map_err(|e| failed(format!("expirationTimestamp `{at}` is not RFC 3339: {e}")))?;
            Ok(credential.with_expiry(SystemTime::from(at)))
        }
    }
}

/// `KUBERNETES_EXEC_INFO`: the request, with the cluster when the plugin asks for it (`provideClusterInfo`).
fn exec_info(
    cluster: &ClusterDetails,
    api_version: &str,
    interactive: bool,
    provide_cluster_info: bool,
) -> Result<String, Error> {
    let mut spec = serde_json::json!({ "interactive": interactive });
    if provide_cluster_info {
        let mut info = serde_json::json!({ "server": cluster.url });
        if let Some(name) = &cluster.tls_server_name {
            info["tls-server-name"] = name.clone().into();
        }
        if cluster.skip_tls_verify {
            info["insecure-skip-tls-verify"] = true.into();
        }
        // As the cluster has it: a file (read now) wins over inline data, as for connections.
        let ca_data = cluster.ca_pem()?.map(|pem| base64::engine::general_purpose::STANDARD.encode(pem));
        if let Some(data) = ca_data {
            info["certificate-authority-data"] = data.into();
        }
        if let Some(proxy) = &cluster.proxy_url {
            info["proxy-url"] = proxy.clone().into();
        }
        spec["cluster"] = info;
    }
    let info = serde_json::json!({ "apiVersion": api_version, "kind": "ExecCredential", "spec": spec });
    Ok(info.to_string())
}
