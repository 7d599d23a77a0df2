//! End to end against one real kube-apiserver (shared by the tests of this binary).

mod attacks;
mod connector;
mod custom_provider;
mod deploy;
mod local_kubectl_proxy;
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
