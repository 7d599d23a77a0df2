//! Backstage's own frontend code, unmodified from npm (`KubernetesBackendClient`, `groupResponses`,
//! `detectErrors`, driven by tests/backstage/frontend.mjs), against `kubeauth serve` in front of the real API
//! server: what Backstage's UI reads from kubeauth's answers is what it shows its users.

use std::path::Path;

use kubeauth_testkit::TestCluster;
use serde_json::{Value, json};

use crate::server::{catalog_section, cluster_yaml, config, serve, serve_with_catalog};

/// Runs Backstage's frontend code with `request` against the server at `addr`; what it read.
async fn frontend(addr: &str, request: Value) -> Value {
    let peers = kubeauth_testkit::oidc::node_peers_dir();
    let installed = peers.join("backstage-kubernetes/node_modules/@backstage/plugin-kubernetes-react");
    assert!(
        installed.is_dir(),
        "Backstage's frontend packages are not in {}: `cargo xtask test` installs them",
        peers.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("backstage/frontend.mjs");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(&peers)
        .arg(format!("http://{addr}/api/kubernetes"))
        .arg(request.to_string())
        .output()
        .await
        .expect("node");
    assert!(out.status.success(), "Backstage's client failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn backstages_frontend_reads_what_its_own_backend_would_answer() {
    use k8s_openapi::api::core::v1::Pod;
    let env = TestCluster::shared();
    env.create_namespace("frontend-e2e").await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "storefront-1", "labels": {"backstage.io/kubernetes-id": "storefront"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/storefront:1"}]}
    }))
    .unwrap();
    let _ =
        kube::Api::<Pod>::namespaced(env.admin_client().await, "frontend-e2e").create(&Default::default(), &pod).await;
    crate::create_widget(env, "frontend-e2e", "green", "storefront").await;

    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    let entity = json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "storefront", "namespace": "default",
            "annotations": {"backstage.io/kubernetes-namespace": "frontend-e2e"}},
        "spec": {"type": "service", "owner": "team-a", "lifecycle": "production"}
    });
    catalog.add(entity.clone());
    let widgets = "          customResources:\n            - group: e2e.kubeauth.dev\n              apiVersion: v1\n              plural: widgets\n";
    let yaml = format!(
        "{}{}",
        config(&[
            cluster_yaml(
                env,
                "good",
                &format!(
                    "          authProvider: serviceAccount\n          serviceAccountToken: {}\n{widgets}",
                    env.admin_token()
                ),
            ),
            cluster_yaml(env, "bad", "          authProvider: serviceAccount\n          serviceAccountToken: wrong\n"),
        ]),
        catalog_section(&catalog)
    );
    let addr = serve_with_catalog(&yaml, &catalog).await;

    // The entity page: the standard types and the cluster's custom resources, sorted as the UI sorts them.
    for call in ["getObjectsByEntity", "getWorkloadsByEntity"] {
        let seen = frontend(&addr, json!({"call": call, "entity": entity})).await;
        let good = seen["clusters"].as_array().unwrap().iter().find(|c| c["name"] == "good").unwrap();
        assert_eq!(good["pods"], json!(["storefront-1"]), "{call}: {seen:#}");
        assert_eq!(good["customResources"], json!([{"kind": "Widget", "name": "green"}]), "{call}: {seen:#}");
        // No metrics API in this cluster: Backstage's NOT_FOUND for the pods' metrics, nothing else.
        let errors = good["errors"].as_array().unwrap();
        assert!(
            errors.len() == 1
                && errors[0]["resourcePath"] == "/apis/metrics.k8s.io/v1beta1/namespaces/frontend-e2e/pods",
            "{call}: {seen:#}"
        );
        let bad = seen["clusters"].as_array().unwrap().iter().find(|c| c["name"] == "bad").unwrap();
        assert!(
            bad["errors"].as_array().unwrap().iter().all(|e| e["errorType"] == "UNAUTHORIZED_ERROR"),
            "{call}: {seen:#}"
        );
        // The UI's error panel runs over every cluster's answer without failing.
        assert!(seen["detected"]["good"].is_array() && seen["detected"]["bad"] == json!([]), "{seen:#}");
    }

    // The custom resources tab: only what it asks for, typed as Backstage types them.
    let custom = frontend(
        &addr,
        json!({"call": "getCustomObjectsByEntity", "entity": entity,
            "customResources": [{"group": "e2e.kubeauth.dev", "apiVersion": "v1", "plural": "widgets"}]}),
    )
    .await;
    let good = custom["clusters"].as_array().unwrap().iter().find(|c| c["name"] == "good").unwrap();
    assert_eq!(good["customResources"], json!([{"kind": "Widget", "name": "green"}]), "{custom:#}");
    assert_eq!(good["pods"], json!([]), "{custom:#}");

    // The cluster list and the proxy, as the UI's cluster links and pod logs use them.
    let clusters = frontend(&addr, json!({"call": "getClusters"})).await;
    let names: Vec<&str> = clusters.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["good", "bad"]);
    assert_eq!(clusters[0]["authProvider"], "serviceAccount");
    let proxied = frontend(
        &addr,
        json!({"call": "proxy", "clusterName": "good", "path": "/api/v1/namespaces/frontend-e2e/pods/storefront-1"}),
    )
    .await;
    assert_eq!(proxied["status"], 200, "{proxied:#}");
    let pod: Value = serde_json::from_str(proxied["body"].as_str().unwrap()).unwrap();
    assert_eq!(pod["metadata"]["name"], "storefront-1");
}

