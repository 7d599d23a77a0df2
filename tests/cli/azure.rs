//! The `azure` provider through the `kubeauth` command, with the Azure CLI as the credential source (the
//! seed's walkthrough: `az login`, an AKS cluster with Entra ID, the config as written), against the real
//! kube-apiserver validating Entra tokens in its TokenReview webhook.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use kubeauth_testkit::azure::{AKS_AUDIENCE, AzureTestEnv, fake_az};
use kubeauth_testkit::user;

const KUBEAUTH: &str = env!("CARGO_BIN_EXE_kubeauth-under-test");
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const USER_OID: &str = "4b7f0c1e-5d2a-4c3b-9e8f-0a1b2c3d4e5f";
const AKS_SCOPE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

type Env = AzureTestEnv;

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    // The managed identity (and the az user) have USER_OID.
    ENV.get_or_init(|| AzureTestEnv::start(TENANT, USER_OID))
}

/// The azure example of Backstage's authentication documentation, as written.
const SEED_CONFIG: &str =
    include_str!("../../crates/cluster-locator/tests/fixtures/backstage/authentication-azure.yaml");

/// `kubeauth ARGS` with only the fake `az` as an Azure credential source.
fn kubeauth(env: &Env, dir: &Path, args: &[&str]) -> Output {
    kubeauth_with(env, dir, args, &[])
}

/// `kubeauth ARGS` with the fake `az` and `extra` environment variables.
fn kubeauth_with(env: &Env, dir: &Path, args: &[&str], extra: &[(&str, String)]) -> Output {
    let bin = dir.join("bin");
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let mut command = Command::new(KUBEAUTH);
    command.args(args).current_dir(dir).env_clear();
    if dir.join("app-config.yaml").is_file() {
        command.env("KUBEAUTH_CONFIG", "app-config.yaml");
    }
    command
        .env("PATH", path)
        .env("HOME", dir)
        .env("KUBEAUTH_CACHE_DIR", dir.join("cache"))
        .env("AZURE_CLUSTER_API_SERVER_ADDRESS", env.cluster.url())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in extra {
        command.env(k, v);
    }
    command.output().expect("run kubeauth")
}

