use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use kubeauth::{ClusterDetails, Connector, Registry, RequestAuth};

use crate::pki::TestCa;
use crate::{EnvtestBinaries, Supervised, TokenReviewWebhook, free_port};

/// A real etcd and kube-apiserver on loopback ports, HTTPS with a CA made for the run.
///
/// - users: `admin` (group `system:masters`) by the bearer token [`admin_token`](Self::admin_token);
///   service accounts by real tokens from the TokenRequest API; x509 client certificates signed by
///   [`client_ca`](Self::client_ca); whatever a [`TokenReviewWebhook`] says, if one is plugged in;
/// - authorization: RBAC, with the API server's bootstrap roles;
/// - admission: the `ServiceAccount` plugin is off (there is no controller manager to make `default` accounts).
///
/// The processes and the scratch folder go away when the value is dropped, or when the test process ends.
pub struct TestCluster {
    url: String,
    ca: TestCa,
    client_ca: TestCa,
    admin_token: String,
    dir: PathBuf,
    binaries: EnvtestBinaries,
    apiserver: Supervised,
    _etcd: Supervised,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster").field("url", &self.url).field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Options of a [`TestCluster`]: extra kube-apiserver flags and a TokenReview webhook.
#[derive(Debug, Default)]
pub struct TestClusterBuilder {
    args: Vec<String>,
    webhook_kubeconfig: Option<String>,
}

impl TestClusterBuilder {
    /// Adds a kube-apiserver flag, e.g. `--oidc-issuer-url=https://127.0.0.1:4000`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sends bearer tokens the API server does not know itself to `webhook` for review.
    pub fn token_webhook(mut self, webhook: &TokenReviewWebhook) -> Self {
        self.webhook_kubeconfig = Some(webhook.kubeconfig());
        self
    }

    /// Starts etcd and kube-apiserver and waits until the API server is ready (about 5 s). Blocking, on a
    /// runtime of its own: call it from a plain thread (not from async code), or use [`TestCluster::shared`].
    pub fn start(self) -> TestCluster {
        TestCluster::start_with(self)
    }
}

fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn arg(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

impl TestCluster {
    /// Options for a new cluster.
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder::default()
    }

    /// One cluster for the whole test binary, started by the first test that asks (blocking; safe to call from
    /// async tests, which it runs on a separate thread).
    pub fn shared() -> &'static TestCluster {
        static SHARED: OnceLock<Result<TestCluster, String>> = OnceLock::new();
        let started = SHARED.get_or_init(|| {
            std::thread::spawn(|| Self::builder().start()).join().map_err(|panic| {
                panic.downcast_ref::<String>().cloned().unwrap_or_else(|| "the test cluster did not start".into())
            })
        });
        // Started once per test binary: after a failure, every test fails at once with the same message.
        started.as_ref().unwrap_or_else(|message| panic!("{message}"))
    }

    /// A cluster whose API server asks `verifier` (through a [`TokenReviewWebhook`]) about the bearer tokens it
    /// does not know itself. Safe to call from async tests: it starts on a thread of its own.
    pub fn start_with_verifier(verifier: impl crate::TokenVerifier) -> (TestCluster, TokenReviewWebhook) {
        let webhook = TokenReviewWebhook::start(verifier);
        let builder = Self::builder().token_webhook(&webhook);
        let cluster = std::thread::spawn(move || builder.start()).join().unwrap_or_else(|panic| {
            panic!(
                "{}",
                panic.downcast_ref::<String>().cloned().unwrap_or_else(|| "the test cluster did not start".into())
            )
        });
        (cluster, webhook)
    }

