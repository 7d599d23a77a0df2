//! Fault injection on the real test environment: identity endpoints that are down, slow or answer garbage; an
//! API server that goes away during a watch through the proxy; a failing cluster locator with
//! `clusterLocatorContinueOnError` true and false. Each gives its documented behaviour: an error naming the
//! cluster (or the locator), no panic, no request lost without an answer.

use std::time::{Duration, Instant};

use kubeauth::{AppConfig, ClusterDetails, Kubeauth, Registry, RequestAuth, ResolveContext};
use kubeauth_server::KubeauthServer;
use kubeauth_testkit::faults::{Fault, Misbehaving};
use kubeauth_testkit::google::FakeGoogle;
use kubeauth_testkit::{TestCluster, http};

const ACCOUNT: &str = "faults@kubeauth-test.iam.gserviceaccount.com";

/// A googleServiceAccount registry whose key sends its token requests to `token_uri`.
fn google_registry(token_uri: &str) -> Registry {
    let google = FakeGoogle::start();
    let mut key: serde_json::Value = serde_json::from_str(&google.service_account(ACCOUNT)).unwrap();
    key["token_uri"] = token_uri.into();
    let yaml = format!("kubernetes:\n  googleServiceAccountCredentials: '{}'\n", key.to_string().replace('\'', "''"));
    let config = AppConfig::from_yaml_str(&yaml, None).unwrap();
    Kubeauth::from_config(&config, &ResolveContext::new(|_| None)).unwrap().registry().clone()
}

fn gke_cluster() -> ClusterDetails {
    let mut cluster = ClusterDetails::new("gke-faults", "https://35.200.10.1");
    cluster.set_auth_provider("googleServiceAccount");
    cluster
}

#[tokio::test]
async fn an_identity_endpoint_answering_garbage_is_that_clusters_error() {
    let peer = Misbehaving::start(Fault::Garbage);
    let registry = google_registry(&format!("{}/token", peer.url()));
    let err = registry.credential(&gke_cluster(), &RequestAuth::none()).await.unwrap_err();
    let text = kubeauth::report(&err);
    assert!(text.starts_with("cluster 'gke-faults'"), "{text}");
    assert!(text.contains("googleServiceAccount"), "{text}");
}

#[tokio::test]
async fn an_identity_endpoint_that_is_down_is_that_clusters_error() {
    let peer = Misbehaving::start(Fault::Status(503));
    let registry = google_registry(&format!("{}/token", peer.url()));
    let err = registry.credential(&gke_cluster(), &RequestAuth::none()).await.unwrap_err();
    let text = kubeauth::report(&err);
    assert!(text.starts_with("cluster 'gke-faults'") && text.contains("503"), "{text}");
    // Nothing listening at all.
    let registry = google_registry("http://127.0.0.1:9/token");
    let err = registry.credential(&gke_cluster(), &RequestAuth::none()).await.unwrap_err();
    assert!(kubeauth::report(&err).starts_with("cluster 'gke-faults'"), "{}", kubeauth::report(&err));
}

#[tokio::test]
async fn a_hanging_identity_endpoint_times_out() {
    let peer = Misbehaving::start(Fault::Hang);
    let registry = google_registry(&format!("{}/token", peer.url()));
    let started = Instant::now();
    let err = registry.credential(&gke_cluster(), &RequestAuth::none()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(20), "{elapsed:?}");
    let text = kubeauth::report(&err).to_lowercase();
    assert!(text.contains("timed out") || text.contains("timeout"), "{text}");
}

#[tokio::test]
async fn an_issuer_answering_garbage_fails_the_login_with_its_name() {
    use kubeauth::login::{Login, LoginError, LoginSettings, SessionStore};
    let peer = Misbehaving::start(Fault::Garbage);
    let dir = tempfile::tempdir().unwrap();
    let login =
        Login::new(LoginSettings::oidc("broken", peer.url(), "kubeauth"), SessionStore::in_dir(dir.path())).unwrap();
    let err = login.start_code_flow().await.unwrap_err();
    assert!(matches!(err, LoginError::Discovery { .. }), "{err}");
    assert!(
        err.to_string().starts_with("oidc.broken: cannot read the OpenID configuration of http://127.0.0.1:"),
        "{err}"
    );
    // Without a session, a token lookup that may not prompt says so, and does not touch the issuer.
    let err = login.session(None).await.unwrap_err();
    assert!(matches!(err, LoginError::NotLoggedIn { .. }), "{err}");
}

async fn serve(yaml: &str) -> String {
    let config = AppConfig::from_yaml_str(yaml, None).unwrap();
    // With a catalog section, entity references are resolved in that catalog.
    let server = KubeauthServer::from_config(&config, &ResolveContext::new(|_| None)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, server.router()).await });
    addr
}

