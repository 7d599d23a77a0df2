//! Backstage's own kubernetes backend (unmodified, from npm) is the oracle of what an answer looks like: it runs
//! beside `kubeauth serve` on one app-config file, one API server and one catalog, the same corpus of requests
//! goes to both, and every answer must be the same — status, JSON keys, types and values, arrays in Backstage's
//! order — except where kubeauth deliberately answers differently. Those are the [`DEVIATIONS`], each with its
//! reason (docs/backstage.md lists them too); nothing else is accepted.

use kubeauth_testkit::backstage::BackstageBackend;
use kubeauth_testkit::catalog::FakeCatalog;
use kubeauth_testkit::{TestCluster, http};
use serde_json::{Value, json};

/// A difference kubeauth makes on purpose: in the answers to requests whose name starts with `case` (every
/// request for `""`), at the JSON paths `at` and below (`status` is the status code), for `reason`.
struct Deviation {
    case: &'static str,
    at: &'static [&'static str],
    reason: &'static str,
}

/// Every accepted difference. docs/backstage.md's table says the same.
const DEVIATIONS: &[Deviation] = &[
    Deviation {
        case: "",
        at: &["/kind", "/apiVersion", "/metadata", "/status", "/message", "/reason", "/code"],
        reason: "kubeauth's own error answers carry a Kubernetes Status's fields beside Backstage's, so that kubectl \
                 and client-go read them through the proxy",
    },
    Deviation {
        case: "proxy no cluster header",
        at: &["/error/message"],
        reason: "Backstage says `Cluster 'undefined' not found`; kubeauth says the header is required and how many \
                 clusters there are",
    },
    Deviation {
        case: "workloads bad entityRef",
        at: &["/error/message"],
        reason: "Backstage's parser accepts `a:b:c/d/e` and then misses it in the catalog; kubeauth says it is not \
                 kind:namespace/name (both 400)",
    },
    Deviation {
        case: "services no entity",
        at: &["status", "/error", "/request", "/response"],
        reason: "Backstage fails with a 500 TypeError; kubeauth answers 400 `entity is a required field`",
    },
    Deviation {
        case: "workloads no auth",
        at: &["status", "/error", "/request", "/response", "/items"],
        reason: "Backstage fails with a 500 TypeError on a body without `auth`; kubeauth reads it as `auth: {}`",
    },
    Deviation {
        case: "bad JSON",
        at: &["/error"],
        reason: "the JSON parser's own words, and the fields of Express's body parser (`body`, `expose`, `type`); both \
                 400 `SyntaxError`",
    },
    Deviation {
        case: "services no user token",
        at: &["status", "/error", "/request", "/response", "/items"],
        reason: "Backstage fails the whole request (500) when one client-side cluster has no token in the body; \
                 kubeauth answers the other clusters and gives that one an error entry",
    },
];

/// One request of the corpus.
struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

impl Case {
    fn get(name: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        Self {
            name: name.to_owned(),
            method: "GET",
            path: path.to_owned(),
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            body: None,
        }
    }

    fn post(name: &str, path: &str, body: Value) -> Self {
        Self { name: name.to_owned(), method: "POST", path: path.to_owned(), headers: Vec::new(), body: Some(body) }
    }

    async fn send(&self, address: &str) -> (u16, Value) {
        let mut headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // A string body is sent as it is (a body that is not JSON), any other value as its JSON.
        let body = match &self.body {
            Some(Value::String(raw)) => raw.clone().into_bytes(),
            Some(body) => body.to_string().into_bytes(),
            None => Vec::new(),
        };
        if self.body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let answer = http::request(address, self.method, &self.path, &headers, &body)
            .await
            .unwrap_or_else(|e| panic!("{}: {address} did not answer: {e}", self.name));
        let json = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.body).unwrap_or_else(|_| json!({"<not JSON>": answer.text()}))
        };
        (answer.status, json)
    }
}

