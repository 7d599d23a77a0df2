//! The `serviceAccount` provider with real service-account tokens from the TokenRequest API.

use k8s_openapi::api::core::v1::Pod;
use kubeauth::{AppConfig, CombinedLocator, Registry, RequestAuth, ResolveContext};
use kubeauth_service_account::ServiceAccountProvider;
use kubeauth_testkit::{TestCluster, service_account};

use crate::{namespaces, status_code};

#[tokio::test]
async fn a_configured_service_account_token_lists_namespaces() {
    let env = TestCluster::shared();
    env.create_service_account("sa-config", "reader").await;
    env.grant("sa-config-reader", service_account("sa-config", "reader"), &["list"], &["namespaces"]).await;
    let token = env.service_account_token("sa-config", "reader").await;

    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: envtest\n          url: {}\n          authProvider: serviceAccount\n          serviceAccountToken: ${{READER_TOKEN}}\n          caData: {}\n",
        env.url(),
        env.ca().ca_data()
    );
    let config = AppConfig::from_yaml_str(&yaml, None).unwrap();
    let ctx = ResolveContext::new(move |name| (name == "READER_TOKEN").then(|| token.clone()));
    let clusters = CombinedLocator::from_config(&config, &ctx).unwrap().clusters().await.unwrap();

    let client = kubeauth::Connector::new(Registry::with_defaults())
        .kube_client(&clusters[0], &RequestAuth::none())
        .await
        .unwrap();
    let names = namespaces(client).await.unwrap();
    assert!(names.contains(&"default".to_owned()) && names.contains(&"sa-config".to_owned()), "{names:?}");
}

#[tokio::test]
async fn a_bad_token_gets_the_api_servers_own_401() {
    let env = TestCluster::shared();
    let mut cluster = env.cluster_details("envtest", "serviceAccount");
    cluster.service_account_token = Some("not-a-real-token".into());
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    match namespaces(client).await.unwrap_err() {
        kube::Error::Api(status) => {
            assert_eq!(
                (status.code, status.reason.as_str(), status.message.as_str()),
                (401, "Unauthorized", "Unauthorized")
            );
        }
        other => panic!("expected the API server's 401 Status, got {other:?}"),
    }
}

