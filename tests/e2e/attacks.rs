//! `kubeauth serve` as an attacker meets it, in front of the real API server: what callers who are not the
//! server's user (a web page, a hostile client, a caller with a token of its own) can make the server's
//! credential do. Each server here runs as `kubeauth serve` runs it ([`KubeauthServer::serve`]: its own
//! listener, limits and browser guard).

use std::time::{Duration, Instant};

use kubeauth_testkit::backstage_auth::FakeBackstageAuth;
use kubeauth_testkit::{TestCluster, http, service_account};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::server::{raw, serve};

/// A config with one cluster `c` at `url` (the shared API server's, or a path under it), authenticated with
/// `token`; `kubeauth` is the YAML under `kubeauth.server`.
fn config(env: &TestCluster, url: &str, token: &str, kubeauth: &str) -> String {
    format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: c\n          url: {url}\n          caData: {}\n          authProvider: serviceAccount\n          serviceAccountToken: {token}\nkubeauth:\n  server:\n{kubeauth}",
        env.ca().ca_data()
    )
}

#[tokio::test]
async fn a_web_page_cannot_drive_the_open_loopback_server() {
    let env = TestCluster::shared();
    let addr = serve(&config(env, env.url(), env.admin_token(), "    {}\n")).await;
    let (host, port) = addr.rsplit_once(':').unwrap();

    // The local user's own tools (curl, kubectl, a page served from this machine) keep working without a token.
    let local = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces/default", &[]).await.unwrap();
    assert_eq!(local.status, 200, "{}", local.text());
    let local_page = http::get(
        &addr,
        "/api/kubernetes/clusters",
        &[("Origin", "http://localhost:3000"), ("Sec-Fetch-Site", "same-site")],
    )
    .await
    .unwrap();
    assert_eq!(local_page.status, 200, "{}", local_page.text());

    // A page of another site opens a WebSocket watch of Secrets: refused before any upgrade.
    let websocket = raw(
        &addr,
        format!(
            "GET /api/kubernetes/proxy/api/v1/secrets?watch=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: https://evil.example\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(websocket.starts_with("HTTP/1.1 403"), "{websocket}");
    assert!(!websocket.contains("Secret"), "{websocket}");

    // A `no-cors` form POST (text/plain, no preflight) that would bind cluster-admin to anonymous.
    let binding = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"pwned"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"system:anonymous"}]}"#;
    let form = http::request(
        &addr,
        "POST",
        "/api/kubernetes/proxy/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        &[("Content-Type", "text/plain")],
        binding.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(form.status, 415, "{}", form.text());
    let bindings = kube::Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(env.admin_client().await);
    assert!(bindings.get_opt("pwned").await.unwrap().is_none(), "the binding must not exist");

    // The browser says the request is cross-site even without an Origin.
    let cross = http::get(&addr, "/api/kubernetes/clusters", &[("Sec-Fetch-Site", "cross-site")]).await.unwrap();
    assert_eq!(cross.status, 403, "{}", cross.text());

    // DNS rebinding: a page of attacker.example whose name now resolves to 127.0.0.1.
    let rebound = raw(
        &addr,
        format!("GET /api/kubernetes/clusters HTTP/1.1\r\nHost: attacker.example:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(rebound.starts_with("HTTP/1.1 403"), "{rebound}");
    let named = raw(
        &addr,
        format!("GET /api/kubernetes/clusters HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(named.starts_with("HTTP/1.1 200"), "{host}: {named}");
}

#[tokio::test]
async fn a_caller_cannot_borrow_the_servers_identity_to_impersonate() {
    let env = TestCluster::shared();
    // The server's identity may impersonate (a common shape for portals) and list namespaces, nothing more.
    env.create_service_account("attacks", "impersonator").await;
    let subject = || service_account("attacks", "impersonator");
    env.grant("attacks-impersonator", subject(), &["impersonate"], &["users", "groups"]).await;
    env.grant("attacks-namespaces", subject(), &["list"], &["namespaces"]).await;
    let token = env.service_account_token("attacks", "impersonator").await;
    let addr = serve(&config(env, env.url(), &token, "    {}\n")).await;

    // What the server's identity may do for itself: with these headers passed on, the API server would answer as
    // system:masters (Impersonate-Uid and Impersonate-Extra-* are refused the same way; the unit tests of the
    // proxy's header list cover them).
    let escalation = [
        ("Impersonate-User", "admin"),
        ("Impersonate-Group", "system:masters"),
        ("X-Remote-User", "admin"),
        ("X-Remote-Group", "system:masters"),
    ];
    let secrets =
        http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces/kube-system/secrets", &escalation).await.unwrap();
    // The API server answered as the server's own identity: no secrets for it.
    assert_eq!(secrets.status, 403, "{}", secrets.text());
    assert!(
        secrets.json()["message"].as_str().unwrap().contains("system:serviceaccount:attacks:impersonator"),
        "{}",
        secrets.text()
    );
    let namespaces = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces", &escalation).await.unwrap();
    assert_eq!(namespaces.status, 200, "{}", namespaces.text());
}

#[tokio::test]
async fn slow_clients_cannot_starve_the_server() {
    let env = TestCluster::shared();
    let limits = "    limits:\n      maxConnections: 450\n      headerReadTimeoutSeconds: 2\n";
    let addr = serve(&config(env, env.url(), env.admin_token(), limits)).await;
    // 500 clients send half a request head and stall: 450 fill the cap, 50 take the overflow's one-answer slots.
    let mut stalled = Vec::new();
    for _ in 0..500 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /api/kubernetes/clusters HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
        stalled.push(stream);
    }
    // Probes still answer at once, beyond the connection cap.
    let started = Instant::now();
    let health = http::get(&addr, "/healthz", &[]).await.unwrap();
    assert_eq!(health.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // Over the cap, the API answers a prompt 503 with Retry-After rather than hanging.
    let busy = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap();
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert!(busy.header("retry-after").is_some());
    // The stalled heads are cut after the header-read timeout, and the API serves again.
    let mut closed = 0;
    for stream in &mut stalled {
        let mut buf = [0u8; 512];
        // End of stream or a reset: either way the server let go of it.
        if tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, stalled.len(), "every stalled connection is closed by the server");
    let served = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap();
    assert_eq!(served.status, 200, "{}", served.text());
}

#[tokio::test]
async fn encoded_paths_cannot_leave_a_path_prefixed_cluster() {
    let env = TestCluster::shared();
    env.create_namespace("attacks-tenant").await;
    // A cluster URL with a path, as behind Rancher or a gateway: here, one namespace of the API server.
    let prefixed = format!("{}/api/v1/namespaces/attacks-tenant", env.url());
    let addr = serve(&config(env, &prefixed, env.admin_token(), "    {}\n")).await;
    let inside = http::get(&addr, "/api/kubernetes/proxy/configmaps", &[]).await.unwrap();
    assert_eq!(inside.status, 200, "{}", inside.text());
    assert_eq!(inside.json()["kind"], "ConfigMapList");
    for escape in [
        "/api/kubernetes/proxy/%2e%2e/kube-system/secrets",
        "/api/kubernetes/proxy/%2E%2e/%2e%2e/%2e%2e/%2e%2e/api/v1/secrets",
        "/api/kubernetes/proxy/../kube-system/secrets",
        "/api/kubernetes/proxy/configmaps%2f..%2f..%2fkube-system%2fsecrets",
        "/api/kubernetes/proxy/secrets%3Fx=1",
        "/api/kubernetes/proxy/secrets%23",
    ] {
        let answer = http::get(&addr, escape, &[]).await.unwrap();
        assert_eq!(answer.status, 400, "{escape}: {}", answer.text());
        assert!(!answer.text().contains("SecretList"), "{escape}");
    }
}

#[tokio::test]
async fn one_query_cannot_fan_out_without_bound_or_reshape_api_paths() {
    let env = TestCluster::shared();
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    catalog.add(serde_json::json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "shop", "namespace": "default", "annotations": {"backstage.io/kubernetes-id": "shop"}},
        "spec": {"type": "service", "owner": "team-a"}
    }));
    let yaml = format!(
        "{}  catalog:\n    baseUrl: {}\n    token: {}\n",
        config(env, env.url(), env.admin_token(), "    {}\n"),
        catalog.url(),
        catalog.token()
    );
    let addr = serve(&yaml).await;
    let post = |path: &'static str, body: serde_json::Value| {
        let addr = addr.clone();
        async move {
            let body = body.to_string();
            http::request(&addr, "POST", path, &[("Content-Type", "application/json")], body.as_bytes()).await.unwrap()
        }
    };
    let custom = |resources: serde_json::Value| {
        post(
            "/api/kubernetes/resources/custom/query",
            serde_json::json!({"entityRef": "component:default/shop", "customResources": resources}),
        )
    };
    // One request body asking for 3,000 API calls.
    let flood: Vec<serde_json::Value> = (0..3000)
        .map(|i| serde_json::json!({"group": format!("g{i}.example.com"), "apiVersion": "v1", "plural": "things"}))
        .collect();
    let flooded = custom(serde_json::Value::from(flood)).await;
    assert_eq!(flooded.status, 400, "{}", flooded.text());
    assert!(flooded.text().contains("maxCustomResources"), "{}", flooded.text());
    // Request data spliced into API paths: a plural carrying a query, a group carrying a path.
    for resource in [
        serde_json::json!({"group": "", "apiVersion": "v1", "plural": "secrets?labelSelector=x"}),
        serde_json::json!({"group": "../api", "apiVersion": "v1", "plural": "secrets"}),
        serde_json::json!({"group": "apps", "apiVersion": "v1/../../api/v1", "plural": "secrets"}),
    ] {
        let answer = custom(serde_json::json!([resource])).await;
        assert_eq!(answer.status, 400, "{resource}: {}", answer.text());
    }
    let fine = custom(serde_json::json!([{"group": "", "apiVersion": "v1", "plural": "configmaps"}])).await;
    assert_eq!(fine.status, 200, "{}", fine.text());
    // An entity's namespace annotation carrying a path and a query.
    let spliced = post(
        "/api/kubernetes/services/shop",
        serde_json::json!({"entity": {"metadata": {"name": "shop", "annotations": {
            "backstage.io/kubernetes-namespace": "default/secrets?x="
        }}}}),
    )
    .await;
    // With a catalog the body's entity is never used: one that is not a catalog entity is refused.
    assert_eq!(spliced.status, 403, "{}", spliced.text());
    // An entity reference with `..` never reaches the catalog as a path.
    let dotted =
        post("/api/kubernetes/resources/workloads/query", serde_json::json!({"entityRef": "component:../shop"})).await;
    assert_eq!(dotted.status, 400, "{}", dotted.text());
}

