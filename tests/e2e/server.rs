//! The server's proxy against the real API server, embedded in-process as a user of the crate would.

use kubeauth::{AppConfig, Kubeauth, ResolveContext};
use kubeauth_server::KubeauthServer;
use kubeauth_testkit::{TestCluster, http, service_account};

/// Serves `yaml`'s clusters on a loopback port as `kubeauth serve` does ([`KubeauthServer::serve`]: its own
/// listener, limits and browser guard); returns the address.
pub(crate) async fn serve(yaml: &str) -> String {
    let config = AppConfig::from_yaml_str(yaml, None).unwrap();
    let server = KubeauthServer::from_config(&config, &ResolveContext::new(|_| None)).unwrap();
    server.check().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

/// The lines of a cluster entry that authenticate with the shared test cluster's admin token.
pub(crate) fn admin_auth(env: &TestCluster) -> String {
    format!("          authProvider: serviceAccount\n          serviceAccountToken: {}\n", env.admin_token())
}

pub(crate) fn cluster_yaml(env: &TestCluster, name: &str, rest: &str) -> String {
    format!("        - name: {name}\n          url: {}\n          caData: {}\n{rest}", env.url(), env.ca().ca_data())
}

pub(crate) fn config(clusters: &[String]) -> String {
    format!("kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{}", clusters.concat())
}

#[tokio::test]
async fn one_bad_cluster_does_not_affect_the_good_one() {
    let env = TestCluster::shared();
    env.create_service_account("proxy-e2e", "reader").await;
    env.grant("proxy-e2e-reader", service_account("proxy-e2e", "reader"), &["list", "get"], &["namespaces"]).await;
    let token = env.service_account_token("proxy-e2e", "reader").await;
    let addr = serve(&config(&[
        cluster_yaml(
            env,
            "good",
            &format!("          authProvider: serviceAccount\n          serviceAccountToken: {token}\n"),
        ),
        cluster_yaml(
            env,
            "bad",
            "          authProvider: serviceAccount\n          serviceAccountToken: wrong-token\n",
        ),
    ]))
    .await;

    let good = http::get(
        &addr,
        "/api/kubernetes/proxy/api/v1/namespaces/proxy-e2e",
        &[("Backstage-Kubernetes-Cluster", "good")],
    )
    .await
    .unwrap();
    assert_eq!(good.status, 200, "{}", good.text());
    assert_eq!(good.json()["metadata"]["name"], "proxy-e2e");

    let bad = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces", &[("Backstage-Kubernetes-Cluster", "bad")])
        .await
        .unwrap();
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["kind"], "Status", "the API server's own Status: {}", bad.text());

    let neither = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces", &[]).await.unwrap();
    // As Backstage's backend: no cluster named among several is a cluster not found.
    assert_eq!(neither.status, 404, "{}", neither.text());
}

#[tokio::test]
async fn the_callers_own_authorization_is_never_forwarded() {
    let env = TestCluster::shared();
    env.create_service_account("proxy-e2e", "narrow").await;
    env.grant("proxy-e2e-narrow", service_account("proxy-e2e", "narrow"), &["list"], &["namespaces"]).await;
    let token = env.service_account_token("proxy-e2e", "narrow").await;
    let addr = serve(&config(&[cluster_yaml(
        env,
        "narrow",
        &format!("          authProvider: serviceAccount\n          serviceAccountToken: {token}\n"),
    )]))
    .await;
    // An admin token from the caller must not widen what the server's identity may do.
    let admin = format!("Bearer {}", env.admin_token());
    let pods = http::get(&addr, "/api/kubernetes/proxy/api/v1/pods", &[("Authorization", &admin)]).await.unwrap();
    assert_eq!(pods.status, 403, "{}", pods.text());
}

