//! The testkit's TokenReview webhook, plugged into a real kube-apiserver: the path every cloud token verifier
//! (EKS, Entra, Google) takes in the end-to-end tests.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Namespace;
use kubeauth::{ClusterDetails, Credential, CredentialFuture, Registry, RequestAuth, ServerSideProvider};
use kubeauth_testkit::{TestCluster, TokenReviewWebhook, TokenVerifier, UserInfo, VerifyFuture, user};

struct Known(HashMap<&'static str, &'static str>);

impl TokenVerifier for Known {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            self.0
                .get(token)
                .map(|name| UserInfo {
                    username: (*name).into(),
                    uid: format!("uid-{name}"),
                    groups: vec!["webhook-users".into()],
                })
                .ok_or_else(|| "unknown token".to_owned())
        })
    }
}

struct Bearer(&'static str);

impl ServerSideProvider for Bearer {
    fn credential<'a>(&'a self, _: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move { Ok(Credential::bearer(self.0)) })
    }
}

#[tokio::test]
async fn the_api_server_asks_the_webhook_who_a_token_belongs_to() {
    let webhook = TokenReviewWebhook::start(Known(HashMap::from([("token-of-alice", "alice")])));
    let env = {
        let builder = TestCluster::builder().token_webhook(&webhook);
        // Starting waits on its own runtime: a plain thread, not one of this runtime's.
        std::thread::spawn(move || builder.start()).join().unwrap()
    };
    env.grant("webhook-alice", user("alice"), &["list"], &["namespaces"]).await;

    let mut registry = Registry::with_defaults();
    registry.add("alice", kubeauth::Provider::server(Bearer("token-of-alice"))).unwrap();
    registry.add("mallory", kubeauth::Provider::server(Bearer("token-of-mallory"))).unwrap();

    let alice = kubeauth::Connector::new(registry.clone())
        .kube_client(&env.cluster_details("envtest", "alice"), &RequestAuth::none())
        .await
        .unwrap();
    let list = kube::Api::<Namespace>::all(alice).list(&Default::default()).await.unwrap();
    assert!(!list.items.is_empty());
    let reviewed = webhook.reviews();
    assert!(reviewed >= 1, "the webhook answered {reviewed} reviews");

    let mallory = kubeauth::Connector::new(registry.clone())
        .kube_client(&env.cluster_details("envtest", "mallory"), &RequestAuth::none())
        .await
        .unwrap();
    match kube::Api::<Namespace>::all(mallory).list(&Default::default()).await.unwrap_err() {
        kube::Error::Api(status) => assert_eq!(status.code, 401),
        other => panic!("{other:?}"),
    }
    assert!(webhook.reviews() > reviewed, "mallory's token was reviewed too");
}
