//! The `azure` provider end to end: azure_identity's credentials, unmodified, against a fake of Entra ID's wire
//! protocol over HTTPS, and the tokens validated (JWKS signature, audience, issuer, expiry) by the real
//! kube-apiserver's TokenReview webhook.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kubeauth::{ClusterDetails, Credential, Registry, RequestAuth, ServerSideProvider};
use kubeauth_azure::AzureProvider;
use kubeauth_testkit::azure::{AzureTestEnv, Behaviour, FakeEntra};
use kubeauth_testkit::user;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP_OID: &str = "0d1e2f3a-4b5c-6d7e-8f90-a1b2c3d4e5f6";
const WORKLOAD_OID: &str = "1e2f3a4b-5c6d-7e8f-90a1-b2c3d4e5f6a7";
const MANAGED_OID: &str = "2f3a4b5c-6d7e-8f90-a1b2-c3d4e5f6a7b8";
const CERT_OID: &str = "3a4b5c6d-7e8f-90a1-b2c3-d4e5f6a7b8c9";

type Env = AzureTestEnv;

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let env = AzureTestEnv::start(TENANT, MANAGED_OID);
        env.entra.add_client_secret("app-client-id", "app-secret-value", APP_OID);
        env.entra.add_federated("workload-client-id", "projected-service-account-token", WORKLOAD_OID);
        env
    })
}