#[tokio::test]
async fn backstage_tokens_are_checked_against_the_backends_keys() {
    let env = TestCluster::shared();
    let backstage = FakeBackstageAuth::start(&["catalog", "scaffolder"]);
    let auth =
        format!("    auth:\n      backstage:\n        baseUrl: {}\n        plugins: [catalog]\n", backstage.url());
    let addr = serve(&config(env, env.url(), env.admin_token(), &auth)).await;
    let get = |token: String| {
        let addr = addr.clone();
        async move {
            http::get(&addr, "/api/kubernetes/clusters", &[("Authorization", &format!("Bearer {token}"))])
                .await
                .unwrap()
        }
    };
    let user = backstage.user_token("user:default/jane", &["user:default/jane", "group:default/team-a"], 3600);
    let answer = get(user.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["items"][0]["name"], "c");
    // A service token of an accepted plugin, alone and on behalf of the user.
    assert_eq!(get(backstage.plugin_token("catalog", "kubernetes", None)).await.status, 200);
    assert_eq!(get(backstage.plugin_token("catalog", "kubernetes", Some(&user))).await.status, 200);

    // Tokens the auth backend never issues: a user token must be addressed to `backstage`, as Backstage's own
    // verification requires.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let without_aud =
        serde_json::json!({"sub": "user:default/jane", "ent": ["group:default/sre"], "iat": now, "exp": now + 600});
    let mut other_aud = without_aud.clone();
    other_aud["aud"] = "somewhere-else".into();
    let refused = [
        ("no token", None),
        ("expired", Some(backstage.user_token("user:default/jane", &[], -120))),
        ("a plugin that is not accepted", Some(backstage.plugin_token("scaffolder", "kubernetes", None))),
        ("addressed to another plugin", Some(backstage.plugin_token("catalog", "catalog", None))),
        ("unsigned", Some(unsigned(&user))),
        ("re-signed with HMAC", Some(hmac_signed(&user))),
        ("a user token without `aud`", Some(backstage.signed_user_claims(&without_aud))),
        ("a user token for another audience", Some(backstage.signed_user_claims(&other_aud))),
    ];
    for (what, token) in refused {
        let answer = match token {
            Some(token) => get(token).await,
            None => http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap(),
        };
        assert_eq!(answer.status, 401, "{what}: {}", answer.text());
    }
    // A rotated key: tokens of the new key verify after one fetch of the key set, old ones no longer do.
    let fetched = backstage.key_set_requests();
    backstage.rotate_user_key();
    let fresh = backstage.user_token("user:default/jane", &[], 3600);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(get(fresh).await.status, 200);
    assert_eq!(get(user).await.status, 401, "the old key is gone from the fresh key set");
    // Tokens naming unknown keys cannot make the server fetch the key set again and again.
    let before = backstage.key_set_requests();
    for _ in 0..50 {
        assert_eq!(get(with_kid(&backstage.user_token("user:default/x", &[], 60), "unknown")).await.status, 401);
    }
    assert!(backstage.key_set_requests() - before <= 1, "{} fetches", backstage.key_set_requests() - before);
    assert!(backstage.key_set_requests() > fetched);
}

