//! `kubeauth token` for an EKS-style cluster, with the AWS default credential chain (environment) or Backstage's
//! `aws.mainAccount`, through the real kubectl; and its on-disk cache.

use std::path::Path;
use std::process::{Command, Output};

use kubeauth_testkit::aws::AwsTestEnv;
use kubeauth_testkit::user;

const KUBEAUTH: &str = env!("CARGO_BIN_EXE_kubeauth-under-test");

fn config(env: &AwsTestEnv, dir: &Path) -> std::path::PathBuf {
    config_with(env, dir, "")
}

/// The clusters `eks` and `eks-role`, after `top` (other top-level sections).
fn config_with(env: &AwsTestEnv, dir: &Path, top: &str) -> std::path::PathBuf {
    let file = dir.join("app-config.yaml");
    let cluster = |name: &str, extra: &str| {
        format!(
            "        - name: {name}\n          url: {}\n          caData: {}\n          authProvider: aws\n          authMetadata:\n            kubernetes.io/x-k8s-aws-id: {}\n            kubernetes.io/aws-region: {}\n{extra}",
            env.cluster.url(),
            env.cluster.ca().ca_data(),
            AwsTestEnv::CLUSTER_ID,
            AwsTestEnv::REGION,
        )
    };
    std::fs::write(
        &file,
        format!(
            "{top}kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{}{}",
            cluster("eks", ""),
            cluster(
                "eks-role",
                &format!(
                    "          assumeRole: {}\n          externalId: {}\n",
                    AwsTestEnv::ROLE_ARN,
                    AwsTestEnv::EXTERNAL_ID
                )
            )
        ),
    )
    .unwrap();
    file
}