#[tokio::test]
async fn backstage_kubernetes_authorization_is_the_callers_own_credential() {
    let env = TestCluster::shared();
    env.create_service_account("proxy-e2e", "portal").await;
    env.grant("proxy-e2e-portal", service_account("proxy-e2e", "portal"), &["list"], &["namespaces"]).await;
    env.create_service_account("proxy-e2e", "caller").await;
    env.grant("proxy-e2e-caller", service_account("proxy-e2e", "caller"), &["list"], &["configmaps"]).await;
    let portal = env.service_account_token("proxy-e2e", "portal").await;
    let caller = env.service_account_token("proxy-e2e", "caller").await;
    let addr = serve(&config(&[cluster_yaml(
        env,
        "portal",
        &format!("          authProvider: serviceAccount\n          serviceAccountToken: {portal}\n"),
    )]))
    .await;
    let get = |path: &'static str, own: Option<String>| {
        let addr = addr.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                own.as_deref().map(|v| vec![("Backstage-Kubernetes-Authorization", v)]).unwrap_or_default();
            http::get(&addr, path, &headers).await.unwrap()
        }
    };
    // As Backstage's proxy: the header's token goes upstream in place of the cluster's credential.
    let own = Some(format!("Bearer {caller}"));
    let configmaps = get("/api/kubernetes/proxy/api/v1/configmaps", own.clone()).await;
    assert_eq!(configmaps.status, 200, "{}", configmaps.text());
    let namespaces = get("/api/kubernetes/proxy/api/v1/namespaces", own).await;
    assert_eq!(namespaces.status, 403, "the caller's identity, not the portal's: {}", namespaces.text());
    assert!(namespaces.text().contains("system:serviceaccount:proxy-e2e:caller"), "{}", namespaces.text());
    // Without it, the cluster's own credential.
    let portal_view = get("/api/kubernetes/proxy/api/v1/configmaps", None).await;
    assert!(portal_view.text().contains("system:serviceaccount:proxy-e2e:portal"), "{}", portal_view.text());
    // A wrong token is the API server's 401, never a fall-back to the cluster's credential.
    let wrong = get("/api/kubernetes/proxy/api/v1/namespaces", Some("Bearer not-a-token".into())).await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let basic = get("/api/kubernetes/proxy/api/v1/namespaces", Some("Basic dTpw".into())).await;
    assert_eq!(basic.status, 400, "{}", basic.text());
}

