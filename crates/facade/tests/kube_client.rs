//! A `kube::Client` built by the registry, against an in-process HTTPS server: URL, CA, skipTLSVerify, bearer
//! tokens applied and refreshed by the credential layer, x509 client certificates.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kubeauth::{
    AppConfig, ClusterDetails, CombinedLocator, Credential, CredentialFuture, Registry, RequestAuth, ResolveContext,
    ServerSideProvider,
};
use kubeauth_testkit::pki::TestCa;
use support::{FakeApiServer, Seen};

async fn names(client: kube::Client) -> Result<Vec<String>, kube::Error> {
    let list = Api::<Namespace>::all(client).list(&Default::default()).await?;
    Ok(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
}

fn cluster(server: &FakeApiServer, provider: &str) -> ClusterDetails {
    let mut c = ClusterDetails::new("fake", server.url.clone());
    c.set_auth_provider(provider);
    c.ca_data = Some(server.ca.ca_data());
    c
}

fn bearer(authorization: &str) -> Seen {
    Seen { authorization: Some(format!("Bearer {authorization}")), client_certificate: false }
}

#[tokio::test]
async fn a_configured_service_account_token_lists_namespaces() {
    let server = FakeApiServer::start(None).await;
    server.accept_token("sa-token-1");
    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: fake\n          url: {}\n          authProvider: serviceAccount\n          serviceAccountToken: ${{SA_TOKEN}}\n          caData: {}\n",
        server.url,
        server.ca.ca_data()
    );
    let config = AppConfig::from_yaml_str(&yaml, None).unwrap();
    let ctx = ResolveContext::new(|n| (n == "SA_TOKEN").then(|| "sa-token-1".to_owned()));
    let clusters = CombinedLocator::from_config(&config, &ctx).unwrap().clusters().await.unwrap();

    let client = kubeauth::Connector::new(Registry::with_defaults())
        .kube_client(&clusters[0], &RequestAuth::none())
        .await
        .unwrap();
    assert_eq!(names(client).await.unwrap(), ["default", "kube-system"]);
    assert_eq!(server.seen(), [bearer("sa-token-1")]);
}

#[tokio::test]
async fn a_bad_token_gets_the_servers_401_status() {
    let server = FakeApiServer::start(None).await;
    let mut c = cluster(&server, "serviceAccount");
    c.service_account_token = Some("wrong".into());
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&c, &RequestAuth::none()).await.unwrap();
    match names(client).await.unwrap_err() {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 401);
            assert_eq!(status.reason, "Unauthorized");
        }
        other => panic!("{other:?}"),
    }
    // The retry after the 401 asked the provider again, which had nothing better: two attempts, no more.
    assert_eq!(server.seen(), [bearer("wrong"), bearer("wrong")]);
}

/// Hands out `tok-1`, `tok-2`, … each with the lifetime given.
struct Counting {
    fetches: Arc<AtomicUsize>,
    lifetime: Duration,
}

impl ServerSideProvider for Counting {
    fn credential<'a>(&'a self, _: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Credential::bearer_until(format!("tok-{n}"), SystemTime::now() + self.lifetime))
        })
    }
}

fn counting(lifetime: Duration) -> (Registry, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::with_defaults();
    registry.add("counting", kubeauth::Provider::server(Counting { fetches: fetches.clone(), lifetime })).unwrap();
    (registry, fetches)
}

