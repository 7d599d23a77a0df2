//! End to end against one real kube-apiserver (shared by the tests of this binary).

mod access;
mod attacks;
mod audit;
mod backstage_backend;
mod backstage_frontend;
mod connector;
mod custom_provider;
mod deploy;
mod kubeconfig;
mod local_kubectl_proxy;
mod pinniped;
mod server;
mod service_account;
mod tls;

use k8s_openapi::api::core::v1::Namespace;

/// The namespace names the client can list.
async fn namespaces(client: kube::Client) -> Result<Vec<String>, kube::Error> {
    let list = kube::Api::<Namespace>::all(client).list(&Default::default()).await?;
    Ok(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
}

/// The API server's own answer, for an API error.
fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A `Widget` (a custom resource of the test CRD `widgets.e2e.kubeauth.dev`, created if missing) named `name` in
/// `namespace`, labelled `backstage.io/kubernetes-id: <id>`, with `spec.colour` its name.
async fn create_widget(env: &kubeauth_testkit::TestCluster, namespace: &str, name: &str, id: &str) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let admin = env.admin_client().await;
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "widgets.e2e.kubeauth.dev"},
        "spec": {"group": "e2e.kubeauth.dev", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    let _ = kube::Api::<CustomResourceDefinition>::all(admin.clone()).create(&Default::default(), &crd).await;
    let resource = kube::api::ApiResource {
        group: "e2e.kubeauth.dev".into(),
        version: "v1".into(),
        api_version: "e2e.kubeauth.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets = kube::Api::<kube::api::DynamicObject>::namespaced_with(admin, namespace, &resource);
    let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "e2e.kubeauth.dev/v1", "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace, "labels": {"backstage.io/kubernetes-id": id}},
        "spec": {"colour": name}}))
    .unwrap();
    let started = std::time::Instant::now();
    loop {
        match widgets.create(&Default::default(), &object).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => return,
            // The API server's own start of serving the new type, polled within a deadline.
            Err(_) if started.elapsed() < std::time::Duration::from_secs(20) => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the Widget type is not served: {e}"),
        }
    }
}
