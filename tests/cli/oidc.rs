//! `kubeauth login`, `logout` and `token` for an oidc cluster, with the real kubectl, against a real OpenID
//! provider (panva's `oidc-provider`) and the real kube-apiserver trusting it (`--oidc-*` flags).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use kubeauth_testkit::oidc::{OidcClient, OidcPeer};
use kubeauth_testkit::{TestCluster, user};

const KUBEAUTH: &str = env!("CARGO_BIN_EXE_kubeauth-under-test");
const CLIENT: &str = "kubernetes";

struct Env {
    peer: OidcPeer,
    cluster: TestCluster,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        std::thread::spawn(|| {
            let peer = OidcPeer::start(&[OidcClient::public(CLIENT)]);
            let cluster = peer.start_cluster(CLIENT);
            Env { peer, cluster }
        })
        .join()
        .expect("the OIDC test environment starts")
    })
}

/// A user's machine: a home, a config with one oidc cluster and its identity provider, and the cache.
struct Workstation {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Workstation {
    fn new(env: &Env) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("app-config.yaml");
        std::fs::write(
            &config,
            format!(
                r#"kubernetes:
  clusterLocatorMethods:
    - type: config
      clusters:
        - name: oidc-dev
          url: {url}
          caData: {ca}
          authProvider: oidc
          oidcTokenProvider: testidp
kubeauth:
  login:
    oidc:
      testidp:
        issuer: {issuer}
        clientId: {CLIENT}
        caFile: {ca_file}
"#,
                url = env.cluster.url(),
                ca = env.cluster.ca().ca_data(),
                issuer = env.peer.issuer(),
                ca_file = env.peer.ca_file().display(),
            ),
        )
        .unwrap();
        Self { dir, config }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(self.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.path())
            .env("KUBEAUTH_CONFIG", &self.config)
            .env("KUBEAUTH_CACHE_DIR", self.path().join("cache"))
            .env("KUBECACHEDIR", self.path().join("kubecache"));
        command
    }

    fn kubeauth(&self, args: &[&str]) -> Output {
        self.command(Path::new(KUBEAUTH), args).output().expect("run kubeauth")
    }

    fn kubectl(&self, env: &Env, args: &[&str]) -> Output {
        let kubeconfig = self.path().join("kubeconfig");
        let mut all = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
        all.extend_from_slice(args);
        self.command(&env.cluster.binaries().kubectl, &all).output().expect("run kubectl")
    }

    /// Runs `kubeauth ARGS` that prompts, plays the user in the scripted browser as `user`, returns the output.
    async fn kubeauth_prompting(
        &self,
        env: &'static Env,
        args: &[&str],
        extra_env: &[(&str, &str)],
        user: &'static str,
    ) -> Output {
        let mut command = self.command(Path::new(KUBEAUTH), args);
        command.envs(extra_env.iter().copied());
        let mut child: Child =
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run kubeauth");
        // Read stderr to its end (the command must never block on a full pipe); hand over the URL when seen.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let url = line.trim().strip_prefix("kubeauth: or open ").unwrap_or(line.trim());
                if url.starts_with("https://") {
                    let _ = tx.send(url.to_owned());
                }
                lines.push(line);
            }
            lines
        });
        let url = tokio::task::spawn_blocking(move || rx.recv_timeout(std::time::Duration::from_secs(60)))
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("no login URL on stderr"));
        let page = if url.contains("/device") {
            env.peer.device_login(&url, user).await
        } else {
            env.peer.browser_login(&url, user).await
        };
        let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
        assert!(!page.is_empty());
        let lines = reader.join().unwrap();
        Output { status: output.status, stdout: output.stdout, stderr: lines.join("\n").into_bytes() }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const NON_INTERACTIVE: &str =
    r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#;
const INTERACTIVE: &str =
    r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":true}}"#;