#[tokio::test]
async fn a_post_goes_through_with_its_body() {
    let env = TestCluster::shared();
    env.create_namespace("proxy-post").await;
    let addr = serve(&config(&[cluster_yaml(env, "admin", &admin_auth(env))])).await;
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"from-proxy"},"data":{"k":"v"}}"#;
    let created = http::request(
        &addr,
        "POST",
        "/api/kubernetes/proxy/api/v1/namespaces/proxy-post/configmaps",
        &[("Content-Type", "application/json")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(created.status, 201, "{}", created.text());
    let read = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces/proxy-post/configmaps/from-proxy", &[])
        .await
        .unwrap();
    assert_eq!(read.json()["data"]["k"], "v");
}

#[tokio::test]
async fn a_client_side_token_travels_in_its_provider_header() {
    let env = TestCluster::shared();
    env.create_service_account("proxy-e2e", "user").await;
    env.grant("proxy-e2e-user", service_account("proxy-e2e", "user"), &["list"], &["namespaces"]).await;
    // The oidc provider sends the user's token as it is; a real service-account token stands in for an ID token.
    let user_token = env.service_account_token("proxy-e2e", "user").await;
    let addr = serve(&config(&[cluster_yaml(
        env,
        "oidc",
        "          authProvider: oidc\n          oidcTokenProvider: okta\n",
    )]))
    .await;

    let with = http::get(
        &addr,
        "/api/kubernetes/proxy/api/v1/namespaces",
        &[("Backstage-Kubernetes-Authorization-oidc-okta", &user_token)],
    )
    .await
    .unwrap();
    assert_eq!(with.status, 200, "{}", with.text());

    let without = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces", &[]).await.unwrap();
    assert_eq!(without.status, 401);
    assert!(without.json()["message"].as_str().unwrap().contains("`auth.oidc.okta`"), "{}", without.text());

    let clusters = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap().json();
    assert_eq!(clusters["items"][0]["oidcTokenProvider"], "okta");
}

#[tokio::test]
async fn an_entitys_objects_come_from_the_good_cluster_beside_the_bad_ones_error() {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    let env = TestCluster::shared();
    env.create_namespace("shop").await;
    let admin = env.admin_client().await;
    let labels = std::collections::BTreeMap::from([("backstage.io/kubernetes-id".to_owned(), "checkout".to_owned())]);
    let meta = |name: &str| kube::api::ObjectMeta {
        name: Some(name.into()),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "checkout-1", "labels": {"backstage.io/kubernetes-id": "checkout"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/checkout:1"}]}
    }))
    .unwrap();
    let post = kube::api::PostParams::default();
    let _ = kube::Api::<Pod>::namespaced(admin.clone(), "shop").create(&post, &pod).await;
    let cm = ConfigMap { metadata: meta("checkout-config"), ..Default::default() };
    let _ = kube::Api::<ConfigMap>::namespaced(admin.clone(), "shop").create(&post, &cm).await;
    let other = ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some("unrelated".into()), ..Default::default() },
        ..Default::default()
    };
    let _ = kube::Api::<ConfigMap>::namespaced(admin, "shop").create(&post, &other).await;

    let addr = serve(&config(&[
        cluster_yaml(env, "good", &admin_auth(env)),
        cluster_yaml(
            env,
            "bad",
            "          authProvider: serviceAccount\n          serviceAccountToken: wrong-token\n",
        ),
        cluster_yaml(env, "user-side", "          authProvider: oidc\n          oidcTokenProvider: okta\n"),
    ]))
    .await;
    let body = serde_json::json!({
        "entity": {"metadata": {"name": "checkout", "annotations": {"backstage.io/kubernetes-id": "checkout", "backstage.io/kubernetes-namespace": "shop"}}},
        "auth": {}
    });
    let answer = http::request(
        &addr,
        "POST",
        "/api/kubernetes/services/checkout",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let items = answer.json()["items"].as_array().unwrap().clone();
    let by_name = |name: &str| items.iter().find(|i| i["cluster"]["name"] == name).unwrap().clone();

    let good = by_name("good");
    // The test API server has no metrics API: as in Backstage, the pods' metrics are that cluster's NOT_FOUND.
    assert_eq!(
        good["errors"],
        serde_json::json!([{"errorType": "NOT_FOUND", "statusCode": 404,
            "resourcePath": "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods"}]),
        "{good:#}"
    );
    let of_type =
        |t: &str| good["resources"].as_array().unwrap().iter().find(|r| r["type"] == t).unwrap()["resources"].clone();
    let names = |v: serde_json::Value| {
        v.as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(of_type("pods")), ["checkout-1"]);
    assert_eq!(names(of_type("configmaps")), ["checkout-config"], "only the entity's objects");
    assert_eq!(
        names(of_type("cronjobs")),
        Vec::<String>::new(),
        "an older API version answered where the newer is absent"
    );

    let bad = by_name("bad");
    let errors = bad["errors"].as_array().unwrap();
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e["errorType"] == "UNAUTHORIZED_ERROR" && e["statusCode"] == 401),
        "{bad:#}"
    );
    assert!(errors.iter().any(|e| e["resourcePath"] == "/api/v1/namespaces/shop/pods"), "{bad:#}");

    let user_side = by_name("user-side");
    assert_eq!(
        user_side["errors"][0]["errorType"], "UNAUTHORIZED_ERROR",
        "no user token: that cluster's error: {user_side:#}"
    );
    assert!(user_side["errors"][0]["message"].as_str().unwrap().contains("`auth.oidc.okta`"));
}

#[tokio::test]
async fn a_watch_streams_through_the_proxy() {
    let env = TestCluster::shared();
    let addr = serve(&config(&[cluster_yaml(env, "admin", &admin_auth(env))])).await;
    // The API server ends the watch after 2 s; every event arrives as a line of JSON before that.
    let answer =
        http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces?watch=1&timeoutSeconds=2", &[]).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let events: Vec<serde_json::Value> = answer.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        events.iter().any(|e| e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "kube-system"),
        "{events:?}"
    );
}

/// An admin-token server over the shared test cluster.
async fn admin_server(env: &TestCluster) -> String {
    serve(&config(&[cluster_yaml(env, "admin", &admin_auth(env))])).await
}