/// The differences between Backstage's answer and kubeauth's, as `path: backstage → kubeauth`.
fn differences(at: &str, backstage: &Value, kubeauth: &Value, out: &mut Vec<(String, String)>) {
    match (backstage, kubeauth) {
        (Value::Object(b), Value::Object(k)) => {
            for (key, value) in b {
                let here = format!("{at}/{key}");
                match k.get(key) {
                    Some(theirs) => differences(&here, value, theirs, out),
                    None => out.push((here, format!("{} → (missing)", short(value)))),
                }
            }
            for (key, value) in k {
                if !b.contains_key(key) {
                    out.push((format!("{at}/{key}"), format!("(missing) → {}", short(value))));
                }
            }
        }
        (Value::Array(b), Value::Array(k)) => {
            if b.len() != k.len() {
                out.push((
                    at.to_owned(),
                    format!("{} items → {} items: {} → {}", b.len(), k.len(), short(backstage), short(kubeauth)),
                ));
                return;
            }
            for (i, (b, k)) in b.iter().zip(k).enumerate() {
                differences(&format!("{at}/{i}"), b, k, out);
            }
        }
        (b, k) if b != k => out.push((at.to_owned(), format!("{} → {}", short(b), short(k)))),
        _ => {}
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 300 { format!("{}…", &text[..text.floor_char_boundary(300)]) } else { text }
}

/// Sends every case to both servers; the differences no deviation accepts, named by case.
async fn compare(backstage: &BackstageBackend, kubeauth: &str, cases: &[Case]) -> Vec<String> {
    let (mut found, mut reported) = (Vec::new(), Vec::new());
    for case in cases {
        let (b_status, b_body) = case.send(backstage.address()).await;
        let (k_status, k_body) = case.send(kubeauth).await;
        let mut diffs = Vec::new();
        if b_status != k_status {
            diffs.push(("status".to_owned(), format!("{b_status} → {k_status}")));
        }
        differences("", &b_body, &k_body, &mut diffs);
        for (at, what) in diffs {
            let under = |path: &str| at == path || at.starts_with(&format!("{path}/"));
            let accepted = DEVIATIONS.iter().find(|d| case.name.starts_with(d.case) && d.at.iter().copied().any(under));
            match accepted {
                Some(deviation) => {
                    let seen = format!("{}: a deliberate difference ({})", case.name, deviation.reason);
                    if !reported.contains(&seen) {
                        eprintln!("{seen}");
                        reported.push(seen);
                    }
                }
                None => found.push(format!("{}: {} {}: {at}: {what}", case.name, case.method, case.path)),
            }
        }
    }
    found
}

/// The entity the corpus asks about, in the catalog.
fn shop_entity(namespace: &str) -> Value {
    json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "shop", "namespace": "default",
            "annotations": {"backstage.io/kubernetes-id": "shop", "backstage.io/kubernetes-namespace": namespace}},
        "spec": {"type": "service", "owner": "team-a", "lifecycle": "production"}
    })
}

/// The same entity with a label selector instead of an id.
fn selected_entity(namespace: &str) -> Value {
    json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "selected", "namespace": "default",
            "annotations": {"backstage.io/kubernetes-label-selector": "tier=web",
                "backstage.io/kubernetes-namespace": namespace}},
        "spec": {"type": "service", "owner": "team-a", "lifecycle": "production"}
    })
}

/// Objects of the corpus's namespace: two pods of `shop` (one labelled `tier=web`), a service, a configmap, a
/// secret and a widget.
async fn objects(env: &TestCluster, namespace: &str) {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
    env.create_namespace(namespace).await;
    let admin = env.admin_client().await;
    let labels = |tier: &str| json!({"backstage.io/kubernetes-id": "shop", "tier": tier});
    for (name, tier) in [("shop-web-1", "web"), ("shop-worker-1", "worker")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels(tier)},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/shop:1"}]}
        }))
        .unwrap();
        let _ = kube::Api::<Pod>::namespaced(admin.clone(), namespace).create(&Default::default(), &pod).await;
    }
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "shop", "labels": labels("web")},
        "spec": {"ports": [{"port": 80}], "selector": {"tier": "web"}}
    }))
    .unwrap();
    let _ = kube::Api::<Service>::namespaced(admin.clone(), namespace).create(&Default::default(), &service).await;
    let config: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "shop", "labels": labels("web")}, "data": {"a": "b"}}))
            .unwrap();
    let _ = kube::Api::<ConfigMap>::namespaced(admin.clone(), namespace).create(&Default::default(), &config).await;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "shop", "labels": labels("web")}, "stringData": {"password": "hunter2"}}),
    )
    .unwrap();
    let _ = kube::Api::<Secret>::namespaced(admin, namespace).create(&Default::default(), &secret).await;
    crate::create_widget(env, namespace, "shop-widget", "shop").await;
}

