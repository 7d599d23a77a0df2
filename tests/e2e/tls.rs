//! TLS settings against the real API server: the right CA verifies, a wrong one fails clearly, skipTLSVerify
//! connects.

use kubeauth::{Registry, RequestAuth};
use kubeauth_testkit::TestCluster;
use kubeauth_testkit::pki::TestCa;

use crate::namespaces;

fn admin_cluster(env: &TestCluster) -> kubeauth::ClusterDetails {
    let mut cluster = env.cluster_details("envtest", "serviceAccount");
    cluster.service_account_token = Some(env.admin_token().to_owned().into());
    cluster
}

#[tokio::test]
async fn the_right_ca_verifies_the_api_server() {
    let env = TestCluster::shared();
    let client = kubeauth::Connector::new(Registry::with_defaults())
        .kube_client(&admin_cluster(env), &RequestAuth::none())
        .await
        .unwrap();
    assert!(namespaces(client).await.is_ok());
}

#[tokio::test]
async fn a_ca_file_works_like_ca_data() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), env.ca().cert_pem()).unwrap();
    let mut cluster = admin_cluster(env);
    cluster.ca_data = None;
    cluster.ca_file = Some(dir.path().join("ca.pem"));
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    assert!(namespaces(client).await.is_ok());
}

#[tokio::test]
async fn a_wrong_ca_fails_with_a_clear_tls_error() {
    let env = TestCluster::shared();
    let mut cluster = admin_cluster(env);
    cluster.ca_data = Some(TestCa::new("wrong-ca").ca_data());
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    let error = namespaces(client).await.unwrap_err();
    let shown = kubeauth::report(&error);
    assert!(shown.contains("invalid peer certificate: UnknownIssuer"), "{shown}");
}

#[tokio::test]
async fn skip_tls_verify_connects_without_a_ca() {
    let env = TestCluster::shared();
    let mut cluster = admin_cluster(env);
    cluster.ca_data = None;
    cluster.skip_tls_verify = true;
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    assert!(namespaces(client).await.is_ok());
}

#[tokio::test]
async fn without_a_ca_or_skip_the_system_roots_do_not_trust_a_private_api_server() {
    let env = TestCluster::shared();
    let mut cluster = admin_cluster(env);
    cluster.ca_data = None;
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    assert!(kubeauth::report(&namespaces(client).await.unwrap_err()).contains("certificate"));
}