#[tokio::test]
async fn after_login_kubectl_is_the_user_and_asks_the_issuer_nothing() {
    let env = env();
    env.cluster.grant("oidc-cli-alice", user("oidc:alice"), &["list"], &["namespaces"]).await;
    let ws = Workstation::new(env);

    let login = ws.kubeauth_prompting(env, &["login", "--cluster", "oidc-dev", "--no-browser"], &[], "alice").await;
    assert!(login.status.success(), "{}", stderr(&login));
    assert!(stdout(&login).starts_with("Logged in to oidc.testidp as alice@example.com;"), "{}", stdout(&login));
    assert!(stderr(&login).contains("open this URL in a browser"), "{}", stderr(&login));

    let kubeconfig = ws.path().join("kubeconfig");
    let out = ws.kubeauth(&["kubeconfig", "--output-file", kubeconfig.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&kubeconfig).unwrap().contains("interactiveMode: IfAvailable"));

    let before = env.peer.requests_from_kubeauth().len();
    let first = ws.kubectl(env, &["get", "namespaces", "-o", "name"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("namespace/default"), "{}", stdout(&first));
    let second = ws.kubectl(env, &["get", "namespaces", "-o", "name"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(env.peer.requests_from_kubeauth().len(), before, "no request to the issuer: the session is on disk");

    // The API server sees alice, who may list namespaces and nothing else.
    let pods = ws.kubectl(env, &["get", "pods", "-A"]);
    assert!(!pods.status.success());
    assert!(stderr(&pods).contains("\"oidc:alice\" cannot list resource \"pods\""), "{}", stderr(&pods));

    // The session file is the user's alone, and holds no secret in its name.
    use std::os::unix::fs::PermissionsExt as _;
    let sessions: Vec<_> =
        std::fs::read_dir(ws.path().join("cache/sessions")).unwrap().map(|e| e.unwrap().path()).collect();
    let session = sessions.iter().find(|p| p.extension().is_some_and(|e| e == "json")).expect("a session file");
    assert_eq!(std::fs::metadata(session).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(ws.path().join("cache/sessions")).unwrap().permissions().mode() & 0o777, 0o700);

    // kubeauth doctor checks the cluster as the logged-in user.
    let doctor = ws.kubeauth(&["doctor", "--cluster", "oidc-dev", "-o", "json"]);
    assert!(doctor.status.success(), "{}{}", stdout(&doctor), stderr(&doctor));
    let report: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(report[0]["ok"], true, "{report:#}");
    assert_eq!(report[0]["canListNamespaces"], true, "alice may list namespaces: {report:#}");

    // Logged out: kubectl cannot prompt here, so kubeauth says what to do, and kubectl fails.
    let out = ws.kubeauth(&["logout", "--cluster", "oidc-dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Logged out of oidc.testidp.\n");
    let after = ws.kubectl(env, &["get", "namespaces"]);
    assert!(!after.status.success());
    assert!(stderr(&after).contains("run `kubeauth login --cluster oidc-dev`"), "{}", stderr(&after));
    let doctor = ws.kubeauth(&["doctor", "--cluster", "oidc-dev", "-o", "json"]);
    assert_eq!(doctor.status.code(), Some(1));
    assert!(stdout(&doctor).contains("\"login\""), "{}", stdout(&doctor));
}

#[tokio::test]
async fn token_without_a_session_never_prompts_when_kubectl_says_so() {
    let env = env();
    let ws = Workstation::new(env);
    let mut command = ws.command(Path::new(KUBEAUTH), &["token", "--cluster", "oidc-dev"]);
    let out = command.env("KUBERNETES_EXEC_INFO", NON_INTERACTIVE).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "kubeauth: cluster 'oidc-dev': oidc.testidp: not logged in (no session); run `kubeauth login --cluster oidc-dev` (kubectl did not allow prompting here)\n"
    );
}

#[tokio::test]
async fn token_logs_in_with_the_device_flow_when_prompting_is_allowed() {
    let env = env();
    env.cluster.grant("oidc-cli-bob", user("oidc:bob"), &["list"], &["namespaces"]).await;
    let ws = Workstation::new(env);
    let out = ws
        .kubeauth_prompting(
            env,
            &["token", "--cluster", "oidc-dev", "--device"],
            &[("KUBERNETES_EXEC_INFO", INTERACTIVE), ("RUST_LOG", "trace")],
            "bob",
        )
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("enter the code"), "{}", stderr(&out));
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(credential["kind"], "ExecCredential");
    let token = credential["status"]["token"].as_str().unwrap();
    assert!(credential["status"]["expirationTimestamp"].as_str().is_some());
    // The printed token is bob's ID token, which the API server accepts.
    let mut cluster = env.cluster.cluster_details("check", "serviceAccount");
    cluster.service_account_token = Some(token.to_owned().into());
    let client = kubeauth::Connector::new(kubeauth::Registry::with_defaults())
        .kube_client(&cluster, &kubeauth::RequestAuth::none())
        .await
        .unwrap();
    let list = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client).list(&Default::default()).await;
    assert!(list.is_ok(), "{list:?}");

    // No token of the session was logged during the login at trace level.
    let sessions = ws.path().join("cache/sessions");
    let file = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    for key in ["idToken", "accessToken", "refreshToken"] {
        let secret = stored[key].as_str().unwrap_or_else(|| panic!("{key} stored"));
        assert!(!stderr(&out).contains(secret), "{key} is not logged");
    }
    assert!(stderr(&out).contains("TRACE"), "trace logging was on");

    // And the token is never in the log of a later call, even at trace level.
    let mut command = ws.command(Path::new(KUBEAUTH), &["token", "--cluster", "oidc-dev"]);
    let traced = command.env("KUBERNETES_EXEC_INFO", NON_INTERACTIVE).env("RUST_LOG", "trace").output().unwrap();
    assert!(traced.status.success(), "{}", stderr(&traced));
    assert!(!stderr(&traced).contains(token), "the token is not logged");
}

#[tokio::test]
async fn a_cluster_without_its_login_settings_is_a_config_error_naming_the_key() {
    let env = env();
    let ws = Workstation::new(env);
    let text =
        std::fs::read_to_string(&ws.config).unwrap().replace("oidcTokenProvider: testidp", "oidcTokenProvider: okta");
    std::fs::write(&ws.config, text).unwrap();
    let out = ws.kubeauth(&["login", "--cluster", "oidc-dev"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("kubeauth.login.oidc.okta"), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
}
