//! The facade's custom-provider example, with its x509 client certificate, against a real API server that
//! trusts the client CA (`--client-ca-file`).

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/facade/examples/custom_provider.rs"]
mod example;

use kubeauth_testkit::{TestCluster, user};

#[tokio::test]
async fn the_custom_provider_example_authenticates_with_a_client_certificate() {
    let env = TestCluster::shared();
    env.grant("x509-example-user", user("x509-example-user"), &["list"], &["namespaces"]).await;
    let cert = env.client_ca().client_cert("x509-example-user", &["x509-examples"]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client.crt"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), &cert.key_pem).unwrap();
    let config = dir.path().join("app-config.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: envtest\n          url: {}\n          caData: {}\n          authProvider: clientCertificateFiles\n          authMetadata:\n            kubeauth.example/client-certificate-file: {}\n            kubeauth.example/client-key-file: {}\n",
            env.url(),
            env.ca().ca_data(),
            dir.path().join("client.crt").display(),
            dir.path().join("client.key").display()
        ),
    )
    .unwrap();

    let lines = example::run(Some(&config), true).await.unwrap();
    assert!(lines[0].starts_with("cluster 'envtest'") && lines[0].contains("x509 client certificate"), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("PRIVATE KEY")), "{lines:?}");
    assert!(lines.contains(&"namespace default".to_owned()), "{lines:?}");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_gets_the_api_servers_401() {
    let env = TestCluster::shared();
    let stranger = kubeauth_testkit::pki::TestCa::new("not-trusted").client_cert("x509-example-user", &[]);
    let mut registry = kubeauth::Registry::with_defaults();
    registry.add("fixedCertificate", kubeauth::Provider::server(Fixed(stranger.cert_pem, stranger.key_pem))).unwrap();
    let client = kubeauth::Connector::new(registry)
        .kube_client(&env.cluster_details("envtest", "fixedCertificate"), &kubeauth::RequestAuth::none())
        .await
        .unwrap();
    assert_eq!(crate::status_code(&crate::namespaces(client).await.unwrap_err()), Some(401));
}

struct Fixed(String, String);

impl kubeauth::ServerSideProvider for Fixed {
    fn credential<'a>(&'a self, _: &'a kubeauth::ClusterDetails) -> kubeauth::CredentialFuture<'a> {
        Box::pin(async move { Ok(kubeauth::Credential::client_certificate(self.0.clone(), self.1.clone())) })
    }
}