/// The clusters both servers know: `good` (the server's admin token, widgets as its own custom resources), `bad`
/// (a token the API server refuses) and `user` (client-side oidc: the caller's token is the credential).
fn clusters(env: &TestCluster) -> String {
    let cluster = |name: &str, rest: &str| {
        format!(
            "        - name: {name}\n          url: {}\n          caData: {}\n          skipMetricsLookup: true\n{rest}",
            env.url(),
            env.ca().ca_data()
        )
    };
    [
        cluster(
            "good",
            &format!(
                "          authProvider: serviceAccount\n          serviceAccountToken: {}\n          customResources:\n            \
                 - group: e2e.kubeauth.dev\n              apiVersion: v1\n              plural: widgets\n",
                env.admin_token()
            ),
        ),
        cluster("bad", "          authProvider: serviceAccount\n          serviceAccountToken: not-a-token\n"),
        cluster("user", "          authProvider: oidc\n          oidcTokenProvider: okta\n"),
    ]
    .concat()
}

/// Starts Backstage's backend on `app_config` and `kubeauth serve` on the very same file.
async fn both(app_config: &str, catalog: &FakeCatalog) -> (BackstageBackend, String) {
    let backstage = BackstageBackend::start(app_config, catalog.url()).await;
    let text = std::fs::read_to_string(backstage.config_file()).unwrap();
    let kubeauth = crate::server::serve(&text).await;
    (backstage, kubeauth)
}

