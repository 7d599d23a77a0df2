//! The connector against the real kube-apiserver, through a forwarder that counts connections: one connection
//! per cluster whatever the load, each request with its own user's token over it, and new connections when a
//! cluster's settings change.

use std::net::SocketAddr;

use futures::future::join_all;
use kubeauth::{ClusterDetails, Connector, LoginName, Registry, RequestAuth, RequestBody, metadata};
use kubeauth_testkit::forward::CountingForwarder;
use kubeauth_testkit::{TestCluster, service_account};

use crate::{namespaces, status_code};

fn api_server(env: &TestCluster) -> SocketAddr {
    env.url().trim_start_matches("https://").parse().expect("the API server's address")
}

/// `name`, a cluster of `provider` reached through `forwarder`.
fn through(forwarder: &CountingForwarder, env: &TestCluster, name: &str, provider: &str) -> ClusterDetails {
    let mut cluster = env.cluster_details(name, provider);
    cluster.url = forwarder.https_url();
    cluster
}

#[tokio::test]
async fn concurrent_requests_to_a_cluster_share_one_connection() {
    let env = TestCluster::shared();
    let forwarder = CountingForwarder::start(api_server(env)).await;
    let mut cluster = through(&forwarder, env, "one-connection", "serviceAccount");
    cluster.service_account_token = Some(env.admin_token().to_owned().into());
    let connector = Connector::new(Registry::with_defaults());

    // 32 callers at once on a cold connector, each with a client of its own.
    let lists = join_all((0..32).map(|_| async {
        let client = connector.kube_client(&cluster, &RequestAuth::none()).await.unwrap();
        namespaces(client).await
    }))
    .await;
    assert!(lists.iter().all(|l| l.as_ref().is_ok_and(|n| n.contains(&"default".to_owned()))), "{lists:?}");
    assert_eq!(forwarder.connections(), 1, "one TLS handshake for 32 concurrent first requests");

    // The proxy's raw client rides on the same connection.
    let http = connector.http_client(&cluster, &RequestAuth::none()).await.unwrap();
    for _ in 0..5 {
        let request = http::Request::get("/api/v1/namespaces/default").body(RequestBody::empty()).unwrap();
        assert_eq!(http.send(request).await.unwrap().status(), 200);
    }
    assert_eq!(forwarder.connections(), 1);
    assert_eq!(connector.connections_opened(), 1);
    assert_eq!(connector.len(), 1);
}

#[tokio::test]
async fn each_request_carries_its_own_users_token_over_the_shared_connection() {
    let env = TestCluster::shared();
    env.create_service_account("conn-users", "alice").await;
    env.create_service_account("conn-users", "bob").await;
    env.grant("conn-users-alice", service_account("conn-users", "alice"), &["list"], &["namespaces"]).await;
    let alice = env.service_account_token("conn-users", "alice").await;
    let bob = env.service_account_token("conn-users", "bob").await;
    let forwarder = CountingForwarder::start(api_server(env)).await;
    // An oidc cluster: the user's token is sent as it is; service-account tokens stand in for ID tokens.
    let mut cluster = through(&forwarder, env, "per-user", "oidc");
    cluster.auth_metadata.insert(metadata::OIDC_TOKEN_PROVIDER.into(), "corp".into());
    let connector = Connector::new(Registry::with_defaults());
    let login = LoginName::with_sub("oidc", "corp");
    let auth = |token: &str| {
        let mut auth = RequestAuth::none();
        auth.insert_login(&login, token);
        auth
    };

    let answers = join_all((0..16).map(|i| {
        let (connector, cluster) = (&connector, &cluster);
        let auth = auth(if i % 2 == 0 { &alice } else { &bob });
        async move { namespaces(connector.kube_client(cluster, &auth).await.unwrap()).await }
    }))
    .await;
    for (i, answer) in answers.iter().enumerate() {
        if i % 2 == 0 {
            assert!(answer.as_ref().is_ok_and(|n| n.contains(&"conn-users".to_owned())), "alice: {answer:?}");
        } else {
            let err = answer.as_ref().unwrap_err();
            assert_eq!(status_code(err), Some(403), "{err}");
            assert!(err.to_string().contains("system:serviceaccount:conn-users:bob"), "{err}");
        }
    }
    assert_eq!(forwarder.connections(), 1, "alice and bob share the cluster's one connection");

    // Without the user's token: that cluster's error, and nothing is sent.
    let Err(err) = connector.kube_client(&cluster, &RequestAuth::none()).await else {
        panic!("a client without the user's token")
    };
    assert!(err.to_string().contains("`auth.oidc.corp`"), "{err}");
    assert_eq!(forwarder.connections(), 1);
}

