//! Per-user access through one server identity, against the real kube-apiserver with RBAC: impersonation of
//! the verified Backstage user (the cluster's RoleBindings decide) and kubeauth's own permission rules.

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef};
use kubeauth_testkit::backstage_auth::FakeBackstageAuth;
use kubeauth_testkit::forward::CountingForwarder;
use kubeauth_testkit::{TestCluster, http, service_account, user};
use serde_json::{Value, json};

use crate::server::{raw, serve};

const ALICE: &str = "user:default/alice";
const BOB: &str = "user:default/bob";

/// Two namespaces with one labelled pod and secret each; alice may read pods and secrets in `acc-team-a`, bob in
/// `acc-team-b`; `acc-system/portal` may impersonate and nothing else, `acc-system/plain` may list pods only.
async fn cluster(env: &TestCluster) -> (String, String) {
    let admin = env.admin_client().await;
    let post = kube::api::PostParams::default();
    for (namespace, person) in [("acc-team-a", ALICE), ("acc-team-b", BOB)] {
        env.create_namespace(namespace).await;
        let labels = json!({"backstage.io/kubernetes-id": "acc-web"});
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{namespace}"), "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/web:1"}]}
        }))
        .unwrap();
        let _ = kube::Api::<Pod>::namespaced(admin.clone(), namespace).create(&post, &pod).await;
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "web-secret", "labels": labels}, "stringData": {"password": "hunter2"}
        }))
        .unwrap();
        let _ = kube::Api::<Secret>::namespaced(admin.clone(), namespace).create(&post, &secret).await;
        let binding = RoleBinding {
            metadata: kube::api::ObjectMeta { name: Some("acc-reader".into()), ..Default::default() },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "acc-reader".into(),
            },
            subjects: Some(vec![user(person)]),
        };
        let _ = kube::Api::<RoleBinding>::namespaced(admin.clone(), namespace).create(&post, &binding).await;
    }
    // The ClusterRole the bindings name, granted cluster-wide to one group: Backstage's group:default/sre, as
    // kubeauth impersonates it.
    let sre = k8s_openapi::api::rbac::v1::Subject {
        kind: "Group".into(),
        name: "backstage:group:default/sre".into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    };
    env.grant("acc-reader", sre, &["get", "list", "watch"], &["pods", "secrets"]).await;
    env.create_service_account("acc-system", "portal").await;
    env.grant(
        "acc-portal-impersonate",
        service_account("acc-system", "portal"),
        &["impersonate"],
        &["users", "groups"],
    )
    .await;
    env.create_service_account("acc-system", "plain").await;
    env.grant("acc-plain-pods", service_account("acc-system", "plain"), &["list"], &["pods"]).await;
    (env.service_account_token("acc-system", "portal").await, env.service_account_token("acc-system", "plain").await)
}

fn config(env: &TestCluster, url: &str, token: &str, backstage: &FakeBackstageAuth, server: &str) -> String {
    format!(
        "kubernetes:\n  objectTypes: [pods, secrets]\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: acc\n          url: {url}\n          caData: {}\n          authProvider: serviceAccount\n          serviceAccountToken: {token}\n          skipMetricsLookup: true\nkubeauth:\n  server:\n    auth:\n      backstage:\n        baseUrl: {}\n{server}",
        env.ca().ca_data(),
        backstage.url()
    )
}

/// The names of the `kind` objects of the answer's first cluster, and its errors.
fn objects(answer: &Value, kind: &str) -> Vec<String> {
    let mut names: Vec<String> = answer["items"][0]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["type"] == kind)
        .flat_map(|r| r["resources"].as_array().cloned().unwrap_or_default())
        .map(|o| {
            format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())
        })
        .collect();
    names.sort();
    names
}

