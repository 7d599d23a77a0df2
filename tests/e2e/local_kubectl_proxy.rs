//! The `localKubectlProxy` provider through a real `kubectl proxy`.

use std::time::{Duration, Instant};

use kubeauth::{AppConfig, CombinedLocator, Registry, RequestAuth, ResolveContext};
use kubeauth_testkit::{Supervised, TestCluster, free_port};

use crate::namespaces;

#[tokio::test]
async fn reaches_the_api_server_through_kubectl_proxy() {
    let env = TestCluster::shared();
    let scratch = tempfile::tempdir().unwrap().keep();
    let kubeconfig = scratch.join("kubeconfig");
    std::fs::write(&kubeconfig, env.kubeconfig_with_token(env.admin_token())).unwrap();
    let port = free_port();
    let proxy = Supervised::start(
        "kubectl proxy",
        &env.binaries().kubectl,
        &[
            "proxy".into(),
            format!("--port={port}"),
            "--address=127.0.0.1".into(),
            format!("--kubeconfig={}", kubeconfig.display()),
        ],
        &scratch.join("proxy.log"),
        Some(&scratch),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "kubectl proxy did not listen: {}", proxy.log_tail(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: local\n          url: http://127.0.0.1:{port}\n          authProvider: localKubectlProxy\n"
    );
    let config = AppConfig::from_yaml_str(&yaml, None).unwrap();
    let clusters =
        CombinedLocator::from_config(&config, &ResolveContext::new(|_| None)).unwrap().clusters().await.unwrap();
    let client = kubeauth::Connector::new(Registry::with_defaults())
        .kube_client(&clusters[0], &RequestAuth::none())
        .await
        .unwrap();
    let names = namespaces(client).await.unwrap();
    assert!(names.contains(&"kube-system".to_owned()), "{names:?}");
}