#[tokio::test]
async fn a_cluster_whose_url_changes_gets_new_connections_and_a_forgotten_one_none() {
    let env = TestCluster::shared();
    let (first, second) =
        (CountingForwarder::start(api_server(env)).await, CountingForwarder::start(api_server(env)).await);
    let mut cluster = through(&first, env, "moving", "serviceAccount");
    cluster.service_account_token = Some(env.admin_token().to_owned().into());
    let connector = Connector::new(Registry::with_defaults());
    namespaces(connector.kube_client(&cluster, &RequestAuth::none()).await.unwrap()).await.unwrap();
    assert_eq!((first.connections(), second.connections()), (1, 0));

    // A locator refresh moves the cluster: requests go to the new URL, on a connection of their own.
    cluster.url = second.https_url();
    namespaces(connector.kube_client(&cluster, &RequestAuth::none()).await.unwrap()).await.unwrap();
    namespaces(connector.kube_client(&cluster, &RequestAuth::none()).await.unwrap()).await.unwrap();
    assert_eq!((first.connections(), second.connections()), (1, 1));
    assert_eq!(connector.len(), 1, "the cluster's old entry is replaced");

    // A CA change is a change too.
    let mut other_ca = cluster.clone();
    other_ca.ca_data = Some(kubeauth_testkit::pki::TestCa::new("another").ca_data());
    let client = connector.kube_client(&other_ca, &RequestAuth::none()).await.unwrap();
    let err = namespaces(client).await.unwrap_err();
    assert!(kubeauth::report(&err).to_lowercase().contains("certificate"), "{}", kubeauth::report(&err));

    // The cluster is no longer located: its entry goes.
    connector.retain(&[]);
    assert!(connector.is_empty());
}

/// A cluster's `proxyUrl`: its connections are CONNECT tunnels through that proxy (TLS to the API server end to
/// end inside), with the proxy's credentials from the URL; a proxy that refuses is that cluster's error, naming
/// the proxy without its password.
#[tokio::test]
async fn a_clusters_proxy_url_tunnels_its_connections() {
    use kubeauth_testkit::forward::ConnectProxy;
    let env = TestCluster::shared();
    let required =
        format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "corp:pa ss"));
    let proxy = ConnectProxy::start(Some(required), &[]).await;
    let mut cluster = env.cluster_details("via-proxy", "serviceAccount");
    cluster.service_account_token = Some(env.admin_token().to_owned().into());
    cluster.proxy_url = Some(proxy.url().replace("http://", "http://corp:pa%20ss@"));
    let connector = Connector::new(Registry::with_defaults());
    let client = connector.kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    assert!(namespaces(client.clone()).await.unwrap().contains(&"default".to_owned()));
    namespaces(client).await.unwrap();
    let api_server = env.url().trim_start_matches("https://").to_owned();
    assert_eq!(proxy.tunnels(), [api_server], "one tunnel, to the API server, for both requests (HTTP/2)");

    let mut refused = cluster.clone();
    refused.name = "wrong-proxy-password".into();
    refused.proxy_url = Some(proxy.url().replace("http://", "http://corp:wrong-secret@"));
    let client = connector.kube_client(&refused, &RequestAuth::none()).await.unwrap();
    let shown = format!("{:?}", namespaces(client).await.unwrap_err());
    assert!(shown.contains("407") && shown.contains("***@127.0.0.1"), "{shown}");
    assert!(!shown.contains("wrong-secret"), "{shown}");
}