/// The objects of entity `acc-web` (in `namespace`, when it names one) for the caller of `token`.
async fn services(addr: &str, token: &str, namespace: Option<&str>) -> Value {
    let annotations = match namespace {
        Some(ns) => json!({"backstage.io/kubernetes-namespace": ns}),
        None => json!({}),
    };
    let body = json!({"entity": {"metadata": {"name": "acc-web", "annotations": annotations}}, "auth": {}});
    let answer = http::request(
        addr,
        "POST",
        "/api/kubernetes/services/acc-web",
        &[("Content-Type", "application/json"), ("Authorization", &format!("Bearer {token}"))],
        body.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

async fn proxied(addr: &str, token: &str, path: &str) -> http::HttpResponse {
    http::get(
        addr,
        &format!("/api/kubernetes/proxy{path}"),
        &[("Authorization", &format!("Bearer {token}")), ("Backstage-Kubernetes-Cluster", "acc")],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn one_server_identity_shows_each_user_what_the_clusters_rbac_gives_them() {
    let env = TestCluster::shared();
    let (portal, plain) = cluster(env).await;
    let backstage = FakeBackstageAuth::start(&[]);
    let alice = backstage.user_token(ALICE, &[ALICE, "group:default/team-a"], 3600);
    let bob = backstage.user_token(BOB, &[BOB], 3600);
    let addr = serve(&config(env, env.url(), &portal, &backstage, "    impersonation: {}\n")).await;

    // The same fan-out, different users: each gets what the cluster's RBAC gives the impersonated user.
    let for_alice = services(&addr, &alice, Some("acc-team-a")).await;
    assert_eq!(objects(&for_alice, "pods"), ["acc-team-a/web-acc-team-a"], "{for_alice:#}");
    assert_eq!(objects(&for_alice, "secrets"), ["acc-team-a/web-secret"]);
    let for_bob = services(&addr, &bob, Some("acc-team-a")).await;
    assert!(objects(&for_bob, "pods").is_empty(), "{for_bob:#}");
    assert_eq!(for_bob["items"][0]["errors"][0]["statusCode"], 403, "{for_bob:#}");
    assert_eq!(objects(&services(&addr, &bob, Some("acc-team-b")).await, "pods"), ["acc-team-b/web-acc-team-b"]);
    // Groups travel too: an SRE (bound cluster-wide by group) sees the pods of every namespace.
    let carol = backstage.user_token("user:default/carol", &["user:default/carol", "group:default/sre"], 3600);
    let for_carol = services(&addr, &carol, None).await;
    assert_eq!(
        objects(&for_carol, "pods"),
        ["acc-team-a/web-acc-team-a", "acc-team-b/web-acc-team-b"],
        "{for_carol:#}"
    );
    // Without a namespace, alice's list across namespaces is the API server's to refuse.
    assert_eq!(services(&addr, &alice, None).await["items"][0]["errors"][0]["statusCode"], 403);

    // The proxy: the API server itself names the impersonated user in its refusal.
    assert_eq!(proxied(&addr, &alice, "/api/v1/namespaces/acc-team-a/pods").await.status, 200);
    let refused = proxied(&addr, &bob, "/api/v1/namespaces/acc-team-a/pods").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(
        refused.text().contains(r#"User \"user:default/bob\" cannot list resource \"pods\""#),
        "{}",
        refused.text()
    );
    // A caller's own Impersonate-* headers never reach the cluster: bob stays bob.
    let forged = http::get(
        &addr,
        "/api/kubernetes/proxy/api/v1/namespaces/acc-team-a/pods",
        &[
            ("Authorization", &format!("Bearer {bob}")),
            ("Backstage-Kubernetes-Cluster", "acc"),
            ("Impersonate-User", ALICE),
        ],
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 403, "{}", forged.text());

    // A server identity without the impersonate verb: a clear error for that cluster, naming the identity.
    let backstage_plain = FakeBackstageAuth::start(&[]);
    let addr = serve(&config(env, env.url(), &plain, &backstage_plain, "    impersonation: {}\n")).await;
    let answer = services(&addr, &backstage_plain.user_token(ALICE, &[ALICE], 3600), Some("acc-team-a")).await;
    let error = &answer["items"][0]["errors"][0];
    assert_eq!(error["statusCode"], 403, "{answer:#}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("system:serviceaccount:acc-system:plain") && message.contains("cannot impersonate"),
        "{answer:#}"
    );
}

#[tokio::test]
async fn permission_rules_decide_before_anything_reaches_the_cluster() {
    let env = TestCluster::shared();
    let admin_token = env.admin_token();
    cluster(env).await;
    // Every connection to the API server passes the forwarder: none may be opened for a refused request.
    let forwarder = CountingForwarder::start(env.url().trim_start_matches("https://").parse().unwrap()).await;
    let backstage = FakeBackstageAuth::start(&[]);
    let rules = "    permissions:\n      - name: team-a-reads-pods\n        callers: [group:default/team-a]\n        namespaces: [acc-team-a]\n        resources: [pods]\n        verbs: [get, list, watch]\n";
    let addr = serve(&config(env, &forwarder.https_url(), admin_token, &backstage, rules)).await;
    let alice = backstage.user_token(ALICE, &[ALICE, "group:default/team-a"], 3600);
    let bob = backstage.user_token(BOB, &[BOB], 3600);

    // A WebSocket exec upgrade no rule allows: kubeauth's 403, and not one connection to the cluster.
    let exec = raw(
        &addr,
        format!(
            "GET /api/kubernetes/proxy/api/v1/namespaces/acc-team-a/pods/web-acc-team-a/exec?command=sh&stdout=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {alice}\r\nBackstage-Kubernetes-Cluster: acc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(exec.starts_with("HTTP/1.1 403"), "{exec}");
    assert!(
        exec.contains(r#""reason":"Forbidden""#)
            && exec.contains(
                "kubeauth.server.permissions: user:default/alice may not get pods/exec in namespace 'acc-team-a'"
            ),
        "{exec}"
    );
    assert_eq!(forwarder.connections(), 0, "a byte reached the cluster");

    // What a rule allows goes through; the same read in another namespace does not.
    assert_eq!(proxied(&addr, &alice, "/api/v1/namespaces/acc-team-a/pods").await.status, 200);
    assert_eq!(proxied(&addr, &alice, "/api/v1/namespaces/acc-team-b/pods").await.status, 403);
    assert_eq!(proxied(&addr, &bob, "/api/v1/namespaces/acc-team-a/pods").await.status, 403, "bob has no rule");

    // The fan-out: alice gets team-a's pods only, and no secrets at all (no rule lets her list them).
    let for_alice = services(&addr, &alice, None).await;
    assert_eq!(objects(&for_alice, "pods"), ["acc-team-a/web-acc-team-a"], "{for_alice:#}");
    assert!(objects(&for_alice, "secrets").is_empty(), "{for_alice:#}");
    assert!(!for_alice.to_string().contains("web-secret"), "{for_alice:#}");
    // Bob may list nothing: his fan-out asks the cluster nothing and shows no cluster.
    let for_bob = services(&addr, &bob, None).await;
    assert_eq!(for_bob["items"], json!([]), "{for_bob:#}");
}

/// `kubeauth can-i`: per cluster, what kubeauth's rules and the cluster (asked as the impersonated user) say.
#[tokio::test]
async fn can_i_shows_the_rules_and_the_clusters_answer_for_a_user() {
    let env = TestCluster::shared();
    let (portal, _) = cluster(env).await;
    let backstage = FakeBackstageAuth::start(&[]);
    let rules = "    impersonation: {}\n    permissions:\n      - callers: [group:default/team-a]\n        namespaces: [acc-team-a]\n        resources: [pods, pods/exec]\n        verbs: [get, list, create]\n";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app-config.yaml");
    std::fs::write(&file, config(env, env.url(), &portal, &backstage, rules)).unwrap();
    let can_i = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubeauth-under-test"))
            .args(["can-i", "-o", "json", "--config", file.to_str().unwrap()])
            .args(args)
            .env("KUBEAUTH_CACHE_DIR", dir.path().join("cache"))
            .output()
            .unwrap();
        let answer: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), answer[0].clone())
    };
    let alice = ["--as", ALICE, "--as-group", "group:default/team-a"];
    let (code, answer) = can_i(&[&["list", "pods", "-n", "acc-team-a"][..], &alice].concat());
    assert_eq!(code, Some(0), "{answer:#}");
    assert_eq!((answer["rules"].as_str(), answer["askedAs"].as_str()), (Some("allowed"), Some(ALICE)), "{answer:#}");
    assert_eq!(answer["clusterSays"], "yes");

    // Allowed by the rules, refused by the cluster: alice's RoleBinding reads only.
    let (code, answer) = can_i(&[&["create", "pods/exec", "-n", "acc-team-a"][..], &alice].concat());
    assert_eq!((code, answer["rules"].as_str()), (Some(1), Some("allowed")), "{answer:#}");
    assert!(answer["clusterSays"].as_str().unwrap().starts_with("no"), "{answer:#}");

    // Bob: no rule, and the cluster says no too.
    let (code, answer) = can_i(&["list", "pods", "-n", "acc-team-a", "--as", BOB]);
    assert_eq!(code, Some(1));
    assert!(answer["rules"].as_str().unwrap().contains("user:default/bob may not list pods"), "{answer:#}");
    assert!(answer["clusterSays"].as_str().unwrap().starts_with("no"), "{answer:#}");
}