/// The SDK's HTTP options for the fake: its authority host, and a client that trusts its CA.
fn client_options(entra: &FakeEntra) -> azure_core::http::ClientOptions {
    let root = reqwest::Certificate::from_pem(entra.ca().cert_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder().tls_certs_only([root]).build().unwrap();
    let mut cloud = azure_core::cloud::CustomConfiguration::default();
    cloud.authority_host = entra.url();
    azure_core::http::ClientOptions {
        transport: Some(azure_core::http::Transport::new(Arc::new(http))),
        cloud: Some(Arc::new(cloud.into())),
        ..Default::default()
    }
}

fn provider(entra: &FakeEntra, vars: Vec<(&'static str, String)>) -> AzureProvider {
    AzureProvider::builder()
        .env(move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
        .client_options(client_options(entra))
        .timeout(Duration::from_secs(2))
        .build()
}

fn secret_vars() -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_TENANT_ID", TENANT.into()),
        ("AZURE_CLIENT_ID", "app-client-id".into()),
        ("AZURE_CLIENT_SECRET", "app-secret-value".into()),
    ]
}

async fn lists_namespaces(env: &Env, provider: AzureProvider) -> Result<usize, kube::Error> {
    let mut registry = Registry::with_defaults();
    registry.replace("azure", kubeauth::Provider::server(provider)).unwrap();
    let client = kubeauth::Connector::new(registry.clone())
        .kube_client(&env.cluster.cluster_details("aks", "azure"), &RequestAuth::none())
        .await
        .unwrap();
    Ok(kube::Api::<Namespace>::all(client).list(&Default::default()).await?.items.len())
}

#[tokio::test]
async fn a_service_principal_secret_lists_namespaces() {
    let env = env();
    env.cluster.grant("aks-app", user(APP_OID), &["list"], &["namespaces"]).await;
    assert!(lists_namespaces(env, provider(&env.entra, secret_vars())).await.unwrap() > 0);
}

#[tokio::test]
async fn workload_identity_lists_namespaces() {
    let env = env();
    env.cluster.grant("aks-workload", user(WORKLOAD_OID), &["list"], &["namespaces"]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "projected-service-account-token").unwrap();
    let vars = vec![
        ("AZURE_TENANT_ID", TENANT.into()),
        ("AZURE_CLIENT_ID", "workload-client-id".into()),
        ("AZURE_FEDERATED_TOKEN_FILE", token_file.display().to_string()),
    ];
    assert!(lists_namespaces(env, provider(&env.entra, vars)).await.unwrap() > 0);
}

#[tokio::test]
async fn a_service_principal_certificate_lists_namespaces() {
    let env = env();
    env.cluster.grant("aks-cert", user(CERT_OID), &["list"], &["namespaces"]).await;
    let pem = env.entra.add_client_certificate("cert-client-id", CERT_OID);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sp.pem"), pem).unwrap();
    let vars = vec![
        ("AZURE_TENANT_ID", TENANT.into()),
        ("AZURE_CLIENT_ID", "cert-client-id".into()),
        ("AZURE_CLIENT_CERTIFICATE_PATH", dir.path().join("sp.pem").display().to_string()),
    ];
    assert!(lists_namespaces(env, provider(&env.entra, vars)).await.unwrap() > 0);

    // A certificate Entra does not know for that client: refused at the token endpoint.
    let other = counting_fake().add_client_certificate("cert-client-id", CERT_OID);
    std::fs::write(dir.path().join("other.pem"), other).unwrap();
    let vars = vec![
        ("AZURE_TENANT_ID", TENANT.into()),
        ("AZURE_CLIENT_ID", "cert-client-id".into()),
        ("AZURE_CLIENT_CERTIFICATE_PATH", dir.path().join("other.pem").display().to_string()),
    ];
    let err = provider(&env.entra, vars).credential(&aks()).await.unwrap_err();
    assert!(kubeauth::report(&err).contains("clientCertificate could not get a token"), "{err}");
}

#[tokio::test]
async fn a_wrong_secret_is_that_clusters_error() {
    let env = env();
    let mut vars = secret_vars();
    vars[2].1 = "not-the-secret".into();
    let mut registry = Registry::with_defaults();
    registry.replace("azure", kubeauth::Provider::server(provider(&env.entra, vars))).unwrap();
    let Err(err) = kubeauth::Connector::new(registry.clone())
        .kube_client(&env.cluster.cluster_details("aks", "azure"), &RequestAuth::none())
        .await
    else {
        panic!("a client with a wrong secret")
    };
    let shown = kubeauth::report(&err);
    assert!(shown.starts_with("cluster 'aks': the azure provider failed"), "{shown}");
    assert!(shown.contains("clientSecret could not get a token"), "{shown}");
    assert!(!shown.contains("not-the-secret"), "{shown}");
}

fn aks() -> ClusterDetails {
    let mut c = ClusterDetails::new("aks", "https://127.0.0.1:1");
    c.set_auth_provider("azure");
    c
}

fn token(c: &Credential) -> String {
    match c {
        Credential::BearerToken { token, .. } => kubeauth::core::ExposeSecret::expose_secret(token).to_owned(),
        other => panic!("{other:?}"),
    }
}

/// A fake of its own, for counting its requests.
fn counting_fake() -> FakeEntra {
    let entra = FakeEntra::start(TENANT, MANAGED_OID);
    entra.add_client_secret("app-client-id", "app-secret-value", APP_OID);
    entra
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_thousand_concurrent_requests_make_one_token_request_at_entra() {
    let entra = counting_fake();
    let provider = Arc::new(provider(&entra, secret_vars()));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.credential(&aks()).await.map(|c| token(&c)) })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for task in tasks {
        tokens.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(tokens.len(), 1);
    assert_eq!(entra.requests(), 1);
}

#[tokio::test]
async fn a_token_inside_the_margin_is_refreshed_and_kept_when_entra_fails() {
    let entra = counting_fake();
    // Four-minute tokens are inside kubeauth's 15-minute margin and inside the 5 minutes before expiry at which
    // azure_identity's own cache lets go of a token: every call asks Entra.
    entra.set_token_lifetime(240);
    let provider = provider(&entra, secret_vars());
    let first = token(&provider.credential(&aks()).await.unwrap());
    let second = token(&provider.credential(&aks()).await.unwrap());
    assert_ne!(first, second);
    assert_eq!(entra.requests(), 2);

    entra.set_behaviour(Behaviour::Fail);
    let kept = token(&provider.credential(&aks()).await.unwrap());
    assert_eq!(kept, second, "the valid token is kept while Entra fails");
    assert!(entra.requests() >= 3, "the refresh was tried");
}

#[tokio::test]
async fn a_hanging_token_endpoint_times_out() {
    let entra = counting_fake();
    entra.set_behaviour(Behaviour::Hang);
    let provider = AzureProvider::builder()
        .env(|name| secret_vars().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v))
        .client_options(client_options(&entra))
        .timeout(Duration::from_millis(500))
        .build();
    let err = provider.credential(&aks()).await.unwrap_err();
    assert!(matches!(err, kubeauth::core::Error::Timeout { .. }), "{err}");
    assert_eq!(entra.requests(), 1);
}
