//! `kubeauth clusters`, `doctor`, `token`, `kubeconfig`, `schema` and `completions`, run as a user runs them,
//! against a real kube-apiserver and the real kubectl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kubeauth_testkit::{TestCluster, service_account};

const KUBEAUTH: &str = env!("CARGO_BIN_EXE_kubeauth-under-test");

struct Run<'a> {
    dir: &'a Path,
    env: Vec<(&'a str, String)>,
    /// Name the folder's `app-config.yaml` (when there is one) in `KUBEAUTH_CONFIG`.
    named: bool,
}

impl<'a> Run<'a> {
    fn new(dir: &'a Path) -> Self {
        Self { dir, env: vec![("KUBEAUTH_CACHE_DIR", dir.join("cache").display().to_string())], named: true }
    }

    /// Leaves the folder's `app-config.yaml` unnamed.
    fn unnamed(mut self) -> Self {
        self.named = false;
        self
    }

    fn env(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.env.push((name, value.into()));
        self
    }

    fn kubeauth(&self, args: &[&str]) -> Output {
        let mut command = Command::new(KUBEAUTH);
        command
            .args(args)
            .current_dir(self.dir)
            .env_remove("KUBEAUTH_CONFIG")
            .env_remove("KUBERNETES_EXEC_INFO")
            .env_remove("KUBECONFIG");
        if self.named && self.dir.join("app-config.yaml").is_file() {
            command.env("KUBEAUTH_CONFIG", "app-config.yaml");
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command.output().expect("run kubeauth")
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A config with a `good` cluster (a real token that may list namespaces and review tokens) and a `bad` one.
async fn good_and_bad(env: &TestCluster, dir: &Path) -> PathBuf {
    env.create_service_account("cli-e2e", "operator").await;
    env.grant("cli-e2e-operator", service_account("cli-e2e", "operator"), &["list", "get"], &["namespaces"]).await;
    env.bind("cli-e2e-operator-reviews", "system:auth-delegator", service_account("cli-e2e", "operator")).await;
    let token = env.service_account_token("cli-e2e", "operator").await;
    let cluster = |name: &str, token: &str| {
        format!(
            "        - name: {name}\n          url: {}\n          caData: {}\n          authProvider: serviceAccount\n          serviceAccountToken: {token}\n",
            env.url(),
            env.ca().ca_data()
        )
    };
    let file = dir.join("app-config.yaml");
    std::fs::write(
        &file,
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{}{}",
            cluster("good", &token),
            cluster("bad", "not-a-valid-token")
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn kubectl_uses_a_kubeconfig_from_kubeauth_kubeconfig() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = good_and_bad(env, dir.path()).await;
    let run = Run::new(dir.path());
    let kubeconfig = dir.path().join("kubeconfig");
    let out = run.kubeauth(&[
        "kubeconfig",
        "--config",
        config.to_str().unwrap(),
        "--output-file",
        kubeconfig.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(text.contains("client.authentication.k8s.io/v1") && text.contains("interactiveMode: Never"), "{text}");
    assert!(!text.contains("not-a-valid-token"), "no token is written into the kubeconfig");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777, 0o600);

    let kubectl = |context: &str| {
        Command::new(&env.binaries().kubectl)
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--context",
                context,
                "get",
                "namespaces",
                "-o",
                "name",
            ])
            .env("HOME", dir.path())
            .env("KUBECACHEDIR", dir.path().join("kubecache"))
            .env("KUBEAUTH_CACHE_DIR", dir.path().join("cache"))
            .output()
            .expect("run kubectl")
    };
    let good = kubectl("good");
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(stdout(&good).contains("namespace/kube-system"), "{}", stdout(&good));

    let bad = kubectl("bad");
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("Unauthorized"), "the API server's 401: {}", stderr(&bad));
}

/// `--merge`, as `aws eks update-kubeconfig` and `gcloud container clusters get-credentials`: into kubectl's own
/// file, entries of the same names replaced, the others kept, the current context the new one, a backup kept.
#[tokio::test]
async fn kubeconfig_merges_into_kubectls_own_file_with_a_backup() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = good_and_bad(env, dir.path()).await;
    std::fs::create_dir(dir.path().join(".kube")).unwrap();
    let before = "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other.example.com\n- name: good\n  cluster:\n    server: https://stale.example.com\nusers:\n- name: other-admin\n  user:\n    token: other-token\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other-admin\n    namespace: team-a\ncurrent-context: other\n";
    std::fs::write(dir.path().join(".kube/config"), before).unwrap();
    let run = Run::new(dir.path()).env("HOME", dir.path().display().to_string()).env("KUBECONFIG", "");
    let out = run.kubeauth(&["kubeconfig", "--merge", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("current context: good"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.path().join(".kube/config.kubeauth-backup")).unwrap(), before);

    let kubectl = |args: &[&str]| {
        let out = Command::new(&env.binaries().kubectl)
            .args(args)
            .env("HOME", dir.path())
            .env("KUBECONFIG", "")
            .env("KUBECACHEDIR", dir.path().join("kubecache"))
            .env("KUBEAUTH_CACHE_DIR", dir.path().join("cache"))
            .output()
            .expect("run kubectl");
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(kubectl(&["config", "get-contexts", "-o", "name"]), "bad\ngood\nother\n");
    assert_eq!(kubectl(&["config", "current-context"]), "good\n");
    assert!(kubectl(&["get", "namespaces", "-o", "name"]).contains("namespace/kube-system"));
    let merged = kubectl(&["config", "view", "-o", "jsonpath={.clusters[*].cluster.server}"]);
    assert!(merged.contains("https://other.example.com") && !merged.contains("stale"), "{merged}");
    assert_eq!(
        kubectl(&["config", "view", "-o", "jsonpath={.contexts[?(@.name==\"other\")].context.namespace}"]),
        "team-a"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(dir.path().join(".kube/config")).unwrap().permissions().mode() & 0o777, 0o600);
}

/// Shell completion offers the config's cluster names (as kubectl and gh complete theirs), from the config
/// alone: `source <(COMPLETE=bash kubeauth)`.
#[test]
fn the_shell_completes_cluster_names_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - {name: prod-eu, url: https://a.example.com, authProvider: serviceAccount}\n        - {name: prod-us, url: https://b.example.com, authProvider: serviceAccount}\n        - {name: dev, url: https://c.example.com, authProvider: serviceAccount}\n    - type: localKubectlProxy\n      namePrefix: laptop-\n",
    )
    .unwrap();
    let run = Run::new(dir.path()).env("COMPLETE", "fish");
    let out = run.kubeauth(&["--", "kubeauth", "token", "--cluster", "prod"]);
    assert_eq!(stdout(&out), "prod-eu\nprod-us\n", "{}", stderr(&out));
    let out = run.kubeauth(&["--", "kubeauth", "doctor", "--cluster", ""]);
    assert_eq!(stdout(&out), "prod-eu\nprod-us\ndev\nlaptop-local\n", "{}", stderr(&out));
    let script = Run::new(dir.path()).env("COMPLETE", "bash").kubeauth(&[]);
    assert!(
        stdout(&script).contains("complete -o nospace") || stdout(&script).contains("complete -F"),
        "{}",
        stdout(&script)
    );
}

#[tokio::test]
async fn doctor_reports_one_good_and_one_bad_cluster() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = good_and_bad(env, dir.path()).await;
    let run = Run::new(dir.path());

    let out = run.kubeauth(&["doctor", "--config", config.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "one cluster failed: {}", stderr(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let good = &reports[0];
    assert_eq!((good["cluster"].as_str(), good["ok"].as_bool()), (Some("good"), Some(true)), "{reports:#}");
    assert_eq!(good["credential"], "bearer token");
    assert_eq!(good["serverVersion"], "v1.20.2");
    assert_eq!(good["identity"], "system:serviceaccount:cli-e2e:operator");
    assert_eq!(good["canListNamespaces"], true);
    let bad = &reports[1];
    assert_eq!((bad["cluster"].as_str(), bad["ok"].as_bool()), (Some("bad"), Some(false)));
    assert_eq!(bad["failure"]["kind"], "unauthorized");
    assert!(bad["failure"]["hint"].as_str().unwrap().contains("does not accept this identity"));

    let table = run.kubeauth(&["doctor", "--config", config.to_str().unwrap()]);
    assert_eq!(table.status.code(), Some(1));
    let text = stdout(&table);
    let line = |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
    assert!(line("good").contains("reachable (v1.20.2)") && line("good").ends_with("ok"), "{text}");
    assert!(line("bad").ends_with("FAILED (unauthorized)"), "{text}");
    assert!(text.contains("bad (unauthorized): 401"), "{text}");
    assert!(!text.contains("not-a-valid-token"), "{text}");

    let only = run.kubeauth(&["doctor", "--config", config.to_str().unwrap(), "--cluster", "good"]);
    assert_eq!(only.status.code(), Some(0), "{}", stdout(&only));
}

#[tokio::test]
async fn token_prints_an_exec_credential_in_the_asked_version() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = good_and_bad(env, dir.path()).await;
    let run = Run::new(dir.path()).env(
        "KUBERNETES_EXEC_INFO",
        r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false}}"#,
    );
    let out = run.kubeauth(&["token", "--cluster", "bad", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let credential: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(credential["apiVersion"], "client.authentication.k8s.io/v1beta1");
    assert_eq!(credential["kind"], "ExecCredential");
    assert_eq!(credential["status"]["token"], "not-a-valid-token");
    assert!(stderr(&out).is_empty(), "nothing on stderr: {}", stderr(&out));
}

fn config_file(dir: &Path, clusters: &str) -> PathBuf {
    let file = dir.join("app-config.yaml");
    std::fs::write(
        &file,
        format!("kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{clusters}"),
    )
    .unwrap();
    file
}

const ONE: &str = "        - name: one\n          url: https://10.0.0.1\n          authProvider: serviceAccount\n          serviceAccountToken: t0k3n-value\n";

#[test]
fn token_bad_inputs_have_exact_exit_codes_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    config_file(dir.path(), ONE);
    let cases: [(&str, &[&str], i32, &str); 5] = [
        ("", &["token", "--cluster", "nope"], 2, "kubeauth: no cluster named 'nope' (located: one)\n"),
        (
            "{",
            &["token", "--cluster", "one"],
            2,
            "kubeauth: KUBERNETES_EXEC_INFO is not JSON: EOF while parsing an object at line 1 column 1\n",
        ),
        (
            r#"{"kind":"ExecCredential"}"#,
            &["token", "--cluster", "one"],
            2,
            "kubeauth: KUBERNETES_EXEC_INFO has no apiVersion\n",
        ),
        (
            r#"{"apiVersion":"client.authentication.k8s.io/v1alpha1","kind":"ExecCredential"}"#,
            &["token", "--cluster", "one"],
            2,
            "kubeauth: KUBERNETES_EXEC_INFO asks for apiVersion client.authentication.k8s.io/v1alpha1; supported: client.authentication.k8s.io/v1, client.authentication.k8s.io/v1beta1\n",
        ),
        (
            r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{}}"#,
            &["token", "--cluster", "one"],
            2,
            "kubeauth: KUBERNETES_EXEC_INFO (v1) has no spec.interactive\n",
        ),
    ];
    for (info, args, code, message) in cases {
        let out = Run::new(dir.path()).env("KUBERNETES_EXEC_INFO", info).kubeauth(args);
        assert_eq!(out.status.code(), Some(code), "{info}: {}", stderr(&out));
        assert_eq!(stderr(&out), message, "{info}");
        assert!(out.stdout.is_empty());
    }
    let out = Run::new(dir.path()).kubeauth(&["token"]);
    assert_eq!(out.status.code(), Some(2), "a missing --cluster is a usage error");
}

#[test]
fn token_for_local_kubectl_proxy_is_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Run::new(dir.path()).kubeauth(&["token", "--cluster", "local"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cluster 'local': its provider gives no credential (localKubectlProxy)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn clusters_lists_every_cluster_with_its_problems() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            "{ONE}        - name: two\n          title: Second\n          url: https://10.0.0.2\n          authProvider: oidc\n          skipTLSVerify: true\n"
        ),
    );
    let run = Run::new(dir.path());
    let out = run.kubeauth(&["clusters", "-o", "json", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a cluster with a configuration problem: {}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "one");
    assert_eq!(rows[0]["tls"], "system roots");
    assert_eq!(rows[0]["errors"], serde_json::json!([]));
    assert_eq!(rows[1]["title"], "Second");
    assert_eq!(rows[1]["tls"], "skip verify");
    assert!(rows[1]["errors"][0].as_str().unwrap().starts_with("oidcTokenProvider: missing"), "{rows:#}");
    assert!(!stdout(&out).contains("t0k3n-value"), "no secret in the listing");

    let table = run.kubeauth(&["clusters", "--config", config.to_str().unwrap()]);
    let text = stdout(&table);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("one") && l.ends_with("ok")), "{text}");

    // The same rows as YAML, and the names alone, as kubectl's `-o yaml` and `-o name`.
    let yaml = run.kubeauth(&["clusters", "-o", "yaml", "--config", config.to_str().unwrap()]);
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&stdout(&yaml)).unwrap();
    assert_eq!(from_yaml, rows);
    let names = run.kubeauth(&["clusters", "-o", "name", "--config", config.to_str().unwrap()]);
    assert_eq!(stdout(&names), "one\ntwo\n");
}