#[tokio::test]
async fn pod_metrics_are_what_backstages_backend_computes() {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    // A cluster of its own: its metrics API would change what the other tests' clusters answer.
    let env = std::thread::spawn(|| TestCluster::builder().start()).join().unwrap();
    env.create_namespace("metrics-e2e").await;
    let admin = env.admin_client().await;
    // metrics.k8s.io served by the API server itself, from a CRD with the PodMetrics shape that metrics-server
    // serves (no metrics-server runs here: it needs kubelets).
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "pods.metrics.k8s.io", "annotations": {"api-approved.kubernetes.io": "unapproved, testing only"}},
        "spec": {"group": "metrics.k8s.io", "scope": "Namespaced",
            "names": {"plural": "pods", "singular": "podmetrics", "kind": "PodMetrics", "listKind": "PodMetricsList"},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    kube::Api::<CustomResourceDefinition>::all(admin.clone()).create(&Default::default(), &crd).await.unwrap();
    let labels = json!({"backstage.io/kubernetes-id": "meter"});
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "meter-1", "labels": labels},
        "spec": {"containers": [
            {"name": "app", "image": "registry.invalid/meter:1",
             "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}},
            {"name": "proxy", "image": "registry.invalid/proxy:1",
             "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}}
        ]}
    }))
    .unwrap();
    kube::Api::<Pod>::namespaced(admin.clone(), "metrics-e2e").create(&Default::default(), &pod).await.unwrap();
    let resource = kube::api::ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let metrics = kube::Api::<kube::api::DynamicObject>::namespaced_with(admin, "metrics-e2e", &resource);
    let usage: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
        "metadata": {"name": "meter-1", "namespace": "metrics-e2e", "labels": labels},
        "timestamp": "2026-01-01T00:00:00Z", "window": "30s",
        "containers": [{"name": "app", "usage": {"cpu": "12345678n", "memory": "40960Ki"}},
                       {"name": "proxy", "usage": {"cpu": "3m", "memory": "12Mi"}}]
    }))
    .unwrap();
    let started = std::time::Instant::now();
    // The API server's own start of serving the new type, polled within a deadline.
    while let Err(e) = metrics.create(&Default::default(), &usage).await {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "PodMetrics not served: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let cluster = |name: &str, skip: bool| {
        cluster_yaml(
            &env,
            name,
            &format!(
                "          authProvider: serviceAccount\n          serviceAccountToken: {}\n          skipMetricsLookup: {skip}\n",
                env.admin_token()
            ),
        )
    };
    let addr = serve(&config(&[cluster("metered", false), cluster("unmetered", true)])).await;
    let entity = json!({"kind": "Component", "metadata": {"name": "meter", "namespace": "default",
        "annotations": {"backstage.io/kubernetes-namespace": "metrics-e2e"}}});
    let seen = frontend(&addr, json!({"call": "getObjectsByEntity", "entity": entity})).await;
    let by_name = |name: &str| seen["clusters"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    let metered = by_name("metered");
    assert_eq!(metered["errors"], json!([]), "{seen:#}");
    // The same numbers, to the digit and the type, as @kubernetes/client-node's topPods makes of the same lists.
    let expected = frontend(
        &addr,
        json!({"call": "expectedPodMetrics", "clusterName": "metered", "namespace": "metrics-e2e",
            "labelSelector": "backstage.io/kubernetes-id=meter"}),
    )
    .await;
    assert_eq!(metered["podMetrics"], expected, "kubeauth: {:#}\nclient-node: {expected:#}", metered["podMetrics"]);
    let cpu = metered["podMetrics"][0]["cpu"]["currentUsage"].as_f64().unwrap();
    assert!((cpu - 0.015_345_678).abs() < 1e-12, "{cpu}");
    assert_eq!(metered["podMetrics"][0]["memory"]["currentUsage"], "54525952");
    // skipMetricsLookup: no metrics, no error.
    let unmetered = by_name("unmetered");
    assert_eq!(unmetered["podMetrics"], json!([]));
    assert_eq!(unmetered["errors"], json!([]));
}
