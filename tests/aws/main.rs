//! The `aws` provider end to end: EKS tokens checked by an aws-iam-authenticator-like verifier (with a real
//! SigV4 check) behind the real kube-apiserver's TokenReview webhook, identities from moto's STS.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kubeauth::{ClusterDetails, Credential, CredentialFuture, Registry, RequestAuth, ServerSideProvider, metadata};
use kubeauth_aws::{AwsProvider, eks_token};
use kubeauth_testkit::aws::{AwsTestEnv, EksTokenVerifier, python_peer};
use kubeauth_testkit::user;

type Env = AwsTestEnv;

async fn grants(env: &Env) {
    env.cluster.grant("aws-user-namespaces", user(Env::USER), &["list"], &["namespaces"]).await;
    env.cluster.grant("aws-role-user-pods", user(Env::ROLE_USER), &["list"], &["namespaces", "pods"]).await;
}

fn registry(provider: AwsProvider) -> Registry {
    let mut registry = Registry::with_defaults();
    registry.replace("aws", kubeauth::Provider::server(provider)).unwrap();
    registry
}

fn static_provider(env: &Env) -> AwsProvider {
    AwsProvider::builder()
        .static_credentials(Env::ACCESS_KEY_ID, Env::SECRET_ACCESS_KEY, None)
        .sts_endpoint(env.sts.url())
        .build()
}

async fn list<K>(client: kube::Client) -> Result<usize, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(kube::Api::<K>::all(client).list(&Default::default()).await?.items.len())
}

async fn list_pods(client: kube::Client) -> Result<usize, kube::Error> {
    Ok(kube::Api::<Pod>::all(client).list(&Default::default()).await?.items.len())
}

fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn an_eks_token_lists_namespaces_as_the_mapped_user() {
    let env = Env::shared();
    grants(env).await;
    let client = kubeauth::Connector::new(registry(static_provider(env)))
        .kube_client(&env.cluster_details("eks"), &RequestAuth::none())
        .await
        .unwrap();
    assert!(list::<Namespace>(client.clone()).await.unwrap() > 0);
    // aws-user may not list pods: the API server saw the base identity, not the role.
    assert_eq!(code(&list_pods(client).await.unwrap_err()), Some(403));
}

#[tokio::test]
async fn an_assumed_role_lists_as_the_roles_user() {
    let env = Env::shared();
    grants(env).await;
    let mut cluster = env.cluster_details("eks-role");
    cluster.auth_metadata.insert(metadata::AWS_ASSUME_ROLE.into(), Env::ROLE_ARN.into());
    cluster.auth_metadata.insert(metadata::AWS_EXTERNAL_ID.into(), Env::EXTERNAL_ID.into());
    let client = kubeauth::Connector::new(registry(static_provider(env)))
        .kube_client(&cluster, &RequestAuth::none())
        .await
        .unwrap();
    list_pods(client).await.expect("the role's user may list pods");
}

#[tokio::test]
async fn a_wrong_external_id_is_refused_by_sts_for_that_cluster() {
    let env = Env::shared();
    let mut cluster = env.cluster_details("eks-wrong-external-id");
    cluster.auth_metadata.insert(metadata::AWS_ASSUME_ROLE.into(), Env::ROLE_ARN.into());
    cluster.auth_metadata.insert(metadata::AWS_EXTERNAL_ID.into(), "not-the-id".into());
    let Err(err) =
        kubeauth::Connector::new(registry(static_provider(env))).kube_client(&cluster, &RequestAuth::none()).await
    else {
        panic!("a client with a refused role")
    };
    let shown = kubeauth::report(&err);
    assert!(shown.starts_with("cluster 'eks-wrong-external-id': the aws provider failed"), "{shown}");
    assert!(
        shown.contains("AssumeRole arn:aws:iam::123456789012:role/eks-reader failed") && shown.contains("AccessDenied"),
        "{shown}"
    );
    assert!(!shown.contains(Env::SECRET_ACCESS_KEY));
}

/// Sends one given token.
struct Fixed(String);

impl ServerSideProvider for Fixed {
    fn credential<'a>(&'a self, _: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move { Ok(Credential::bearer(self.0.clone())) })
    }
}