#[test]
fn the_config_comes_from_the_flag_or_the_variable_never_unasked_from_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded default: the localKubectlProxy cluster.
    let out = Run::new(dir.path()).kubeauth(&["clusters", "-o", "json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["name"], "local");
    // A ./app-config.yaml (a cloned repository's, say) is not read unless named.
    config_file(dir.path(), ONE);
    let out = Run::new(dir.path()).unnamed().env("RUST_LOG", "info").kubeauth(&["clusters", "-o", "json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["name"], "local");
    assert!(stderr(&out).contains("./app-config.yaml is not read unless named"), "{}", stderr(&out));
    let out = Run::new(dir.path()).unnamed().kubeauth(&["clusters", "-o", "json", "--config", "app-config.yaml"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["name"], "one");
    // KUBEAUTH_CONFIG names it too.
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "kubernetes:\n  clusterLocatorMethods:\n    - type: localKubectlProxy\n").unwrap();
    let out =
        Run::new(dir.path()).env("KUBEAUTH_CONFIG", other.display().to_string()).kubeauth(&["clusters", "-o", "json"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["name"], "local");
}

#[test]
fn a_malformed_config_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app-config.yaml"), "kubernetes:\n  clusterLocatorMethods: [\n").unwrap();
    let out = Run::new(dir.path()).kubeauth(&["clusters"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("kubeauth: "), "{}", stderr(&out));
    assert!(stderr(&out).contains("app-config.yaml: line 2, column"), "{}", stderr(&out));
}

#[test]
fn schema_prints_the_committed_json_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = Run::new(dir.path()).kubeauth(&["schema"]);
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.schema.json")).unwrap();
    assert_eq!(stdout(&out), committed);
}

#[test]
fn completions_and_help_exist_for_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = Run::new(dir.path()).kubeauth(&["completions", "bash"]);
    assert!(out.status.success() && stdout(&out).contains("kubeauth"));
    for sub in ["clusters", "can-i", "doctor", "token", "kubeconfig", "serve", "schema", "completions"] {
        let help = Run::new(dir.path()).kubeauth(&[sub, "--help"]);
        assert!(help.status.success() && stdout(&help).contains("Usage: kubeauth"), "{sub}");
    }
}

#[tokio::test]
async fn no_token_reaches_the_output_of_doctor_even_at_trace_level() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = good_and_bad(env, dir.path()).await;
    let good_token = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("serviceAccountToken: "))
        .unwrap()
        .to_owned();
    let out = Run::new(dir.path()).env("RUST_LOG", "trace").kubeauth(&["doctor", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let everything = format!("{}{}", stdout(&out), stderr(&out));
    assert!(everything.lines().count() > 50, "trace logs were written");
    for secret in [good_token.as_str(), "not-a-valid-token"] {
        if let Some(line) = everything.lines().find(|l| l.contains(secret)) {
            panic!("a token is in the output: {}", line.chars().take(200).collect::<String>());
        }
    }
}

#[test]
fn unknown_keys_are_warnings_and_doctor_strict_fails_on_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: dev\n          url: https://dev.example.com\n          authProvider: serviceAccount\n          serviceAccountToken: t\n          skipTlsVerify: true\n          fromANewerBackstage: 1\n",
    )
    .unwrap();
    let run = Run::new(dir.path());
    // Read and used, with a warning naming each key (and the key it looks like).
    let clusters = run.kubeauth(&["clusters", "-o", "json"]);
    assert!(clusters.status.success(), "{}", stderr(&clusters));
    assert!(stdout(&clusters).contains("\"dev\""), "{}", stdout(&clusters));
    let warned = stderr(&clusters);
    assert!(
        warned.contains("kubernetes.clusterLocatorMethods[0].clusters[0].skipTlsVerify: not a key kubeauth reads; ignored (did you mean `skipTLSVerify`?)"),
        "{warned}"
    );
    assert!(warned.contains("clusters[0].fromANewerBackstage"), "{warned}");
    // --quiet: the answer, no warnings.
    let quiet = run.kubeauth(&["clusters", "-o", "name", "--quiet"]);
    assert_eq!((stdout(&quiet).as_str(), stderr(&quiet).as_str()), ("dev\n", ""));
    // A check for CI refuses them.
    let strict = run.kubeauth(&["doctor", "--strict"]);
    assert_eq!(strict.status.code(), Some(2), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("holds keys kubeauth does not read (--strict)"), "{}", stderr(&strict));
    assert!(stderr(&strict).contains("skipTlsVerify"), "{}", stderr(&strict));
}

#[test]
fn several_configs_merge_as_backstage_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = |name: &str| {
        format!(
            "        - {{name: {name}, url: https://{name}.example.com, authProvider: serviceAccount, serviceAccountToken: t}}\n"
        )
    };
    std::fs::write(
        dir.path().join("app-config.yaml"),
        format!("kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{}", cluster("dev")),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("app-config.production.yaml"),
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{}{}",
            cluster("prod-eu"),
            cluster("prod-us")
        ),
    )
    .unwrap();
    let names = |out: &Output| -> Vec<String> {
        assert!(out.status.success(), "{}", stderr(out));
        let clusters: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        clusters.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
    };
    let run = Run::new(dir.path()).unnamed();
    // The later file's list replaces the earlier one, by flag or by variable.
    let flags = run.kubeauth(&[
        "--config",
        "app-config.yaml",
        "--config",
        "app-config.production.yaml",
        "clusters",
        "-o",
        "json",
    ]);
    assert_eq!(names(&flags), ["prod-eu", "prod-us"]);
    let listed = Run::new(dir.path())
        .unnamed()
        .env("KUBEAUTH_CONFIG", "app-config.yaml:app-config.production.yaml")
        .kubeauth(&["clusters", "-o", "json"]);
    assert_eq!(names(&listed), ["prod-eu", "prod-us"]);
    // APP_CONFIG_ variables go over the files.
    let overridden = Run::new(dir.path())
        .unnamed()
        .env("APP_CONFIG_kubernetes_clusterLocatorMethods", r#"[{"type": "localKubectlProxy"}]"#)
        .kubeauth(&["--config", "app-config.yaml", "clusters", "-o", "json"]);
    assert_eq!(names(&overridden), ["local"]);
    // A kubeconfig's exec plugin reads the same files.
    let kubeconfig =
        run.kubeauth(&["--config", "app-config.yaml", "--config", "app-config.production.yaml", "kubeconfig"]);
    assert!(kubeconfig.status.success(), "{}", stderr(&kubeconfig));
    let text = stdout(&kubeconfig);
    assert!(text.contains("app-config.yaml") && text.contains("app-config.production.yaml"), "{text}");
}

