//! The client.authentication.k8s.io ExecCredential protocol: what kubectl asks in `KUBERNETES_EXEC_INFO`, and
//! the answer on stdout.

use std::time::SystemTime;

use base64::Engine as _;
use kubeauth::{Credential, core::ExposeSecret};

/// The API versions kubectl may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiVersion {
    V1,
    V1beta1,
}

impl ApiVersion {
    fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "client.authentication.k8s.io/v1",
            Self::V1beta1 => "client.authentication.k8s.io/v1beta1",
        }
    }
}

/// What kubectl told the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecInfo {
    pub(crate) api_version: ApiVersion,
    /// Whether the plugin may prompt the user.
    pub(crate) interactive: bool,
}

/// Reads `KUBERNETES_EXEC_INFO`. Without it (a person running the command), the answer is v1, interactive if
/// stdin is a terminal.
pub(crate) fn parse_exec_info(raw: Option<&str>, stdin_is_terminal: bool) -> Result<ExecInfo, String> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(ExecInfo { api_version: ApiVersion::V1, interactive: stdin_is_terminal });
    };
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("KUBERNETES_EXEC_INFO is not JSON: {e}"))?;
    let api_version = match value.get("apiVersion").and_then(serde_json::Value::as_str) {
        None => return Err("KUBERNETES_EXEC_INFO has no apiVersion".into()),
        Some("client.authentication.k8s.io/v1") => ApiVersion::V1,
        Some("client.authentication.k8s.io/v1beta1") => ApiVersion::V1beta1,
        Some(other) => {
            return Err(format!(
                "KUBERNETES_EXEC_INFO asks for apiVersion {other}; supported: client.authentication.k8s.io/v1, client.authentication.k8s.io/v1beta1"
            ));
        }
    };
    match value.get("kind").and_then(serde_json::Value::as_str) {
        Some("ExecCredential") => {}
        Some(other) => return Err(format!("KUBERNETES_EXEC_INFO has kind {other}, not ExecCredential")),
        None => return Err("KUBERNETES_EXEC_INFO has no kind".into()),
    }
    let interactive = match (value.pointer("/spec/interactive").and_then(serde_json::Value::as_bool), api_version) {
        (Some(i), _) => i,
        // v1 always carries spec.interactive; v1beta1 may leave it out.
        (None, ApiVersion::V1) => return Err("KUBERNETES_EXEC_INFO (v1) has no spec.interactive".into()),
        (None, ApiVersion::V1beta1) => false,
    };
    Ok(ExecInfo { api_version, interactive })
}

/// The ExecCredential for `credential`, as kubectl reads it.
pub(crate) fn render(api_version: ApiVersion, cluster: &str, credential: &Credential) -> Result<String, String> {
    let mut status = serde_json::Map::new();
    match credential {
        Credential::BearerToken { token, .. } => {
            status.insert("token".into(), token.expose_secret().into());
        }
        Credential::ClientCertificate { certificate_pem, private_key_pem, .. } => {
            status.insert("clientCertificateData".into(), certificate_pem.clone().into());
            status.insert("clientKeyData".into(), private_key_pem.expose_secret().into());
        }
        _ => {
            return Err(format!(
                "cluster '{cluster}': its provider gives no credential (localKubectlProxy): point kubectl at `kubectl proxy` instead"
            ));
        }
    }
    if let Some(at) = credential.expires_at() {
        status.insert("expirationTimestamp".into(), rfc3339(at).into());
    }
    let answer = serde_json::json!({ "apiVersion": api_version.as_str(), "kind": "ExecCredential", "status": status });
    serde_json::to_string(&answer).map_err(|e| e.to_string())
}

/// `2026-01-02T03:04:05Z`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at).map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string()).unwrap_or_default()
}

/// Base64 of a PEM text, as kubeconfig `*-data` fields hold it.
pub(crate) fn base64_pem(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reads_both_api_versions_and_interactive() {
        let v1 =
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}"#;
        assert_eq!(
            parse_exec_info(Some(v1), false).unwrap(),
            ExecInfo { api_version: ApiVersion::V1, interactive: true }
        );
        let beta = r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{}}"#;
        assert_eq!(
            parse_exec_info(Some(beta), true).unwrap(),
            ExecInfo { api_version: ApiVersion::V1beta1, interactive: false }
        );
        assert_eq!(parse_exec_info(None, true).unwrap(), ExecInfo { api_version: ApiVersion::V1, interactive: true });
    }

    #[test]
    fn bad_exec_info_is_named() {
        let cases = [
            ("not json", "KUBERNETES_EXEC_INFO is not JSON"),
            (r#"{"kind":"ExecCredential"}"#, "KUBERNETES_EXEC_INFO has no apiVersion"),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1","kind":"ExecCredential"}"#,
                "asks for apiVersion client.authentication.k8s.io/v1alpha1",
            ),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}"#,
                "(v1) has no spec.interactive",
            ),
            (
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"Pod","spec":{"interactive":false}}"#,
                "has kind Pod",
            ),
        ];
        for (raw, expected) in cases {
            let err = parse_exec_info(Some(raw), false).unwrap_err();
            assert!(err.contains(expected), "{raw}: {err}");
        }
    }

    #[test]
    fn renders_tokens_with_expiry_and_certificates() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let out = render(ApiVersion::V1beta1, "c", &Credential::bearer_until("tok", at)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1beta1");
        assert_eq!(v["status"]["token"], "tok");
        assert_eq!(v["status"]["expirationTimestamp"], "2027-01-15T08:00:00Z");
        let out = render(ApiVersion::V1, "c", &Credential::client_certificate("CERT", "KEY")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["status"]["clientCertificateData"].as_str(), v["status"]["clientKeyData"].as_str()),
            (Some("CERT"), Some("KEY"))
        );
        assert!(v["status"].get("expirationTimestamp").is_none());
        assert!(render(ApiVersion::V1, "c", &Credential::Anonymous).unwrap_err().contains("cluster 'c'"));
    }
}