fn b64(value: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn unb64(part: &str) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The token's claims under `alg: none`, without a signature.
fn unsigned(token: &str) -> String {
    let mut parts = token.split('.');
    let mut header = unb64(parts.next().unwrap());
    header["alg"] = "none".into();
    format!("{}.{}.", b64(&header), parts.next().unwrap())
}

/// The token's claims signed with HMAC, its key the auth backend's public key set as text (the classic
/// algorithm-confusion forgery).
fn hmac_signed(token: &str) -> String {
    let claims = unb64(token.split('.').nth(1).unwrap());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("vnd.backstage.user".into());
    header.kid = unb64(token.split('.').next().unwrap())["kid"].as_str().map(ToOwned::to_owned);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"public").unwrap()).unwrap()
}

/// The token with another key id in its header (its signature no longer matters: the key is looked up first).
fn with_kid(token: &str, kid: &str) -> String {
    let mut parts = token.splitn(2, '.');
    let mut header = unb64(parts.next().unwrap());
    header["kid"] = kid.into();
    format!("{}.{}", b64(&header), parts.next().unwrap())
}

#[tokio::test]
async fn bodies_that_never_finish_free_their_slots() {
    let env = TestCluster::shared();
    let limits = "    limits:\n      maxRequestsInFlight: 20\n      bodyReadTimeoutSeconds: 1\n";
    let addr = serve(&config(env, env.url(), env.admin_token(), limits)).await;
    // 20 requests take every slot, each with a body that never finishes.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /api/kubernetes/proxy/api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":")
            .await
            .unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap();
    assert_eq!(busy.status, 503, "the stalled bodies hold the slots: {}", busy.text());
    // Their deadline passes: each gets a 408, and the API answers again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answered = http::get(&addr, "/api/kubernetes/clusters", &[]).await.unwrap();
    assert_eq!(answered.status, 200, "{}", answered.text());
    for mut stream in stalled {
        let mut answer = vec![0; 12];
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut answer)).await.unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&answer), "HTTP/1.1 408");
    }
}

