//! The `googleServiceAccount` provider through the `kubeauth` command at trace level, against a fake of
//! Google's token endpoint: the credential comes out on stdout, and neither the key nor the token appears in the
//! logs or the errors.

use std::process::{Command, Output};

use kubeauth_testkit::google::FakeGoogle;

const KUBEAUTH: &str = env!("CARGO_BIN_EXE_kubeauth-under-test");
const ACCOUNT: &str = "kubeauth@kubeauth-test.iam.gserviceaccount.com";
const NON_INTERACTIVE: &str =
    r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#;

fn token(dir: &std::path::Path, key: &str) -> Output {
    std::fs::write(
        dir.join("app-config.yaml"),
        "kubernetes:\n  googleServiceAccountCredentials: ${GKE_SA_KEY}\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: gke\n          url: https://35.200.10.1\n          authProvider: googleServiceAccount\n",
    )
    .unwrap();
    Command::new(KUBEAUTH)
        .args(["token", "--cluster", "gke"])
        .current_dir(dir)
        .env_clear()
        .env("KUBEAUTH_CONFIG", "app-config.yaml")
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir)
        .env("KUBEAUTH_CACHE_DIR", dir.join("cache"))
        .env("KUBERNETES_EXEC_INFO", NON_INTERACTIVE)
        .env("GKE_SA_KEY", key)
        .env("RUST_LOG", "trace")
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .output()
        .unwrap()
}

/// Lines of the private key's PEM body: none may leak.
fn key_material(key: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(key).unwrap();
    json["private_key"]
        .as_str()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_access_token_and_the_key_stay_out_of_the_trace_log() {
    let google = FakeGoogle::start();
    let key = google.service_account(ACCOUNT);
    let dir = tempfile::tempdir().unwrap();
    let out = token(dir.path(), &key);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let access_token = credential["status"]["token"].as_str().unwrap();
    assert!(!access_token.is_empty());
    assert!(stderr.contains("TRACE"), "trace logging was on");
    assert!(!stderr.contains(access_token), "the access token is not logged");
    for line in key_material(&key) {
        assert!(!stderr.contains(&line), "no line of the private key is logged");
    }
    assert_eq!(google.token_requests(), 1);
}

#[test]
fn a_refused_key_is_an_error_without_the_key() {
    let google = FakeGoogle::start();
    let _ = google.service_account(ACCOUNT);
    let forged = google.forged_key(ACCOUNT);
    let dir = tempfile::tempdir().unwrap();
    let out = token(dir.path(), &forged);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cluster 'gke'"), "{stderr}");
    for line in key_material(&forged) {
        assert!(!stderr.contains(&line), "no line of the private key in the error or the log");
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}
