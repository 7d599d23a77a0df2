//! The `pinniped` providers against the real API server, with a stand-in for the Pinniped Concierge's token
//! exchange (`kubeauth_testkit::concierge`): the certificates it issues are signed by the cluster's client CA, and
//! the real kube-apiserver decides who they authenticate.

use std::time::Duration;

use kubeauth::{ClusterDetails, Connector, Registry, RequestAuth, metadata};
use kubeauth_testkit::concierge::ConciergeStandIn;
use kubeauth_testkit::{TestCluster, user};

fn pinniped_cluster(env: &TestCluster, concierge: &ConciergeStandIn) -> ClusterDetails {
    let mut cluster = env.cluster_details("pinniped-dev", "pinniped");
    for (key, value) in [
        (metadata::OIDC_TOKEN_PROVIDER, "corp".to_owned()),
        (metadata::PINNIPED_AUTHENTICATOR, "JWTAuthenticator/corp-sso".to_owned()),
        (metadata::PINNIPED_CONCIERGE_ENDPOINT, concierge.url().to_owned()),
        (metadata::PINNIPED_CONCIERGE_CA_DATA, concierge.ca_data()),
    ] {
        cluster.auth_metadata.insert(key.into(), value);
    }
    cluster
}

fn as_user(token: &str) -> RequestAuth {
    let mut auth = RequestAuth::none();
    auth.insert_nested_token("oidc", "corp", token);
    auth
}

#[tokio::test]
async fn the_users_token_becomes_a_short_lived_certificate_the_api_server_accepts_as_that_user() {
    let env = TestCluster::shared();
    env.grant("pinniped-alice-lister", user("pinniped:alice"), &["list"], &["namespaces"]).await;
    let tokens = [("id-alice", "alice"), ("id-bob", "bob")];
    let concierge = ConciergeStandIn::for_cluster(env, ("JWTAuthenticator", "corp-sso"), &tokens);
    let cluster = pinniped_cluster(env, &concierge);
    let registry = Registry::with_defaults();
    registry.validate(&cluster).unwrap();
    let connector = Connector::new(registry.clone());

    // alice's ID token: one exchange, a certificate for five minutes, reused for every request.
    for _ in 0..3 {
        let client = connector.kube_client(&cluster, &as_user("id-alice")).await.unwrap();
        let names = super::namespaces(client).await.unwrap();
        assert!(names.contains(&"default".to_owned()), "{names:?}");
    }
    assert_eq!(concierge.exchanges(), 1);
    let credential = registry.credential(&cluster, &as_user("id-alice")).await.unwrap();
    assert_eq!(credential.kind(), kubeauth::CredentialKind::ClientCertificate);
    let left = credential.expires_at().unwrap().duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(200) && left <= Duration::from_secs(300), "{left:?}");

    // bob's: his own certificate, and the API server sees bob.
    let client = connector.kube_client(&cluster, &as_user("id-bob")).await.unwrap();
    let refused = kubeauth::core::report(&super::namespaces(client).await.unwrap_err());
    assert!(refused.contains("\"pinniped:bob\" cannot list resource \"namespaces\""), "{refused}");
    assert_eq!(concierge.exchanges(), 2);

    // A token the Concierge does not accept: that cluster's error, with the Concierge's words and no token.
    let Err(err) = connector.kube_client(&cluster, &as_user("id-mallory")).await else {
        panic!("mallory got a client")
    };
    let message = kubeauth::core::report(&err);
    assert!(message.contains("cluster 'pinniped-dev'"), "{message}");
    assert!(message.contains("the Concierge refused the token (201 Created): authentication failed"), "{message}");
    assert!(!message.contains("id-mallory"), "{message}");
    // No user's token, no request at all.
    let before = concierge.requests().len();
    assert!(connector.kube_client(&cluster, &RequestAuth::none()).await.is_err());
    assert_eq!(concierge.requests().len(), before);

    // The exchange is anonymous, as the pinniped command makes it, and goes to the Concierge's API.
    let requests = concierge.requests();
    assert!(requests.iter().all(|r| !r.authorization), "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.request == "POST /apis/login.concierge.pinniped.dev/v1alpha1/tokencredentialrequests"),
        "{requests:?}"
    );
}

#[tokio::test]
async fn the_wrong_authenticator_or_ca_is_that_clusters_error() {
    let env = TestCluster::shared();
    let concierge = ConciergeStandIn::for_cluster(env, ("JWTAuthenticator", "corp-sso"), &[("id-carol", "carol")]);
    let registry = Registry::with_defaults();

    let mut wrong_authenticator = pinniped_cluster(env, &concierge);
    wrong_authenticator
        .auth_metadata
        .insert(metadata::PINNIPED_AUTHENTICATOR.into(), "WebhookAuthenticator/other".into());
    let err =
        kubeauth::core::report(&registry.credential(&wrong_authenticator, &as_user("id-carol")).await.unwrap_err());
    assert!(err.contains("authentication failed"), "{err}");

    // Without the Concierge's CA, its certificate is not trusted and the token is never sent.
    let mut untrusted = pinniped_cluster(env, &concierge);
    untrusted.auth_metadata.remove(metadata::PINNIPED_CONCIERGE_CA_DATA);
    let before = concierge.requests().len();
    let err = kubeauth::core::report(&registry.credential(&untrusted, &as_user("id-carol")).await.unwrap_err());
    assert!(err.contains("did not answer") && err.contains("certificate"), "{err}");
    assert_eq!(concierge.requests().len(), before, "no request got through the handshake");
}