/// Sends `request` as it is and reads the answer until the server closes the connection (or 5 s).
pub(crate) async fn raw(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_chunked_body_is_streamed_through() {
    let env = TestCluster::shared();
    env.create_namespace("proxy-stream").await;
    let addr = admin_server(env).await;
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"streamed"},"data":{"k":"chunked"}}"#;
    let (first, second) = body.split_at(20);
    let mut request = format!(
        "POST /api/kubernetes/proxy/api/v1/namespaces/proxy-stream/configmaps HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for chunk in [first, second] {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&addr, &request).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let read = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces/proxy-stream/configmaps/streamed", &[])
        .await
        .unwrap();
    assert_eq!(read.json()["data"]["k"], "chunked");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_read() {
    let env = TestCluster::shared();
    let addr = admin_server(env).await;
    let request = format!(
        "POST /api/kubernetes/proxy/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        20 * 1024 * 1024
    );
    let answer = raw(&addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than 10485760 bytes"), "{answer}");
}

#[tokio::test]
async fn a_websocket_watch_is_upgraded_end_to_end() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let env = TestCluster::shared();
    let addr = admin_server(env).await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /api/kubernetes/proxy/api/v1/namespaces?watch=1&timeoutSeconds=5 HTTP/1.1\r\nHost: {addr}\r\nBackstage-Kubernetes-Cluster: admin\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nOrigin: http://127.0.0.1\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // The API server's handshake answer comes back through the proxy.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // RFC 6455's example key and its accept value: computed by the API server, passed through unchanged.
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    // The first frame: an unmasked text (or binary) frame holding one watch event.
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).await.unwrap();
    assert!(matches!(header[0] & 0x0f, 1 | 2), "opcode {header:?}");
    assert_eq!(header[1] & 0x80, 0, "server frames are not masked");
    let length = match header[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).await.unwrap();
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).await.unwrap();
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(length).unwrap()];
    stream.read_exact(&mut payload).await.unwrap();
    let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(event["type"], "ADDED", "{event}");
    assert_eq!(event["object"]["kind"], "Namespace", "{event}");
}

#[tokio::test]
async fn kubectl_exec_goes_through_the_proxy_and_gets_the_api_servers_answer() {
    use k8s_openapi::api::core::v1::Pod;
    let env = TestCluster::shared();
    env.create_namespace("proxy-exec").await;
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
        "spec": {"containers": [{"name": "sh", "image": "busybox"}]}
    }))
    .unwrap();
    let pods = kube::Api::<Pod>::namespaced(env.admin_client().await, "proxy-exec");
    let _ = pods.create(&Default::default(), &pod).await;
    let addr = admin_server(env).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: p\n  cluster:\n    server: http://{addr}/api/kubernetes/proxy\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: p\n  context: {{cluster: p, user: u}}\ncurrent-context: p\n"
        ),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        let kubeconfig = kubeconfig.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let program = env.binaries().kubectl.clone();
        let home = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(program)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(args)
                .env("HOME", home)
                .output()
                .unwrap()
        })
    };
    // kubectl through the proxy, with the server's credential.
    let get = kubectl(&["get", "pods", "-n", "proxy-exec", "-o", "name"]).await.unwrap();
    assert!(String::from_utf8_lossy(&get.stdout).contains("pod/shell"), "{}", String::from_utf8_lossy(&get.stderr));
    // The test environment has no kubelet: the API server refuses the exec itself, and kubectl shows its answer.
    let exec = kubectl(&["exec", "-n", "proxy-exec", "shell", "--", "true"]).await.unwrap();
    assert!(!exec.status.success());
    let stderr = String::from_utf8_lossy(&exec.stderr);
    assert!(stderr.contains("does not have a host assigned"), "{stderr}");
}

/// A server-side provider for catalog clusters in these tests: the cluster's admin token (a serviceAccount
/// cluster may not come from the catalog).
#[derive(Clone)]
struct AdminToken(String);