fn with_env(mut command: Command, env: &AwsTestEnv, dir: &Path) -> Command {
    for (k, v) in env.process_env() {
        command.env(k, v);
    }
    command.env("KUBEAUTH_CACHE_DIR", dir.join("cache")).env("HOME", dir).env("KUBECACHEDIR", dir.join("kubecache"));
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kubectl get namespaces` on `eks` through `kubeauth kubeconfig` (and so `kubeauth token`), with `extra`
/// environment beside the test environment's.
fn kubectl_namespaces(env: &AwsTestEnv, dir: &Path, config: &Path, extra: &[(&str, &str)]) -> Output {
    let kubeconfig = dir.join("kubeconfig");
    let out = with_env(Command::new(KUBEAUTH), env, dir)
        .args(["kubeconfig", "--config", config.to_str().unwrap(), "--output-file", kubeconfig.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    with_env(Command::new(&env.cluster.binaries().kubectl), env, dir)
        .envs(extra.iter().copied())
        .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "--context", "eks", "get", "namespaces", "-o", "name"])
        .output()
        .unwrap()
}

#[tokio::test]
async fn kubectl_gets_namespaces_through_kubeauth_token() {
    let env = AwsTestEnv::shared();
    env.cluster.grant("aws-cli-user", user(AwsTestEnv::USER), &["list"], &["namespaces"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config(env, dir.path());
    let out = kubectl_namespaces(env, dir.path(), &config, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("namespace/default"), "{}", text(&out.stdout));
}

/// Backstage's `aws.mainAccount` gives the base credentials: a profile of the shared credentials file (and that
/// profile alone, as Backstage's `fromIni`: the environment's keys, wrong here, are not used), or static keys
/// from variables. Without it the environment's wrong keys are used and the API server refuses the token.
#[tokio::test]
async fn backstage_main_account_gives_the_base_credentials() {
    let env = AwsTestEnv::shared();
    env.cluster.grant("aws-cli-user", user(AwsTestEnv::USER), &["list"], &["namespaces"]).await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("aws-credentials");
    std::fs::write(
        &credentials,
        format!(
            "[portal]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            AwsTestEnv::ACCESS_KEY_ID,
            AwsTestEnv::SECRET_ACCESS_KEY
        ),
    )
    .unwrap();
    let wrong = [
        ("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1"),
        ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
    ];
    // Each run has a home (and so a token cache) of its own.
    let run = |top: &str, extra: &[(&str, &str)]| {
        let home = tempfile::tempdir().unwrap();
        kubectl_namespaces(env, home.path(), &config_with(env, home.path(), top), extra)
    };
    let refused = run("", &wrong);
    assert!(!refused.status.success(), "the environment's wrong keys were used: {}", text(&refused.stdout));
    assert!(text(&refused.stderr).contains("You must be logged in to the server"), "{}", text(&refused.stderr));

    let out = run("aws:\n  mainAccount:\n    profile: portal\n    region: us-west-2\n", &wrong);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("namespace/default"), "{}", text(&out.stdout));

    let with_keys =
        [&wrong[..], &[("MAIN_KEY", AwsTestEnv::ACCESS_KEY_ID), ("MAIN_SECRET", AwsTestEnv::SECRET_ACCESS_KEY)]]
            .concat();
    let out = run(
        "aws:\n  mainAccount:\n    accessKeyId: ${MAIN_KEY}\n    secretAccessKey: ${MAIN_SECRET}\n    profile: nonexistent\n",
        &with_keys,
    );
    assert!(out.status.success(), "static keys win over the profile: {}", text(&out.stderr));
}

#[tokio::test]
async fn a_cached_token_is_served_without_any_network() {
    let env = AwsTestEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = config(env, dir.path());
    let token = |sts: &str| {
        let out = with_env(Command::new(KUBEAUTH), env, dir.path())
            .args(["token", "--cluster", "eks-role", "--config", config.to_str().unwrap()])
            .env("AWS_ENDPOINT_URL_STS", sts)
            .env(
                "KUBERNETES_EXEC_INFO",
                r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
            )
            .output()
            .unwrap();
        (out.status.code(), serde_json::from_slice::<serde_json::Value>(&out.stdout).ok(), text(&out.stderr))
    };
    // First call: AssumeRole at moto, then the token is cached.
    let (code, first, stderr) = token(env.sts.url());
    assert_eq!(code, Some(0), "{stderr}");
    let first = first.unwrap();
    assert!(first["status"]["token"].as_str().unwrap().starts_with("k8s-aws-v1."));
    assert!(first["status"]["expirationTimestamp"].as_str().unwrap().ends_with('Z'));

    // STS now unreachable (nothing listens on port 9): the cached token still comes back.
    let (code, second, stderr) = token("http://127.0.0.1:9");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(second.unwrap()["status"]["token"], first["status"]["token"]);

    // Without the cache, the unreachable STS is a runtime failure naming the cluster.
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let (code, _, stderr) = token("http://127.0.0.1:9");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cluster 'eks-role': the aws provider failed"), "{stderr}");
    assert!(!stderr.contains(AwsTestEnv::SECRET_ACCESS_KEY), "{stderr}");
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let env = AwsTestEnv::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = config(env, dir.path());
    let out = with_env(Command::new(KUBEAUTH), env, dir.path())
        .args(["-vv", "token", "--cluster", "eks-role", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let logs = text(&out.stderr);
    assert!(logs.lines().count() > 20, "trace logs were written: {logs}");
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = credential["status"]["token"].as_str().unwrap();
    // The assumed role's session token travels inside the EKS token; neither may be logged.
    use base64::Engine as _;
    let url = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token["k8s-aws-v1.".len()..]).unwrap(),
    )
    .unwrap();
    let session_token = url.split("X-Amz-Security-Token=").nth(1).unwrap().split('&').next().unwrap();
    let signature = url.split("X-Amz-Signature=").nth(1).unwrap().split('&').next().unwrap();
    for (what, secret) in [
        ("the static secret key", AwsTestEnv::SECRET_ACCESS_KEY),
        ("the session token", session_token),
        ("the token's signature", signature),
        ("the EKS token", token),
    ] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("{what} is in the logs: {}", line.chars().take(300).collect::<String>());
        }
    }
}
