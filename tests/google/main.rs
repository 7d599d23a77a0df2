//! The `googleServiceAccount` provider and the `gke` locator end to end: a service-account key exchanged with
//! the jwt-bearer grant at a fake of Google's token endpoint, clusters listed from a fake of the GKE API, and the
//! access token accepted by the real kube-apiserver through its TokenReview webhook.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kubeauth::{AppConfig, ClusterLocator, Kubeauth, RequestAuth, ResolveContext};
use kubeauth_cluster_locator::{AccessTokenSource, GkeLocator, GkeSettings};
use kubeauth_testkit::google::FakeGoogle;
use kubeauth_testkit::{TestCluster, TokenReviewWebhook, user};

const PROJECT: &str = "kubeauth-test";
const ACCOUNT: &str = "kubeauth@kubeauth-test.iam.gserviceaccount.com";

struct Env {
    google: FakeGoogle,
    _webhook: TokenReviewWebhook,
    cluster: TestCluster,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let google = FakeGoogle::start();
        let (cluster, webhook) = TestCluster::start_with_verifier(google.verifier());
        let endpoint = cluster.url().trim_start_matches("https://").to_owned();
        google.set_clusters(
            PROJECT,
            "-",
            serde_json::json!([
                {
                    "name": "gke-platform",
                    "endpoint": endpoint,
                    "location": "europe-west1",
                    "resourceLabels": {"team": "platform", "env": "test"},
                    "masterAuth": {"clusterCaCertificate": cluster.ca().ca_data()}
                },
                {
                    "name": "gke-data",
                    "endpoint": "127.0.0.1:9",
                    "location": "us-central1",
                    "resourceLabels": {"team": "data"},
                    "masterAuth": {"clusterCaCertificate": cluster.ca().ca_data()}
                }
            ]),
        );
        Env { google, _webhook: webhook, cluster }
    })
}

fn config(env: &Env) -> AppConfig {
    let yaml = format!(
        r#"
kubernetes:
  googleServiceAccountCredentials: ${{GKE_SA_KEY}}
  clusterLocatorMethods:
    - type: gke
      projectId: {PROJECT}
      authProvider: googleServiceAccount
      exposeDashboard: true
      matchingResourceLabels:
        - key: team
          value: platform
      apiBaseUrl: {}
"#,
        env.google.url()
    );
    AppConfig::from_yaml_str(&yaml, None).unwrap()
}

fn ctx(key: String) -> ResolveContext {
    ResolveContext::new(move |name| (name == "GKE_SA_KEY").then(|| key.clone()))
}

#[tokio::test]
async fn the_gke_locator_finds_the_clusters_and_the_service_account_lists_namespaces() {
    let env = env();
    env.cluster.grant("gke-sa-namespaces", user(ACCOUNT), &["list"], &["namespaces"]).await;
    let key = env.google.service_account(ACCOUNT);
    let config = config(env);
    let kubeauth = Kubeauth::from_config(&config, &ctx(key)).unwrap();
    let clusters = kubeauth.clusters().await.unwrap();

    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["gke-platform"], "gke-data is filtered out by its labels");
    let gke = &clusters[0];
    assert_eq!(gke.url, env.cluster.url());
    assert_eq!(gke.auth_provider(), Some("googleServiceAccount"));
    assert_eq!(gke.ca_data.as_deref(), Some(env.cluster.ca().ca_data().as_str()), "the cluster CA from masterAuth");
    assert_eq!(gke.dashboard_app.as_deref(), Some("gke"));
    assert_eq!(
        gke.dashboard_parameters,
        Some(serde_json::json!({"projectId": PROJECT, "region": "europe-west1", "clusterName": "gke-platform"}))
    );

    // TLS verified with the real CA; the access token accepted by the API server's webhook.
    let client = kubeauth.kube_client(gke, &RequestAuth::none()).await.unwrap();
    let namespaces = kube::Api::<Namespace>::all(client.clone()).list(&Default::default()).await.unwrap();
    assert!(!namespaces.items.is_empty());
    // One jwt-bearer exchange served the locator and the client: the token is cached until it nears expiry.
    let exchanges = env.google.token_requests();
    kube::Api::<Namespace>::all(client).list(&Default::default()).await.unwrap();
    assert_eq!(env.google.token_requests(), exchanges);
}

#[tokio::test]
async fn a_key_with_the_wrong_private_key_fails_naming_the_locator_and_the_cluster() {
    let env = env();
    env.google.service_account("forged@kubeauth-test.iam.gserviceaccount.com");
    let forged = env.google.forged_key("forged@kubeauth-test.iam.gserviceaccount.com");
    let config = config(env);
    let kubeauth = Kubeauth::from_config(&config, &ctx(forged)).unwrap();
    let err = kubeauth::report(&kubeauth.clusters().await.unwrap_err());
    assert!(err.contains("clusterLocatorMethods[0] (gke)"), "{err}");
    assert!(err.contains("invalid_grant Invalid JWT Signature."), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    let cluster = {
        let mut c = env.cluster.cluster_details("gke-platform", "googleServiceAccount");
        c.title = Some("listed by hand".into());
        c
    };
    let Err(err) = kubeauth.kube_client(&cluster, &RequestAuth::none()).await else {
        panic!("a client with a forged key")
    };
    let err = kubeauth::report(&err);
    assert!(err.starts_with("cluster 'gke-platform': the googleServiceAccount provider failed"), "{err}");
    assert!(
        err.contains("refused the service account forged@kubeauth-test.iam.gserviceaccount.com (400 Bad Request)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_key_in_the_config_names_the_key() {
    let config = config(env());
    let Err(err) = Kubeauth::from_config(&config, &ctx(r#"{"type":"service_account","client_email":"x@y"}"#.into()))
    else {
        panic!("a registry with a broken key")
    };
    assert_eq!(err.to_string(), "kubernetes.googleServiceAccountCredentials: the key has no `private_key`");
}

/// Gives the fake's tokens until told to fail.
struct Flaky {
    key: kubeauth::google_service_account::GoogleServiceAccountProvider,
    calls: AtomicUsize,
}

impl AccessTokenSource for Flaky {
    fn access_token<'a>(&'a self, context: &'a str) -> kubeauth::CredentialFuture<'a> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) >= 1 {
                return Err(kubeauth::core::Error::Provider {
                    cluster: context.into(),
                    provider: "googleServiceAccount".into(),
                    source: "token endpoint down".into(),
                });
            }
            self.key.access_token(context).await
        })
    }
}

#[tokio::test]
async fn the_last_good_list_is_kept_when_a_refresh_fails() {
    let env = env();
    let key = env.google.service_account("refresh@kubeauth-test.iam.gserviceaccount.com");
    let provider = kubeauth::google_service_account::GoogleServiceAccountProvider::with_key_json(&key).unwrap();
    let token = Arc::new(Flaky { key: provider, calls: AtomicUsize::new(0) });
    let mut settings = GkeSettings::new(PROJECT);
    // Every call refreshes.
    settings.refresh_interval = Duration::ZERO;
    settings.api_base_url = env.google.url().into();
    let locator = GkeLocator::new(settings, "gke test", token.clone());
    let first = locator.clusters().await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].auth_provider(), Some("google"), "the default, as in Backstage");
    let second = locator.clusters().await.unwrap();
    assert_eq!(token.calls.load(Ordering::SeqCst), 2, "the refresh was tried");
    assert_eq!(second.iter().map(|c| &c.name).collect::<Vec<_>>(), first.iter().map(|c| &c.name).collect::<Vec<_>>());
}
