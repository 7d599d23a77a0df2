//! The manifests of deploy/ are accepted by a real kube-apiserver (server-side dry run, every object through
//! admission and validation), and the configuration they carry is a valid kubeauth configuration.

use kubeauth::{AppConfig, Kubeauth, ResolveContext};
use kubeauth_testkit::TestCluster;

fn deploy_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[tokio::test]
async fn the_manifests_pass_a_server_side_dry_run() {
    let env = TestCluster::shared();
    // The namespace exists (a dry run creates nothing, and the namespaced objects need it).
    env.create_namespace("kubeauth").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, env.kubeconfig_with_token(env.admin_token())).unwrap();
    let kubectl = env.binaries().kubectl.clone();
    let manifests = deploy_dir();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--dry-run=server", "-o", "name", "-f"])
            .arg(&manifests)
            .arg("-f")
            .arg(manifests.join("optional"))
            .env("HOME", dir.path())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for object in [
        "namespace/kubeauth",
        "serviceaccount/kubeauth",
        "clusterrole.rbac.authorization.k8s.io/kubeauth-reader",
        "clusterrolebinding.rbac.authorization.k8s.io/kubeauth-reader",
        "configmap/kubeauth-config",
        "deployment.apps/kubeauth",
        "service/kubeauth",
        "clusterrole.rbac.authorization.k8s.io/kubeauth-impersonator",
        "clusterrolebinding.rbac.authorization.k8s.io/kubeauth-impersonator",
    ] {
        assert!(stdout.lines().any(|l| l == object), "{object} missing from:\n{stdout}");
    }
}

#[tokio::test]
async fn the_configuration_in_the_configmap_is_valid() {
    let text = std::fs::read_to_string(deploy_dir().join("configmap.yaml")).unwrap();
    let configmap: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let app_config = configmap["data"]["app-config.yaml"].as_str().unwrap();
    // Its clusters are kubeauth's embedded in-cluster default, as `kubeauth serve` in a pod runs with no config.
    let kubernetes = |yaml: &str| serde_saphyr::from_str::<serde_json::Value>(yaml).unwrap()["kubernetes"].clone();
    assert_eq!(kubernetes(app_config), kubernetes(kubeauth::EMBEDDED_IN_CLUSTER_CONFIG));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), kubeauth_testkit::pki::TestCa::new("pod").cert_pem()).unwrap();
    let config = AppConfig::from_yaml_str(app_config, None).unwrap();
    let ctx = ResolveContext::new(|name| (name == "KUBEAUTH_API_TOKEN").then(|| "a".repeat(64)));
    // The pod's token file, here: the projected-token folder of a pod, imitated.
    std::fs::write(dir.path().join("token"), "a-projected-token").unwrap();
    let in_pod =
        kubeauth_service_account::ServiceAccountProvider::with_token_dir(dir.path()).with_env(|name| match name {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".into()),
            "KUBERNETES_SERVICE_PORT" => Some("443".into()),
            _ => None,
        });
    let kubeauth = Kubeauth::builder(&config, &ctx)
        .unwrap()
        .replace_provider("serviceAccount", kubeauth::Provider::server(in_pod))
        .unwrap()
        .build()
        .unwrap();
    let clusters = kubeauth.clusters().await.unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].auth_provider(), Some("serviceAccount"));
    kubeauth.registry().validate(&clusters[0]).unwrap();
    let auth = config.kubeauth.server.auth.as_ref().expect("API tokens: the deployment listens beyond loopback");
    assert_eq!(auth.bearer_tokens.len(), 1);
}