    fn start_with(options: TestClusterBuilder) -> Self {
        let binaries = EnvtestBinaries::require();
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // The supervisor removes the folder when the cluster stops, so it outlives this function's handle.
        let dir = tempfile::Builder::new().prefix("kubeauth-envtest-").tempdir().expect("a temp dir").keep();

        let ca = TestCa::new("kubeauth-test-apiserver-ca");
        let client_ca = TestCa::new("kubeauth-test-client-ca");
        // `kubernetes.kubeauth.test` resolves nowhere: only a test proxy that maps it reaches the API server by it.
        let serving = ca.server_cert(&["127.0.0.1", "localhost", "kubernetes.kubeauth.test"]);
        let sa_key = crate::pki::signing_key_pem();
        let admin_token = format!("admin-{}", crate::pki::random_hex(16));
        let tls_cert = write(&dir, "apiserver.crt", &serving.cert_pem);
        let tls_key = write(&dir, "apiserver.key", &serving.key_pem);
        let client_ca_file = write(&dir, "client-ca.crt", client_ca.cert_pem());
        let sa_key_file = write(&dir, "sa.key", &sa_key.0);
        let sa_pub_file = write(&dir, "sa.pub", &sa_key.1);
        let tokens = write(&dir, "tokens.csv", format!("{admin_token},admin,admin-uid,\"system:masters\"\n"));

        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd = Supervised::start(
            "etcd",
            &binaries.etcd,
            &[
                arg("data-dir", dir.join("etcd").display()),
                arg("name", "default"),
                arg("listen-client-urls", &etcd_url),
                arg("advertise-client-urls", &etcd_url),
                arg("listen-peer-urls", &peer_url),
                arg("initial-advertise-peer-urls", &peer_url),
                arg("initial-cluster", format!("default={peer_url}")),
            ],
            &dir.join("etcd.log"),
            Some(&dir),
        );

        let mut args = vec![
            arg("etcd-servers", &etcd_url),
            arg("bind-address", "127.0.0.1"),
            arg("advertise-address", "127.0.0.1"),
            arg("secure-port", port),
            "--insecure-port=0".to_owned(),
            arg("cert-dir", dir.join("certs").display()),
            arg("tls-cert-file", tls_cert.display()),
            arg("tls-private-key-file", tls_key.display()),
            arg("client-ca-file", client_ca_file.display()),
            arg("token-auth-file", tokens.display()),
            arg("service-account-key-file", sa_pub_file.display()),
            arg("service-account-signing-key-file", sa_key_file.display()),
            arg("service-account-issuer", "https://kubernetes.default.svc"),
            arg("authorization-mode", "RBAC"),
            arg("disable-admission-plugins", "ServiceAccount"),
            arg("service-cluster-ip-range", "10.96.0.0/24"),
            "--profiling=false".to_owned(),
        ];
        if let Some(kubeconfig) = &options.webhook_kubeconfig {
            let file = write(&dir, "token-webhook.kubeconfig", kubeconfig);
            args.push(arg("authentication-token-webhook-config-file", file.display()));
            args.push(arg("authentication-token-webhook-version", "v1"));
            args.push(arg("authentication-token-webhook-cache-ttl", "0s"));
        }
        args.extend(options.args);
        let apiserver =
            Supervised::start("kube-apiserver", &binaries.kube_apiserver, &args, &dir.join("apiserver.log"), None);

        let cluster = Self {
            url: format!("https://127.0.0.1:{port}"),
            ca,
            client_ca,
            admin_token,
            dir,
            binaries,
            apiserver,
            _etcd: etcd,
        };
        cluster.wait_ready(Duration::from_secs(90));
        cluster
    }

    /// Polls `/readyz` (which includes the RBAC bootstrap) and the `default` namespace until both answer,
    /// through the same client every test uses. Runs its own runtime: call it from a plain thread.
    fn wait_ready(&self, limit: Duration) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let started = Instant::now();
        let last = runtime.block_on(async {
            let client = self.admin_client().await;
            let mut last = String::new();
            while started.elapsed() < limit {
                if self.apiserver.has_exited() || self._etcd.has_exited() {
                    return Err(format!(
                        "the test cluster stopped while starting; kube-apiserver's log ends with:\n{}\netcd's log ends with:\n{}",
                        self.apiserver.log_tail(15),
                        self._etcd.log_tail(15)
                    ));
                }
                // Ready, and the `default` namespace made (the API server creates it just after it starts).
                let ready = async {
                    for path in ["/readyz", "/api/v1/namespaces/default"] {
                        let request = http::Request::get(path).body(Vec::new()).expect("a request");
                        client.request_text(request).await?;
                    }
                    Ok::<(), kube::Error>(())
                };
                match ready.await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = kubeauth::report(&e),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(format!("kube-apiserver was not ready after {limit:?} (last answer: {last})"))
        });
        if let Err(message) = last {
            panic!("{message}; its log ends with:\n{}", self.apiserver.log_tail(30));
        }
    }

    /// The API server's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA that signed the API server's certificate.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The CA whose client certificates the API server accepts (`--client-ca-file`).
    pub fn client_ca(&self) -> &TestCa {
        &self.client_ca
    }

    /// A bearer token of user `admin` in `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The binaries in use (kubectl among them).
    pub fn binaries(&self) -> &EnvtestBinaries {
        &self.binaries
    }

    /// The scratch folder of this cluster (removed when it stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of the API server's log.
    pub fn apiserver_log_tail(&self, lines: usize) -> String {
        self.apiserver.log_tail(lines)
    }