fn setup(env: &Env, audience: &str, lifetime: i64) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    let (token, expires_on) = env.entra.tokens().mint(USER_OID, audience, lifetime);
    fake_az(&dir.path().join("bin"), AKS_SCOPE, &token, expires_on, TENANT);
    std::fs::write(dir.path().join("app-config.yaml"), SEED_CONFIG).unwrap();
    (dir, expires_on)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_seed_walkthrough_works_with_az_login() {
    let env = env();
    env.cluster.grant("aks-user-namespaces", user(USER_OID), &["list"], &["namespaces"]).await;
    let (dir, expires_on) = setup(env, AKS_AUDIENCE, 3600);

    let out = kubeauth(env, dir.path(), &["doctor", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let aks = &report[0];
    assert_eq!(aks["cluster"], "My AKS cluster");
    assert_eq!(aks["credential"], "bearer token");
    assert_eq!(aks["canListNamespaces"], true);

    // `kubeauth token` gives kubectl the token with its real expiry.
    let out = kubeauth(env, dir.path(), &["token", "--cluster", "My AKS cluster"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = jiff::Timestamp::from_second(expires_on as i64).unwrap().to_string();
    assert_eq!(credential["status"]["expirationTimestamp"], expected);
    assert!(credential["status"]["token"].as_str().unwrap().starts_with("eyJ"));
}

#[tokio::test]
async fn a_wrongly_scoped_or_expired_token_gets_the_api_servers_401() {
    let env = env();
    for (what, audience, lifetime) in
        [("another audience", "api://someone-else", 3600), ("expired", AKS_AUDIENCE, -600)]
    {
        let (dir, _) = setup(env, audience, lifetime);
        let out = kubeauth(env, dir.path(), &["doctor", "-o", "json"]);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report[0]["failure"]["kind"], "unauthorized", "{what}: {report:#}");
    }
}

#[tokio::test]
async fn a_selected_source_that_is_not_configured_is_named() {
    let env = env();
    let (dir, _) = setup(env, AKS_AUDIENCE, 3600);
    std::fs::write(
        dir.path().join("app-config.yaml"),
        SEED_CONFIG.replace(
            "authProvider: azure",
            "authProvider: azure\n          authMetadata:\n            kubernetes.io/azure-credential: clientSecret",
        ),
    )
    .unwrap();
    let out = kubeauth(env, dir.path(), &["token", "--cluster", "My AKS cluster"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "kubeauth: cluster 'My AKS cluster': authMetadata.kubernetes.io/azure-credential: clientSecret is selected but not configured: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET not set\n"
    );
}

#[tokio::test]
async fn a_managed_identity_is_used_where_its_endpoint_is_set() {
    let env = env();
    env.cluster.grant("aks-user-namespaces", user(USER_OID), &["list"], &["namespaces"]).await;
    let (dir, _) = setup(env, AKS_AUDIENCE, 3600);
    // No az this time: the App Service managed-identity endpoint is the only source.
    std::fs::remove_file(dir.path().join("bin/az")).unwrap();
    let managed = [
        ("IDENTITY_ENDPOINT", env.entra.identity_endpoint()),
        ("IDENTITY_HEADER", env.entra.identity_header().to_owned()),
    ];
    let before = env.entra.requests();
    let out = kubeauth_with(env, dir.path(), &["doctor", "-o", "json"], &managed);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["canListNamespaces"], true);
    assert!(env.entra.requests() > before, "the token came from the managed-identity endpoint");

    // Without the header secret, the endpoint refuses: the provider's error, for that cluster.
    let refused = [("IDENTITY_ENDPOINT", env.entra.identity_endpoint()), ("IDENTITY_HEADER", "wrong".to_owned())];
    let out = kubeauth_with(env, dir.path(), &["doctor", "-o", "json"], &refused);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["failure"]["kind"], "provider", "{report:#}");
    assert!(
        report[0]["failure"]["message"].as_str().unwrap().contains("managedIdentity could not get a token"),
        "{report:#}"
    );
}

#[tokio::test]
async fn no_token_reaches_the_logs_even_at_trace_level() {
    let env = env();
    let (dir, _) = setup(env, AKS_AUDIENCE, 3600);
    let out = kubeauth_with(
        env,
        dir.path(),
        &["-vv", "token", "--cluster", "My AKS cluster"],
        &[("RUST_LOG", "trace".into())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logs = text(&out.stderr);
    assert!(logs.contains(" TRACE "), "trace logs were written: {logs}");
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = credential["status"]["token"].as_str().unwrap();
    // The JWT's signature part alone must not appear either.
    let signature = token.rsplit('.').next().unwrap();
    for (what, secret) in [("the token", token), ("its signature", signature)] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("{what} is in the logs: {}", line.chars().take(200).collect::<String>());
        }
    }

    // The managed-identity path goes over HTTP: its header secret and token stay out of the logs too.
    std::fs::remove_file(dir.path().join("bin/az")).unwrap();
    let managed = [
        ("IDENTITY_ENDPOINT", env.entra.identity_endpoint()),
        ("IDENTITY_HEADER", env.entra.identity_header().to_owned()),
        ("RUST_LOG", "trace".to_owned()),
    ];
    let out = kubeauth_with(env, dir.path(), &["-vv", "token", "--cluster", "My AKS cluster"], &managed);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let logs = text(&out.stderr);
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = credential["status"]["token"].as_str().unwrap();
    for (what, secret) in [("the token", token), ("the identity header", env.entra.identity_header())] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("{what} is in the logs: {}", line.chars().take(200).collect::<String>());
        }
    }
}