#[tokio::test]
async fn an_api_server_that_goes_away_mid_watch_ends_the_stream_and_the_next_request_is_a_502() {
    use tokio::io::AsyncReadExt as _;
    let mut cluster = tokio::task::spawn_blocking(|| TestCluster::builder().start()).await.unwrap();
    let (addr, mut stream) = watch_through_the_proxy(&cluster, "going", cluster.admin_token()).await;
    // The watch is open: its first events arrive.
    let mut received = Vec::new();
    read_until(&mut stream, &mut received, "\"ADDED\"").await;
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    // The API server goes away: the stream ends (no hang).
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop_apiserver();
        cluster
    })
    .await
    .unwrap();
    let mut buf = [0u8; 4096];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the watch stream ended when its API server went away");
    // The next request gets an answer naming the cluster, and the server is alive.
    let next = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces", &[]).await.unwrap();
    assert_eq!(next.status, 502, "{}", next.text());
    assert!(next.text().contains("cluster 'going'"), "{}", next.text());
    assert_eq!(http::get(&addr, "/healthz", &[]).await.unwrap().status, 200);
    tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
}

#[tokio::test]
async fn a_failing_locator_fails_the_list_or_is_skipped_as_configured() {
    let base = "kubernetes:\n  clusterLocatorContinueOnError: CONTINUE\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: static\n          url: https://35.200.10.1\n          authProvider: aws\n    - type: catalog\nkubeauth:\n  catalog:\n    baseUrl: http://127.0.0.1:9\n";
    // false: the whole list fails, with the locator named; the server says it is not ready.
    let addr = serve(&base.replace("CONTINUE", "false")).await;
    let clusters = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap();
    assert_eq!(clusters.status, 503, "{}", clusters.text());
    assert!(clusters.text().contains("catalog"), "{}", clusters.text());
    assert_eq!(http::get(&addr, "/readyz", &[]).await.unwrap().status, 503);
    // true: the other method's clusters are served.
    let addr = serve(&base.replace("CONTINUE", "true")).await;
    let clusters = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap();
    assert_eq!(clusters.status, 200, "{}", clusters.text());
    assert_eq!(clusters.json()["items"][0]["name"], "static");
    assert_eq!(clusters.json()["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_token_invalidated_mid_watch_keeps_the_watch_and_the_next_request_gets_the_401() {
    let cluster = TestCluster::shared();
    cluster.create_service_account("faults-watch", "watcher").await;
    cluster
        .grant(
            "faults-watcher",
            kubeauth_testkit::service_account("faults-watch", "watcher"),
            &["list", "watch"],
            &["namespaces"],
        )
        .await;
    let token = cluster.service_account_token("faults-watch", "watcher").await;
    let (addr, mut stream) = watch_through_the_proxy(cluster, "watched", &token).await;
    let mut received = Vec::new();
    read_until(&mut stream, &mut received, "\"ADDED\"").await;
    // The token stops being valid (its service account is deleted) while the watch is open.
    cluster.delete_service_account("faults-watch", "watcher").await;
    // The open watch was authenticated when it started: it keeps delivering events.
    cluster.create_namespace("faults-after-invalidation").await;
    read_until(&mut stream, &mut received, "faults-after-invalidation").await;
    // New requests with the invalidated token: the API server's 401, passed through, once its authentication
    // cache (10 s for accepted tokens) lets go of the token.
    let started = Instant::now();
    let status = loop {
        let next = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces", &[]).await.unwrap();
        if next.status != 200 || started.elapsed() > Duration::from_secs(30) {
            break next.status;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(status, 401);
}

/// Reads the stream until `needle` has arrived (20 s at most per read).
async fn read_until(stream: &mut tokio::net::TcpStream, received: &mut Vec<u8>, needle: &str) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(received).contains(needle) {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await.expect("events").unwrap();
        assert!(n > 0, "the watch ended: {}", String::from_utf8_lossy(received));
        received.extend_from_slice(&buf[..n]);
    }
}

/// Serves `cluster` under `name` with a serviceAccount `token`, and opens a watch of namespaces through the
/// proxy; the server's address and the watch's connection (the answer not read yet).
async fn watch_through_the_proxy(cluster: &TestCluster, name: &str, token: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: {name}\n          url: {}\n          caData: {}\n          authProvider: serviceAccount\n          serviceAccountToken: {token}\n",
        cluster.url(),
        cluster.ca().ca_data(),
    );
    let addr = serve(&yaml).await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(
            format!("GET /api/kubernetes/proxy/api/v1/namespaces?watch=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    (addr, stream)
}