    /// A cluster entry for this API server: its URL and CA, with `provider` as `authProvider`.
    pub fn cluster_details(&self, name: &str, provider: &str) -> ClusterDetails {
        let mut cluster = ClusterDetails::new(name, self.url.clone());
        cluster.set_auth_provider(provider);
        cluster.ca_data = Some(self.ca.ca_data());
        cluster
    }

    /// Stops the kube-apiserver (etcd stays): for tests of what clients see when their API server goes away.
    pub fn stop_apiserver(&mut self) {
        self.apiserver.stop();
    }

    /// A client as `admin`, built the way every kubeauth client is (the `serviceAccount` provider with the
    /// admin token).
    pub async fn admin_client(&self) -> kube::Client {
        let mut cluster = self.cluster_details("envtest-admin", "serviceAccount");
        cluster.service_account_token = Some(self.admin_token.clone().into());
        Connector::new(Registry::with_defaults())
            .kube_client(&cluster, &RequestAuth::none())
            .await
            .expect("an admin client")
    }

    /// Creates namespace `name` (fine if it exists).
    pub async fn create_namespace(&self, name: &str) {
        let ns =
            Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
        create_or_keep(Api::<Namespace>::all(self.admin_client().await).create(&PostParams::default(), &ns).await);
    }

    /// Creates service account `namespace/name` (and the namespace), fine if they exist.
    pub async fn create_service_account(&self, namespace: &str, name: &str) {
        self.create_namespace(namespace).await;
        let sa = ServiceAccount {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        };
        let api = Api::<ServiceAccount>::namespaced(self.admin_client().await, namespace);
        create_or_keep(api.create(&PostParams::default(), &sa).await);
    }

    /// Deletes service account `namespace/name`: its tokens stop working.
    pub async fn delete_service_account(&self, namespace: &str, name: &str) {
        let api = Api::<ServiceAccount>::namespaced(self.admin_client().await, namespace);
        api.delete(name, &Default::default()).await.expect("delete the service account");
    }

    /// A real token for service account `namespace/name`, from the TokenRequest API (valid one hour).
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let api = Api::<ServiceAccount>::namespaced(self.admin_client().await, namespace);
        let request = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": { "expirationSeconds": 3600 }
        });
        let answer: serde_json::Value = api
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .expect("a TokenRequest token");
        answer["status"]["token"].as_str().expect("status.token").to_owned()
    }

    /// Lets `subject` do `verbs` on `resources` (core API group) everywhere: a ClusterRole and its binding,
    /// both named `name`.
    pub async fn grant(&self, name: &str, subject: Subject, verbs: &[&str], resources: &[&str]) {
        let client = self.admin_client().await;
        let role = ClusterRole {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
                verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        create_or_keep(Api::<ClusterRole>::all(client).create(&PostParams::default(), &role).await);
        self.bind(name, name, subject).await;
    }

    /// A kubeconfig for kubectl whose user sends `token`.
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig_with_user(&format!("token: {token}"))
    }

    /// A kubeconfig for kubectl whose user is the YAML mapping `user` (e.g. an `exec:` section).
    pub fn kubeconfig_with_user(&self, user: &str) -> String {
        let user: String = user.lines().map(|l| format!("      {l}\n")).collect();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: envtest\n    cluster:\n      server: {}\n      certificate-authority-data: {}\nusers:\n  - name: envtest\n    user:\n{user}contexts:\n  - name: envtest\n    context:\n      cluster: envtest\n      user: envtest\ncurrent-context: envtest\n",
            self.url,
            self.ca.ca_data()
        )
    }
}

/// A subject for [`TestCluster::grant`]: a user.
pub fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        name: name.into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        namespace: None,
    }
}

fn create_or_keep<T>(result: Result<T, kube::Error>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("creating a test object failed: {e}"),
    }
}

/// A subject for [`TestCluster::grant`]: service account `namespace/name`.
pub fn service_account(namespace: &str, name: &str) -> Subject {
    Subject { kind: "ServiceAccount".into(), name: name.into(), api_group: None, namespace: Some(namespace.into()) }
}

impl TestCluster {
    /// Binds the existing ClusterRole `cluster_role` (e.g. `system:auth-delegator`) to `subject`.
    pub async fn bind(&self, name: &str, cluster_role: &str, subject: Subject) {
        let binding = ClusterRoleBinding {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: cluster_role.into(),
            },
            subjects: Some(vec![subject]),
        };
        create_or_keep(
            Api::<ClusterRoleBinding>::all(self.admin_client().await).create(&PostParams::default(), &binding).await,
        );
    }
}