async fn status_of(env: &Env, token: String) -> u16 {
    let mut registry = Registry::with_defaults();
    registry.add("fixed", kubeauth::Provider::server(Fixed(token))).unwrap();
    let cluster = env.cluster.cluster_details("eks-fixed", "fixed");
    let client = kubeauth::Connector::new(registry.clone()).kube_client(&cluster, &RequestAuth::none()).await.unwrap();
    match list::<Namespace>(client).await {
        Ok(_) => 200,
        Err(e) => code(&e).unwrap_or(0),
    }
}

fn credentials(secret: &str) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(Env::ACCESS_KEY_ID, secret, None, None, "test")
}

fn url_of(token: &str) -> String {
    String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token["k8s-aws-v1.".len()..]).unwrap())
        .unwrap()
}

fn token_of(url: &str) -> String {
    format!("k8s-aws-v1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url))
}

#[tokio::test]
async fn bad_tokens_get_the_api_servers_401() {
    let env = Env::shared();
    grants(env).await;
    let now = SystemTime::now();
    let good = eks_token(&credentials(Env::SECRET_ACCESS_KEY), Env::REGION, Env::CLUSTER_ID, now).unwrap();
    assert_eq!(status_of(env, good.clone()).await, 200, "the harness accepts a good token");

    let url = url_of(&good);
    let signature = url.rsplit("X-Amz-Signature=").next().unwrap().to_owned();
    let flipped: String = signature.chars().rev().collect();
    let cases = [
        ("tampered signature", token_of(&url.replace(&signature, &flipped))),
        ("wrong secret", eks_token(&credentials("wrong-secret"), Env::REGION, Env::CLUSTER_ID, now).unwrap()),
        (
            "signed 20 minutes ago",
            eks_token(
                &credentials(Env::SECRET_ACCESS_KEY),
                Env::REGION,
                Env::CLUSTER_ID,
                now - Duration::from_secs(20 * 60),
            )
            .unwrap(),
        ),
        (
            "another cluster's id",
            eks_token(&credentials(Env::SECRET_ACCESS_KEY), Env::REGION, "another-cluster", now).unwrap(),
        ),
        ("an extra query parameter", token_of(&format!("{url}&X-Amz-Extra=1"))),
        ("padded", format!("{good}==")),
    ];
    for (what, token) in cases {
        assert_eq!(status_of(env, token).await, 401, "{what}");
    }
}

#[test]
fn awscli_and_kubeauth_presign_the_same_request() {
    let env = Env::shared();
    let mut command = std::process::Command::new(python_peer("awscli/bin/aws"));
    command.args(["eks", "get-token", "--cluster-name", Env::CLUSTER_ID, "--region", Env::REGION, "--output", "json"]);
    for (k, v) in env.process_env() {
        command.env(k, v);
    }
    // awscli's token must name the real STS endpoint, as ours does.
    command.env_remove("AWS_ENDPOINT_URL_STS");
    let out = command.output().expect("run aws eks get-token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = theirs["status"]["token"].as_str().unwrap().to_owned();
    let ours =
        eks_token(&credentials(Env::SECRET_ACCESS_KEY), Env::REGION, Env::CLUSTER_ID, SystemTime::now()).unwrap();

    let shape = |token: &str| {
        let url = url_of(token);
        let (base, query) = url.split_once('?').unwrap();
        let mut names: Vec<String> = query.split('&').map(|p| p.split('=').next().unwrap().to_owned()).collect();
        names.sort();
        let param = |name: &str| query.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).map(str::to_owned);
        (
            base.to_owned(),
            names,
            param("X-Amz-SignedHeaders"),
            param("X-Amz-Expires"),
            param("Action"),
            param("Version"),
        )
    };
    assert_eq!(shape(&theirs), shape(&ours), "\nawscli: {}\nkubeauth: {}", url_of(&theirs), url_of(&ours));
    // Both pass EKS's checks and the signature check.
    let verifier = EksTokenVerifier {
        cluster_id: Env::CLUSTER_ID.into(),
        sts_addr: env.sts.addr().into(),
        secrets: [(Env::ACCESS_KEY_ID.to_owned(), Env::SECRET_ACCESS_KEY.to_owned())].into(),
        users: Default::default(),
    };
    verifier.check(&theirs, SystemTime::now()).expect("awscli's token verifies");
    verifier.check(&ours, SystemTime::now()).expect("kubeauth's token verifies");
}