fn corpus(env: &TestCluster, namespace: &str) -> Vec<Case> {
    let pods = format!("/api/kubernetes/proxy/api/v1/namespaces/{namespace}/pods");
    let good = [("backstage-kubernetes-cluster", "good")];
    let user_token = env.admin_token().to_owned();
    let shop = shop_entity(namespace);
    // Backstage's frontend sends the tokens of every client-side provider with each objects request.
    let auth = json!({"oidc": {"okta": user_token}});
    let widgets = json!([{"group": "e2e.kubeauth.dev", "apiVersion": "v1", "plural": "widgets"}]);
    vec![
        Case::get("clusters", "/api/kubernetes/clusters", &[]),
        Case::get("proxy list", &pods, &good),
        Case::get("proxy list selector", &format!("{pods}?labelSelector=tier%3Dweb"), &good),
        Case::get("proxy one object", &format!("{pods}/shop-web-1"), &good),
        Case::get("proxy absent object", &format!("{pods}/nothing-here"), &good),
        Case::get("proxy refused cluster", &pods, &[("backstage-kubernetes-cluster", "bad")]),
        Case::get("proxy no cluster header", &pods, &[]),
        Case::get("proxy unknown cluster", &pods, &[("backstage-kubernetes-cluster", "nowhere")]),
        Case::get(
            "proxy caller's token",
            &pods,
            &[
                ("backstage-kubernetes-cluster", "bad"),
                ("backstage-kubernetes-authorization", &format!("Bearer {user_token}")),
            ],
        ),
        Case::get(
            "proxy client-side oidc",
            &pods,
            &[("backstage-kubernetes-cluster", "user"), ("backstage-kubernetes-authorization-oidc-okta", &user_token)],
        ),
        Case::post("services", "/api/kubernetes/services/shop", json!({"entity": shop, "auth": auth})),
        Case::post("services no user token", "/api/kubernetes/services/shop", json!({"entity": shop, "auth": {}})),
        Case::post(
            "services entity not in the catalog",
            "/api/kubernetes/services/ghost",
            json!({"entity": {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                "metadata": {"name": "ghost", "namespace": "default", "annotations": {"backstage.io/kubernetes-namespace": "kube-system"}}},
                "auth": auth}),
        ),
        Case::post(
            "services annotations from the catalog",
            "/api/kubernetes/services/shop",
            json!({"entity": {"apiVersion": "backstage.io/v1alpha1", "kind": "Component",
                "metadata": {"name": "shop", "namespace": "default", "annotations": {"backstage.io/kubernetes-namespace": "kube-system",
                "backstage.io/kubernetes-label-selector": ""}}}, "auth": auth}),
        ),
        Case::post("services no entity", "/api/kubernetes/services/shop", json!({"auth": auth})),
        Case::post("bad JSON services", "/api/kubernetes/services/shop", Value::String("{not json".into())),
        Case::post(
            "workloads",
            "/api/kubernetes/resources/workloads/query",
            json!({"entityRef": "component:default/shop", "auth": auth}),
        ),
        Case::post(
            "workloads label selector",
            "/api/kubernetes/resources/workloads/query",
            json!({"entityRef": "component:default/selected", "auth": auth}),
        ),
        Case::post(
            "workloads no auth",
            "/api/kubernetes/resources/workloads/query",
            json!({"entityRef": "component:default/shop"}),
        ),
        Case::post(
            "workloads entity not in the catalog",
            "/api/kubernetes/resources/workloads/query",
            json!({"entityRef": "component:default/ghost", "auth": auth}),
        ),
        Case::post("workloads no entityRef", "/api/kubernetes/resources/workloads/query", json!({"auth": auth})),
        Case::post(
            "workloads entityRef not a string",
            "/api/kubernetes/resources/workloads/query",
            json!({"entityRef": 7, "auth": auth}),
        ),
        Case::post(
            "workloads bad entityRef",
            "/api/kubernetes/resources/workloads/query",
            json!({"entityRef": "a:b:c/d/e", "auth": auth}),
        ),
        Case::post(
            "custom",
            "/api/kubernetes/resources/custom/query",
            json!({"entityRef": "component:default/shop", "customResources": widgets, "auth": auth}),
        ),
        Case::post(
            "custom no customResources",
            "/api/kubernetes/resources/custom/query",
            json!({"entityRef": "component:default/shop", "auth": auth}),
        ),
        Case::post(
            "custom customResources not a list",
            "/api/kubernetes/resources/custom/query",
            json!({"entityRef": "component:default/shop", "customResources": {"group": "x"}, "auth": auth}),
        ),
        Case::post(
            "custom no customResource",
            "/api/kubernetes/resources/custom/query",
            json!({"entityRef": "component:default/shop", "customResources": [], "auth": auth}),
        ),
        Case::get("unknown endpoint", "/api/kubernetes/nothing", &[]),
        Case::post("bad JSON workloads", "/api/kubernetes/resources/workloads/query", Value::String("[1,".into())),
    ]
}

#[tokio::test]
async fn backstages_backend_and_kubeauth_answer_alike() {
    let env = TestCluster::shared();
    let namespace = "oracle";
    objects(env, namespace).await;
    let catalog = FakeCatalog::open("oracle-catalog-token-0123456789");
    catalog.add(shop_entity(namespace));
    catalog.add(selected_entity(namespace));
    let app_config = format!(
        "kubernetes:\n  serviceLocatorMethod:\n    type: multiTenant\n  apiVersionOverrides:\n    horizontalpodautoscalers: v2beta2\n    cronjobs: v1beta1\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{}\
         kubeauth:\n  catalog:\n    baseUrl: {}\n    token: {}\n",
        clusters(env),
        catalog.url(),
        catalog.token()
    );
    let (backstage, kubeauth) = both(&app_config, &catalog).await;
    let found = compare(&backstage, &kubeauth, &corpus(env, namespace)).await;
    assert!(found.is_empty(), "{} differences from Backstage's backend:\n{}", found.len(), found.join("\n"));
}