#[tokio::test]
async fn a_caller_who_stops_reading_stalls_nobody_else_and_is_cut() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let env = TestCluster::shared();
    env.create_namespace("fair").await;
    // A list of about 24 MB: more than the sockets' buffers and a stream's window hold.
    let configmaps = kube::Api::<ConfigMap>::namespaced(env.admin_client().await, "fair");
    let data = "x".repeat(1_000_000);
    for i in 0..24 {
        let mut configmap = ConfigMap::default();
        configmap.metadata.name = Some(format!("big-{i}"));
        configmap.data = Some([("data".to_owned(), data.clone())].into());
        if let Err(e) = configmaps.create(&Default::default(), &configmap).await {
            assert!(matches!(&e, kube::Error::Api(status) if status.code == 409), "{e}");
        }
    }
    let limits = "    limits:\n      writeTimeoutSeconds: 3\n";
    let addr = serve(&config(env, env.url(), env.admin_token(), limits)).await;
    let _warm = http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces/default", &[]).await.unwrap();

    // The slow caller asks for the whole list and reads nothing past the answer's head.
    // Its socket buffers little (as a far caller's would hold little in flight): what it does not read stays
    // with the server.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut slow = socket.connect(addr.parse().unwrap()).await.unwrap();
    slow.write_all(b"GET /api/kubernetes/proxy/api/v1/namespaces/fair/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0; 12];
    slow.read_exact(&mut head).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&head), "HTTP/1.1 200");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Every other caller's requests to the same cluster, on the same connection, answer as fast as ever.
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            http::get(&addr, "/api/kubernetes/proxy/api/v1/namespaces/default", &[]),
        )
        .await
        .expect("a request to the cluster waits behind the slow reader")
        .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_millis(300), "a request waited {slowest:?} behind the slow reader");

    // After writeTimeoutSeconds without taking anything, the slow caller's answer is cut, short of its end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await.expect("the answer was cut").ok();
    assert!(rest.len() < 20_000_000, "{} bytes came", rest.len());
    assert!(!String::from_utf8_lossy(&rest[rest.len().saturating_sub(200)..]).ends_with("}\n0\r\n\r\n"));
}