impl kubeauth::ServerSideProvider for AdminToken {
    fn credential<'a>(&'a self, _cluster: &'a kubeauth::ClusterDetails) -> kubeauth::CredentialFuture<'a> {
        Box::pin(async move { Ok(kubeauth::Credential::bearer(self.0.clone())) })
    }
}

/// Serves `yaml` with the default providers plus `adminToken`, and the catalog for entity references.
pub(crate) async fn serve_with_catalog(yaml: &str, catalog: &kubeauth_testkit::catalog::FakeCatalog) -> String {
    let env = TestCluster::shared();
    let config = AppConfig::from_yaml_str(yaml, None).unwrap();
    let ctx = ResolveContext::new(|_| None);
    let kubeauth = Kubeauth::builder(&config, &ctx)
        .unwrap()
        .provider("adminToken", kubeauth::Provider::server(AdminToken(env.admin_token().to_owned())))
        .unwrap()
        .build()
        .unwrap();
    let client =
        kubeauth::locator::catalog::CatalogClient::new(catalog.url(), Some(catalog.token().to_owned().into()), None)
            .unwrap();
    let server = KubeauthServer::new(kubeauth).with_catalog(client);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

pub(crate) fn catalog_section(catalog: &kubeauth_testkit::catalog::FakeCatalog) -> String {
    format!("kubeauth:\n  catalog:\n    baseUrl: {}\n    token: {}\n", catalog.url(), catalog.token())
}

async fn post_json(addr: &str, path: &str, body: serde_json::Value) -> http::HttpResponse {
    http::request(addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_workloads_query_resolves_the_entity_in_the_catalog() {
    use k8s_openapi::api::core::v1::Pod;
    let env = TestCluster::shared();
    env.create_namespace("payments").await;
    let admin = env.admin_client().await;
    for name in ["payments-api-1", "payments-api-2"] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "payments-api"}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/payments:1"}]}
        }))
        .unwrap();
        let _ = kube::Api::<Pod>::namespaced(admin.clone(), "payments").create(&Default::default(), &pod).await;
    }
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    catalog.add(serde_json::json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "payments-api", "namespace": "default", "annotations": {
            "backstage.io/kubernetes-label-selector": "app.kubernetes.io/name=payments-api",
            "backstage.io/kubernetes-namespace": "payments"}},
        "spec": {"type": "service", "owner": "team-payments", "lifecycle": "production"}
    }));
    let yaml = format!(
        "{}{}",
        config(&[
            cluster_yaml(
                env,
                "good",
                &format!(
                    "          authProvider: serviceAccount\n          serviceAccountToken: {}\n",
                    env.admin_token()
                ),
            ),
            cluster_yaml(
                env,
                "bad",
                "          authProvider: serviceAccount\n          serviceAccountToken: wrong-token\n"
            ),
        ]),
        catalog_section(&catalog)
    );
    let addr = serve_with_catalog(&yaml, &catalog).await;

    let answer = post_json(
        &addr,
        "/api/kubernetes/resources/workloads/query",
        serde_json::json!({"entityRef": "component:default/payments-api", "auth": {}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let items = answer.json()["items"].as_array().unwrap().clone();
    let good = items.iter().find(|i| i["cluster"]["name"] == "good").unwrap();
    let pods = good["resources"].as_array().unwrap().iter().find(|r| r["type"] == "pods").unwrap();
    let mut names: Vec<&str> =
        pods["resources"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["payments-api-1", "payments-api-2"]);
    assert_eq!(good["errors"][0]["resourcePath"], "/apis/metrics.k8s.io/v1beta1/namespaces/payments/pods");
    assert_eq!(good["errors"].as_array().unwrap().len(), 1, "only the missing metrics API: {good:#}");
    let bad = items.iter().find(|i| i["cluster"]["name"] == "bad").unwrap();
    assert!(
        bad["errors"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["errorType"] == "UNAUTHORIZED_ERROR" && e["statusCode"] == 401),
        "{bad:#}"
    );
    assert!(bad["resources"].as_array().unwrap().is_empty());

    // Custom resources only: what the entity's clusters serve of them (none here: an error entry per cluster).
    let custom = post_json(
        &addr,
        "/api/kubernetes/resources/custom/query",
        serde_json::json!({"entityRef": "component:default/payments-api", "auth": {},
            "customResources": [{"group": "argoproj.io", "apiVersion": "v1alpha1", "plural": "rollouts"}]}),
    )
    .await;
    assert_eq!(custom.status, 200, "{}", custom.text());
    let good =
        custom.json()["items"].as_array().unwrap().iter().find(|i| i["cluster"]["name"] == "good").unwrap().clone();
    assert_eq!(good["errors"][0]["errorType"], "NOT_FOUND", "{good:#}");
    assert_eq!(good["errors"][0]["resourcePath"], "/apis/argoproj.io/v1alpha1/namespaces/payments/rollouts");

    // A reference that does not parse, an entity that does not exist.
    let bad_ref =
        post_json(&addr, "/api/kubernetes/resources/workloads/query", serde_json::json!({"entityRef": "payments-api"}))
            .await;
    assert_eq!(bad_ref.status, 400, "{}", bad_ref.text());
    assert!(bad_ref.text().contains("has no kind"), "{}", bad_ref.text());
    let missing = post_json(
        &addr,
        "/api/kubernetes/resources/workloads/query",
        serde_json::json!({"entityRef": "component:default/nope"}),
    )
    .await;
    assert_eq!(missing.status, 400, "{}", missing.text());
}

#[tokio::test]
async fn custom_resources_come_as_backstage_types_them_with_their_kind() {
    let env = TestCluster::shared();
    env.create_namespace("widgets-e2e").await;
    crate::create_widget(env, "widgets-e2e", "blue", "shop").await;
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    catalog.add(serde_json::json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "shop", "namespace": "default",
            "annotations": {"backstage.io/kubernetes-namespace": "widgets-e2e"}},
        "spec": {"type": "service", "owner": "team-a"}
    }));
    let yaml = format!("{}{}", config(&[cluster_yaml(env, "admin", &admin_auth(env),)]), catalog_section(&catalog));
    let addr = serve_with_catalog(&yaml, &catalog).await;
    let answer = post_json(
        &addr,
        "/api/kubernetes/resources/custom/query",
        serde_json::json!({"entityRef": "component:default/shop", "auth": {},
            "customResources": [{"group": "e2e.kubeauth.dev", "apiVersion": "v1", "plural": "widgets"},
                                {"group": "", "apiVersion": "v1", "plural": "configmaps"}]}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let cluster = answer.json()["items"][0].clone();
    assert_eq!(cluster["errors"], serde_json::json!([]), "{cluster:#}");
    let types: Vec<&str> =
        cluster["resources"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["customresources", "customresources"], "{cluster:#}");
    // The entity's name is its id: the widget labelled `backstage.io/kubernetes-id: shop`, with its kind.
    let items = cluster["resources"][0]["resources"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{cluster:#}");
    assert_eq!(items[0]["kind"], "Widget");
    assert_eq!(items[0]["metadata"]["name"], "blue");
    assert_eq!(items[0]["spec"]["colour"], "blue");
}

#[tokio::test]
async fn object_types_versions_and_default_custom_resources_come_from_backstages_keys() {
    use k8s_openapi::api::core::v1::Secret;
    let env = TestCluster::shared();
    env.create_namespace("types-e2e").await;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ledger-db", "labels": {"backstage.io/kubernetes-id": "ledger"}},
        "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    let _ = kube::Api::<Secret>::namespaced(env.admin_client().await, "types-e2e")
        .create(&Default::default(), &secret)
        .await;
    crate::create_widget(env, "types-e2e", "red", "ledger").await;
    let yaml = format!(
        "kubernetes:\n  objectTypes: [pods, secrets, cronjobs]\n  apiVersionOverrides:\n    cronjobs: v1\n  customResources:\n    - group: e2e.kubeauth.dev\n      apiVersion: v1\n      plural: widgets\n{}",
        config(&[cluster_yaml(env, "admin", &admin_auth(env),)]).trim_start_matches("kubernetes:\n")
    );
    let addr = serve(&yaml).await;
    let answer = post_json(
        &addr,
        "/api/kubernetes/services/ledger",
        serde_json::json!({"entity": {"metadata": {"name": "ledger",
            "annotations": {"backstage.io/kubernetes-namespace": "types-e2e"}}}}),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let cluster = answer.json()["items"][0].clone();
    let types: Vec<&str> =
        cluster["resources"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["pods", "secrets", "customresources"], "{cluster:#}");
    // The override is the only version asked for: this API server (1.20) serves cronjobs as batch/v1beta1 only,
    // which kubeauth falls back to without an override.
    assert_eq!(cluster["errors"][0]["errorType"], "NOT_FOUND", "{cluster:#}");
    assert_eq!(cluster["errors"][0]["resourcePath"], "/apis/batch/v1/namespaces/types-e2e/cronjobs");
    // Secrets leave masked, as Backstage masks them.
    let secret = &cluster["resources"][1]["resources"][0];
    assert_eq!(secret["metadata"]["name"], "ledger-db");
    assert_eq!(secret["data"], serde_json::json!({"password": "***"}), "{secret:#}");
    assert!(!answer.text().contains("aHVudGVyMg"), "no secret value in the answer");
    // kubernetes.customResources for a cluster with none of its own.
    assert_eq!(cluster["resources"][2]["resources"][0]["kind"], "Widget");
    // Secrets asked for as a custom resource are masked too.
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    catalog.add(serde_json::json!({"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "ledger", "namespace": "default", "annotations": {"backstage.io/kubernetes-namespace": "types-e2e"}},
        "spec": {"type": "service", "owner": "team-a"}}));
    let addr = serve_with_catalog(&format!("{yaml}{}", catalog_section(&catalog)), &catalog).await;
    let custom = post_json(
        &addr,
        "/api/kubernetes/resources/custom/query",
        serde_json::json!({"entityRef": "component:default/ledger",
            "customResources": [{"group": "", "apiVersion": "v1", "plural": "secrets"}]}),
    )
    .await;
    assert_eq!(custom.status, 200, "{}", custom.text());
    assert_eq!(
        custom.json()["items"][0]["resources"][0]["resources"][0]["data"]["password"],
        "***",
        "{}",
        custom.text()
    );
    assert!(!custom.text().contains("aHVudGVyMg"));
}

#[tokio::test]
async fn without_a_catalog_entity_references_are_not_implemented() {
    let env = TestCluster::shared();
    let addr = admin_server(env).await;
    let answer = post_json(
        &addr,
        "/api/kubernetes/resources/workloads/query",
        serde_json::json!({"entityRef": "component:default/x"}),
    )
    .await;
    assert_eq!(answer.status, 501, "{}", answer.text());
    assert!(answer.text().contains("kubeauth.catalog is not configured"));
}

#[tokio::test]
async fn catalog_clusters_follow_the_ssrf_rules() {
    let env = TestCluster::shared();
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    let ca = env.ca().ca_data();
    let common = [("kubernetes.io/api-server-certificate-authority", ca.as_str())];
    let entity = |name: &str, url: &str, provider: &str, extra: &[(&str, &str)]| {
        let mut annotations = vec![("kubernetes.io/api-server", url), ("kubernetes.io/auth-provider", provider)];
        annotations.extend_from_slice(&common);
        annotations.extend_from_slice(extra);
        kubeauth_testkit::catalog::FakeCatalog::cluster_entity(name, &annotations)
    };
    // The real API server is at 127.0.0.1: only reachable when allow-listed, and the server's own credential
    // (`adminToken` is server-side) only goes where allow-listed for it.
    catalog.add(entity("allowed", env.url(), "adminToken", &[]));
    catalog.add(entity("metadata-service", "https://169.254.169.254/", "adminToken", &[]));
    catalog.add(entity("plain-http", "http://35.200.10.1", "adminToken", &[]));
    catalog.add(entity("steals-sa-token", "https://35.200.10.1", "serviceAccount", &[]));
    catalog.add(entity("insecure", env.url(), "adminToken", &[("kubernetes.io/skip-tls-verify", "true")]));
    let port = env.url().rsplit(':').next().unwrap().to_owned();
    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: catalog\n      dangerouslyAllowClusterUrls: ['https://127.0.0.1:{port}']\n      dangerouslyAllowServerSideProviders: ['https://127.0.0.1:{port}']\n{}",
        catalog_section(&catalog)
    );
    let addr = serve_with_catalog(&yaml, &catalog).await;
    let clusters = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap().json();
    let names: Vec<&str> = clusters["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["allowed", "insecure"], "only allow-listed https clusters with a non-serviceAccount provider");
    // The allowed one works through the proxy; skip-tls-verify was not honoured, and the CA verifies anyway.
    let ns = http::get(
        &addr,
        "/api/kubernetes/proxy/api/v1/namespaces/default",
        &[("Backstage-Kubernetes-Cluster", "allowed")],
    )
    .await
    .unwrap();
    assert_eq!(ns.status, 200, "{}", ns.text());

    // Without the allow-list, the API server at 127.0.0.1 is refused too.
    let strict = format!("kubernetes:\n  clusterLocatorMethods:\n    - type: catalog\n{}", catalog_section(&catalog));
    let addr = serve_with_catalog(&strict, &catalog).await;
    let clusters = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap().json();
    assert_eq!(clusters["items"], serde_json::json!([]));
    let refused =
        http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces", &[("Backstage-Kubernetes-Cluster", "allowed")])
            .await
            .unwrap();
    assert_eq!(refused.status, 404, "{}", refused.text());
}

#[tokio::test]
async fn the_entitys_clusters_are_found_as_backstages_service_locators_find_them() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let env = TestCluster::shared();
    env.create_namespace("locators-e2e").await;
    let map: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "settings", "labels": {"backstage.io/kubernetes-id": "ledger"}}
    }))
    .unwrap();
    let _ = kube::Api::<ConfigMap>::namespaced(env.admin_client().await, "locators-e2e")
        .create(&Default::default(), &map)
        .await;
    // Three clusters, all the same API server: only the locator decides which are asked.
    let admin = format!(
        "          authProvider: serviceAccount\n          serviceAccountToken: {}\n          skipMetricsLookup: true\n",
        env.admin_token()
    );
    let clusters =
        config(&[cluster_yaml(env, "eu", &admin), cluster_yaml(env, "us", &admin), cluster_yaml(env, "ap", &admin)]);
    let names = |answer: http::HttpResponse| -> Vec<String> {
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["cluster"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let entity = |annotations: serde_json::Value, relations: serde_json::Value| {
        let mut annotations = annotations;
        annotations["backstage.io/kubernetes-namespace"] = "locators-e2e".into();
        serde_json::json!({"entity": {"metadata": {"name": "ledger", "namespace": "finance", "annotations": annotations},
            "relations": relations}})
    };
    let relations = serde_json::json!([
        {"type": "dependsOn", "targetRef": "resource:finance/us"},
        {"type": "dependsOn", "targetRef": "resource:default/eu"},
        {"type": "ownedBy", "targetRef": "resource:finance/ap"}
    ]);
    // catalogRelation: the clusters the entity depends on, in the entity's namespace.
    let addr = serve(&format!("{}  serviceLocatorMethod:\n    type: catalogRelation\n", clusters)).await;
    let found =
        post_json(&addr, "/api/kubernetes/services/ledger", entity(serde_json::json!({}), relations.clone())).await;
    assert_eq!(names(found), ["us"]);
    let none =
        post_json(&addr, "/api/kubernetes/services/ledger", entity(serde_json::json!({}), serde_json::json!([]))).await;
    assert!(names(none).is_empty());
    // singleTenant: the cluster the entity names, or every one when it names none.
    let addr = serve(&format!("{}  serviceLocatorMethod:\n    type: singleTenant\n", clusters)).await;
    let named = post_json(
        &addr,
        "/api/kubernetes/services/ledger",
        entity(serde_json::json!({"backstage.io/kubernetes-cluster": "ap"}), relations.clone()),
    )
    .await;
    assert_eq!(names(named), ["ap"]);
    let every = post_json(&addr, "/api/kubernetes/services/ledger", entity(serde_json::json!({}), relations)).await;
    assert_eq!(names(every), ["eu", "us", "ap"]);
}