/// `HTTPS_PROXY` and `NO_PROXY`, as curl and kubectl read them: the API server's name here resolves nowhere, so
/// only the proxy (which maps it) reaches it; `NO_PROXY` sends the connection direct, where the name fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_proxy_carries_the_connections_unless_no_proxy_says_otherwise() {
    use kubeauth_testkit::forward::ConnectProxy;
    let env = TestCluster::shared();
    let proxy = ConnectProxy::start(None, &[("kubernetes.kubeauth.test", "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let port = env.url().rsplit(':').next().unwrap().to_owned();
    let config = config_file(
        dir.path(),
        &format!(
            "        - name: behind-proxy\n          url: https://kubernetes.kubeauth.test:{port}\n          caData: {}\n          authProvider: serviceAccount\n          serviceAccountToken: {}\n",
            env.ca().ca_data(),
            env.admin_token()
        ),
    );
    let doctor = |no_proxy: &str| {
        let run = Run::new(dir.path()).env("HTTPS_PROXY", proxy.url()).env("NO_PROXY", no_proxy);
        run.kubeauth(&["doctor", "-o", "json", "--config", config.to_str().unwrap()])
    };
    // The proxy runs on this test's runtime: the command blocks one worker, the proxy has the other.
    let out = doctor("");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["ok"], true, "{report:#}{}", stderr(&out));
    assert_eq!(report[0]["viaProxy"], proxy.url(), "doctor says which proxy: {report:#}");
    assert_eq!(proxy.tunnels().first().map(String::as_str), Some(format!("kubernetes.kubeauth.test:{port}").as_str()));

    let before = proxy.tunnels().len();
    let out = doctor(".kubeauth.test");
    assert_eq!(out.status.code(), Some(1), "direct, the name does not resolve: {}", stdout(&out));
    assert_eq!(proxy.tunnels().len(), before, "NO_PROXY: no tunnel");
}

#[tokio::test]
async fn doctor_checks_the_contexts_of_kubectls_own_kubeconfig_and_says_where_each_came_from() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let token = {
        let config = good_and_bad(env, dir.path()).await;
        std::fs::remove_file(config).unwrap();
        env.service_account_token("cli-e2e", "operator").await
    };
    env.grant("cli-e2e-x509", kubeauth_testkit::user("cli-kubeconfig-x509"), &["list"], &["namespaces"]).await;
    let x509 = env.client_ca().client_cert("cli-kubeconfig-x509", &[]);
    let b64 = |pem: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(pem)
    };
    // No KUBECONFIG: kubectl's default file under $HOME, as kubectl reads it.
    std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
    std::fs::write(
        dir.path().join(".kube/config"),
        format!(
            "clusters:\n- name: envtest\n  cluster: {{server: '{url}', certificate-authority-data: {ca}}}\n\
             users:\n- name: operator\n  user: {{token: {token}}}\n\
             - name: cert\n  user: {{client-certificate-data: {cert}, client-key-data: {key}}}\n\
             - name: basic\n  user: {{username: admin, password: hunter2}}\n\
             contexts:\n- {{name: operator, context: {{cluster: envtest, user: operator}}}}\n\
             - {{name: cert, context: {{cluster: envtest, user: cert}}}}\n\
             - {{name: basic, context: {{cluster: envtest, user: basic}}}}\n",
            url = env.url(),
            ca = env.ca().ca_data(),
            cert = b64(&x509.cert_pem),
            key = b64(&x509.key_pem),
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        "kubernetes:\n  clusterLocatorMethods:\n    - type: kubeconfig\n",
    )
    .unwrap();
    let run = Run::new(dir.path()).env("HOME", dir.path().display().to_string());

    let out = run.kubeauth(&["doctor", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = reports.as_array().unwrap().iter().map(|r| r["cluster"].as_str().unwrap()).collect();
    assert_eq!(names, ["operator", "cert"], "the basic-auth context is skipped: {reports:#}");
    let kubeconfig = dir.path().join(".kube/config");
    for report in reports.as_array().unwrap() {
        let context = report["cluster"].as_str().unwrap();
        let source = report["source"].as_str().unwrap();
        assert!(
            source.contains(&kubeconfig.display().to_string()) && source.ends_with(&format!("context {context}")),
            "{source}"
        );
    }
    assert_eq!(reports[0]["authProvider"], "serviceAccount");
    assert_eq!(reports[0]["identity"], "system:serviceaccount:cli-e2e:operator");
    assert_eq!(reports[1]["authProvider"], "kubeconfig");
    assert_eq!(reports[1]["credential"], "x509 client certificate");
    assert_eq!(reports[1]["canListNamespaces"], true);
    let warnings = stderr(&out);
    assert!(
        warnings.contains("context `basic`") && warnings.contains("basic authentication is not supported"),
        "{warnings}"
    );
    assert!(!warnings.contains("hunter2") && !stdout(&out).contains(&token), "no secret in the output");
}

#[tokio::test]
async fn kubectl_gets_a_pinniped_certificate_from_kubeauth_token_and_doctor_reports_it() {
    use kubeauth_testkit::concierge::ConciergeStandIn;
    let env = TestCluster::shared();
    env.grant("cli-pinniped-robot", kubeauth_testkit::user("pinniped:robot"), &["list"], &["namespaces"]).await;
    let concierge =
        ConciergeStandIn::for_cluster(env, ("WebhookAuthenticator", "robots"), &[("robot-upstream", "robot")]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: robots\n          url: {}\n          caData: {}\n          authProvider: pinnipedServer\n          serviceAccountToken: robot-upstream\n          authMetadata:\n            kubernetes.io/pinniped-authenticator: WebhookAuthenticator/robots\n            kubernetes.io/pinniped-concierge-endpoint: {}\n            kubernetes.io/pinniped-concierge-ca-data: {}\n",
            env.url(),
            env.ca().ca_data(),
            concierge.url(),
            concierge.ca_data()
        ),
    )
    .unwrap();
    let run = Run::new(dir.path());

    // kubectl runs `kubeauth token` as its exec plugin and presents the certificate it prints.
    let config = dir.path().join("app-config.yaml");
    let cache = dir.path().join("cache");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        env.kubeconfig_with_user(&format!(
            "exec:\n  apiVersion: client.authentication.k8s.io/v1\n  command: {KUBEAUTH}\n  args: [token, --config, {}, --cluster, robots]\n  env: [{{name: KUBEAUTH_CACHE_DIR, value: {}}}]\n  interactiveMode: Never",
            config.display(),
            cache.display()
        )),
    )
    .unwrap();
    let kubectl = |args: &[&str]| {
        Command::new(&env.binaries().kubectl).arg("--kubeconfig").arg(&kubeconfig).args(args).output().unwrap()
    };
    let out = kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).lines().any(|l| l == "namespace/default"), "{}", stdout(&out));
    let out = kubectl(&["get", "pods", "-A"]);
    assert!(stderr(&out).contains("User \"pinniped:robot\" cannot list resource \"pods\""), "{}", stderr(&out));
    assert_eq!(concierge.exchanges(), 1, "the certificate is kept in kubeauth's cache between kubectl runs");

    let out = run.kubeauth(&["doctor", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reports[0]["authProvider"], "pinnipedServer");
    assert_eq!(reports[0]["credential"], "x509 client certificate");
    assert!(reports[0]["expiresAt"].as_str().is_some_and(|at| at.ends_with('Z')), "{reports:#}");
    assert_eq!(reports[0]["canListNamespaces"], true);
    assert!(!stdout(&out).contains("robot-upstream") && !stderr(&out).contains("robot-upstream"));
}