#[tokio::test]
async fn the_in_cluster_token_file_and_ca_work_and_a_rotated_token_is_picked_up() {
    let env = TestCluster::shared();
    // alpha may list namespaces; beta may also list pods: what the client may do tells whose token it sent.
    env.create_service_account("sa-rotation", "alpha").await;
    env.create_service_account("sa-rotation", "beta").await;
    env.grant("sa-rotation-alpha", service_account("sa-rotation", "alpha"), &["list"], &["namespaces"]).await;
    env.grant("sa-rotation-beta", service_account("sa-rotation", "beta"), &["list"], &["namespaces", "pods"]).await;
    let alpha = env.service_account_token("sa-rotation", "alpha").await;
    let beta = env.service_account_token("sa-rotation", "beta").await;

    // The pod's view: /var/run/secrets/kubernetes.io/serviceaccount, here a temp dir.
    let mount = tempfile::tempdir().unwrap();
    std::fs::write(mount.path().join("ca.crt"), env.ca().cert_pem()).unwrap();
    std::fs::write(mount.path().join("token"), &alpha).unwrap();
    let provider = ServiceAccountProvider::with_token_dir(mount.path());
    let port = env.url().rsplit(':').next().unwrap().to_owned();
    let cluster = provider
        .in_cluster_details("in-cluster", |name| match name {
            "KUBERNETES_SERVICE_HOST" => Some("127.0.0.1".into()),
            "KUBERNETES_SERVICE_PORT" => Some(port.clone()),
            _ => None,
        })
        .unwrap();
    let mut registry = Registry::with_defaults();
    registry.replace("serviceAccount", kubeauth::Provider::server(provider)).unwrap();
    let client = kubeauth::Connector::new(registry.clone()).kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    let pods = || kube::Api::<Pod>::all(client.clone());

    assert!(namespaces(client.clone()).await.is_ok());
    assert_eq!(status_code(&pods().list(&Default::default()).await.unwrap_err()), Some(403), "alpha may not list pods");

    // The kubelet's rotation: a new file swapped in atomically. The same client sends beta's token once the
    // credential layer asks again, within a second (CredentialLayer::DEFAULT_UNEXPIRING_TTL).
    std::fs::write(mount.path().join("token.new"), &beta).unwrap();
    std::fs::rename(mount.path().join("token.new"), mount.path().join("token")).unwrap();
    let rotated = std::time::Instant::now();
    let deadline = kubeauth::CredentialLayer::DEFAULT_UNEXPIRING_TTL + std::time::Duration::from_secs(2);
    while let Err(e) = pods().list(&Default::default()).await {
        assert!(rotated.elapsed() < deadline, "the same client still sends alpha's token: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Backstage's behaviour in a pod: a `serviceAccount` cluster with no token (here an unset variable) is reached at
/// the pod's own API server with the pod's CA and token, whatever its `url` and `caData` say.
#[tokio::test]
async fn in_a_pod_a_cluster_without_token_reaches_the_pods_own_api_server() {
    let env = TestCluster::shared();
    env.create_service_account("sa-in-pod", "portal").await;
    env.grant("sa-in-pod-portal", service_account("sa-in-pod", "portal"), &["list"], &["namespaces"]).await;
    let mount = tempfile::tempdir().unwrap();
    std::fs::write(mount.path().join("ca.crt"), env.ca().cert_pem()).unwrap();
    std::fs::write(mount.path().join("token"), env.service_account_token("sa-in-pod", "portal").await).unwrap();
    let port = env.url().rsplit(':').next().unwrap().to_owned();

    // Nothing listens at the located url (port 9), and its CA is another one.
    let other_ca = kubeauth_testkit::pki::TestCa::new("elsewhere").ca_data();
    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: here\n          url: https://127.0.0.1:9\n          authProvider: serviceAccount\n          serviceAccountToken: ${{K8S_TOKEN}}\n          caData: {other_ca}\n"
    );
    let config = AppConfig::from_yaml_str(&yaml, None).unwrap();
    let clusters =
        CombinedLocator::from_config(&config, &ResolveContext::new(|_| None)).unwrap().clusters().await.unwrap();
    assert_eq!(clusters[0].url, "https://127.0.0.1:9", "the clusters list shows the located url");

    let provider = |host: Option<&'static str>| {
        let port = port.clone();
        ServiceAccountProvider::with_token_dir(mount.path()).with_env(move |name| match name {
            "KUBERNETES_SERVICE_HOST" => host.map(str::to_owned),
            "KUBERNETES_SERVICE_PORT" => Some(port.clone()),
            _ => None,
        })
    };
    let connect = |provider: ServiceAccountProvider| {
        let mut registry = Registry::with_defaults();
        registry.replace("serviceAccount", kubeauth::Provider::server(provider)).unwrap();
        let cluster = clusters[0].clone();
        async move { kubeauth::Connector::new(registry).kube_client(&cluster, &RequestAuth::none()).await.unwrap() }
    };
    let names = namespaces(connect(provider(Some("127.0.0.1"))).await).await.unwrap();
    assert!(names.contains(&"sa-in-pod".to_owned()), "{names:?}");
    // Outside a pod, the located url: nothing answers there.
    assert!(namespaces(connect(provider(None)).await).await.is_err());

    // With no config at all, inside the pod: the embedded default is the pod's own cluster, and it answers.
    let env_in_pod = |name: &str| (name == "KUBERNETES_SERVICE_HOST").then(|| "127.0.0.1".to_owned());
    let default = AppConfig::embedded_default_here(env_in_pod, mount.path());
    let located =
        CombinedLocator::from_config(&default, &ResolveContext::new(|_| None)).unwrap().clusters().await.unwrap();
    assert_eq!(located[0].name, "in-cluster");
    let mut registry = Registry::with_defaults();
    registry.replace("serviceAccount", kubeauth::Provider::server(provider(Some("127.0.0.1")))).unwrap();
    let client = kubeauth::Connector::new(registry).kube_client(&located[0], &RequestAuth::none()).await.unwrap();
    assert!(namespaces(client).await.unwrap().contains(&"sa-in-pod".to_owned()));
}