#[tokio::test]
async fn a_401_refreshes_the_credential_and_retries_once() {
    let server = FakeApiServer::start(None).await;
    server.accept_token("tok-2");
    let (registry, fetches) = counting(Duration::from_secs(3600));
    let client = kubeauth::Connector::new(registry.clone())
        .kube_client(&cluster(&server, "counting"), &RequestAuth::none())
        .await
        .unwrap();
    assert_eq!(names(client.clone()).await.unwrap().len(), 2);
    assert_eq!(server.seen(), [bearer("tok-1"), bearer("tok-2")]);
    // The refreshed token is kept: the next request needs no fetch.
    names(client).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_valid_credential_is_reused_across_requests() {
    let server = FakeApiServer::start(None).await;
    server.accept_token("tok-1");
    let (registry, fetches) = counting(Duration::from_secs(3600));
    let client = kubeauth::Connector::new(registry.clone())
        .kube_client(&cluster(&server, "counting"), &RequestAuth::none())
        .await
        .unwrap();
    for _ in 0..3 {
        names(client.clone()).await.unwrap();
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_credential_inside_the_refresh_margin_is_replaced_before_it_is_sent() {
    let server = FakeApiServer::start(None).await;
    for t in ["tok-1", "tok-2", "tok-3"] {
        server.accept_token(t);
    }
    // Each token is valid for 30 s, inside the layer's 60 s margin: every request gets a new one.
    let (registry, fetches) = counting(Duration::from_secs(30));
    let client = kubeauth::Connector::new(registry.clone())
        .kube_client(&cluster(&server, "counting"), &RequestAuth::none())
        .await
        .unwrap();
    names(client.clone()).await.unwrap();
    names(client).await.unwrap();
    assert_eq!(server.seen(), [bearer("tok-2"), bearer("tok-3")]);
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_wrong_ca_fails_with_a_tls_error() {
    let server = FakeApiServer::start(None).await;
    server.accept_token("t");
    let mut c = cluster(&server, "serviceAccount");
    c.service_account_token = Some("t".into());
    c.ca_data = Some(TestCa::new("some-other-ca").ca_data());
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&c, &RequestAuth::none()).await.unwrap();
    let err = names(client).await.unwrap_err();
    let shown = kubeauth::report(&err);
    assert!(shown.contains("certificate") && shown.contains("UnknownIssuer"), "{shown}");
    assert!(server.seen().is_empty(), "no request reached the server");
}

#[tokio::test]
async fn skip_tls_verify_connects_without_the_ca() {
    let server = FakeApiServer::start(None).await;
    server.accept_token("t");
    let mut c = cluster(&server, "serviceAccount");
    c.service_account_token = Some("t".into());
    c.ca_data = None;
    c.skip_tls_verify = true;
    let client =
        kubeauth::Connector::new(Registry::with_defaults()).kube_client(&c, &RequestAuth::none()).await.unwrap();
    assert_eq!(names(client).await.unwrap().len(), 2);
}

struct ClientCert(Credential);

impl ServerSideProvider for ClientCert {
    fn credential<'a>(&'a self, _: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

#[tokio::test]
async fn an_x509_client_certificate_is_presented_in_the_handshake() {
    let client_ca = TestCa::new("client-ca");
    let server = FakeApiServer::start(Some(&client_ca)).await;
    let cert = client_ca.client_cert("alice", &["devs"]);
    let mut registry = Registry::with_defaults();
    registry
        .add(
            "x509",
            kubeauth::Provider::server(ClientCert(Credential::client_certificate(cert.cert_pem, cert.key_pem))),
        )
        .unwrap();
    let client = kubeauth::Connector::new(registry.clone())
        .kube_client(&cluster(&server, "x509"), &RequestAuth::none())
        .await
        .unwrap();
    assert_eq!(names(client).await.unwrap().len(), 2);
    assert_eq!(server.seen(), [Seen { authorization: None, client_certificate: true }]);
}

#[tokio::test]
async fn client_side_providers_need_the_users_token() {
    let server = FakeApiServer::start(None).await;
    server.accept_token("user-id-token");
    let mut c = cluster(&server, "oidc");
    c.auth_metadata.insert(kubeauth::metadata::OIDC_TOKEN_PROVIDER.into(), "okta".into());
    let registry = Registry::with_defaults();

    let Err(err) = kubeauth::Connector::new(registry.clone()).kube_client(&c, &RequestAuth::none()).await else {
        panic!("a client without the user's token")
    };
    assert!(err.to_string().contains("cluster 'fake'") && err.to_string().contains("auth.oidc.okta"), "{err}");

    let mut auth = RequestAuth::none();
    auth.insert_nested_token("oidc", "okta", "user-id-token");
    let client = kubeauth::Connector::new(registry.clone()).kube_client(&c, &auth).await.unwrap();
    names(client).await.unwrap();
    assert_eq!(server.seen(), [bearer("user-id-token")]);
}

#[tokio::test]
async fn a_cluster_with_an_unknown_provider_gets_no_client() {
    let server = FakeApiServer::start(None).await;
    let Err(err) = kubeauth::Connector::new(Registry::with_defaults())
        .kube_client(&cluster(&server, "kerberos"), &RequestAuth::none())
        .await
    else {
        panic!("a client for an unknown provider")
    };
    assert!(err.to_string().contains("authProvider: \"kerberos\""), "{err}");
}
