//! The `kubeconfig` locator and provider against the real API server, side by side with the real kubectl on the
//! same kubeconfig file: every context must give the identity kubectl gives.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kubeauth::{AppConfig, Kubeauth, ResolveContext};
use kubeauth_testkit::{TestCluster, user};

/// What a client observes of its identity: the namespace names, or the API server's refusal (which names the
/// user it saw).
async fn as_kubeauth(kubeauth: &Kubeauth, context: &str) -> Result<Vec<String>, String> {
    let clusters = kubeauth.clusters().await.map_err(|e| e.to_string())?;
    let cluster = clusters.iter().find(|c| c.name == context).ok_or_else(|| format!("no cluster {context}"))?;
    let client =
        kubeauth.kube_client(cluster, &kubeauth::RequestAuth::none()).await.map_err(|e| kubeauth::core::report(&e))?;
    super::namespaces(client).await.map_err(|e| kubeauth::core::report(&e))
}

/// The same with kubectl: `kubectl --kubeconfig F --context C get namespaces -o name`.
fn as_kubectl(env: &TestCluster, kubeconfig: &Path, context: &str) -> Result<Vec<String>, String> {
    let out = std::process::Command::new(&env.binaries().kubectl)
        .args(["--kubeconfig", &kubeconfig.display().to_string(), "--context", context])
        .args(["get", "namespaces", "-o", "name", "--request-timeout=20s"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kubectl runs");
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().map(|l| l.trim_start_matches("namespace/").to_owned()).collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn kubeauth_on(kubeconfig: &Path, contexts: Option<&[&str]>) -> Kubeauth {
    let contexts = contexts.map(|c| format!("\n      contexts: {c:?}")).unwrap_or_default();
    let config = AppConfig::from_yaml_str(
        &format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: kubeconfig\n      path: {}{contexts}\n",
            kubeconfig.display()
        ),
        None,
    )
    .expect("config");
    Kubeauth::from_config(&config, &ResolveContext::new(|_| None)).expect("kubeauth")
}

/// An exec plugin as a shell script: it keeps the `KUBERNETES_EXEC_INFO` it was given, counts its runs, and
/// answers with `$PLUGIN_TOKEN` until `expiry`.
fn write_plugin(dir: &Path, name: &str, expiry: SystemTime) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let expiry = jiff::Timestamp::try_from(expiry).unwrap().round(jiff::Unit::Second).unwrap();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$0.info\"\necho run >> \"$0.runs\"\n\
             printf '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\
             \"status\":{{\"token\":\"%s\",\"expirationTimestamp\":\"{expiry}\"}}}}' \"$PLUGIN_TOKEN\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn runs(plugin: &Path) -> usize {
    std::fs::read_to_string(plugin.with_extension("sh.runs")).map(|t| t.lines().count()).unwrap_or(0)
}

#[tokio::test]
async fn every_kind_of_kubeconfig_user_is_the_identity_kubectl_presents() {
    let env = TestCluster::shared();
    env.create_namespace("kc-visible").await;
    for sa in ["token-user", "file-user", "exec-user", "kubeauth-user"] {
        env.create_service_account("kc", sa).await;
    }
    // One identity may list namespaces; the others' refusals name who the API server saw.
    env.grant("kc-x509-lister", user("kubeconfig-x509"), &["list"], &["namespaces"]).await;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("creds")).unwrap();
    std::fs::write(d.join("creds/file-token"), env.service_account_token("kc", "file-user").await).unwrap();
    let x509 = env.client_ca().client_cert("kubeconfig-x509", &[]);
    std::fs::write(d.join("creds/x509.crt"), &x509.cert_pem).unwrap();
    std::fs::write(d.join("creds/x509.key"), &x509.key_pem).unwrap();
    let plugin = write_plugin(d, "plugin.sh", SystemTime::now() + Duration::from_secs(3600));
    // `kubeauth token` as the exec plugin, on a config of its own holding the service account's token.
    let inner = d.join("inner.yaml");
    std::fs::write(
        &inner,
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: inner\n          url: {}\n          caData: {}\n          authProvider: serviceAccount\n          serviceAccountToken: {}\n",
            env.url(),
            env.ca().ca_data(),
            env.service_account_token("kc", "kubeauth-user").await
        ),
    )
    .unwrap();
    let kubeauth_bin = env!("CARGO_BIN_EXE_kubeauth-under-test");
    let port = env.url().rsplit(':').next().unwrap();
    let kubeconfig = d.join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            r#"apiVersion: v1
kind: Config
current-context: token
clusters:
- name: envtest
  cluster:
    server: {url}
    certificate-authority-data: {ca}
- name: by-name
  cluster:
    server: https://127.0.0.1:{port}
    tls-server-name: kubernetes.kubeauth.test
    certificate-authority-data: {ca}
users:
- name: token
  user:
    token: {token}
- name: token-file
  user:
    tokenFile: creds/file-token
- name: x509
  user:
    client-certificate: creds/x509.crt
    client-key: creds/x509.key
- name: script
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: ./plugin.sh
      env:
      - name: PLUGIN_TOKEN
        value: {exec_token}
      interactiveMode: Never
      provideClusterInfo: true
- name: kubeauth
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: {kubeauth_bin}
      args: [token, --config, {inner}, --cluster, inner]
      env:
      - name: KUBEAUTH_CACHE_DIR
        value: {cache}
      interactiveMode: IfAvailable
contexts:
- {{name: token, context: {{cluster: envtest, user: token}}}}
- {{name: token-file, context: {{cluster: envtest, user: token-file}}}}
- {{name: x509, context: {{cluster: envtest, user: x509}}}}
- {{name: script, context: {{cluster: envtest, user: script}}}}
- {{name: kubeauth, context: {{cluster: envtest, user: kubeauth}}}}
- {{name: x509-by-name, context: {{cluster: by-name, user: x509}}}}
"#,
            url = env.url(),
            ca = env.ca().ca_data(),
            token = env.service_account_token("kc", "token-user").await,
            exec_token = env.service_account_token("kc", "exec-user").await,
            inner = inner.display(),
            cache = d.join("cache").display(),
        ),
    )
    .unwrap();

    let kubeauth = kubeauth_on(&kubeconfig, None);
    let clusters = kubeauth.clusters().await.unwrap();
    let providers: Vec<(&str, Option<&str>)> = clusters.iter().map(|c| (c.name.as_str(), c.auth_provider())).collect();
    assert_eq!(
        providers,
        [
            ("token", Some("serviceAccount")),
            ("token-file", Some("kubeconfig")),
            ("x509", Some("kubeconfig")),
            ("script", Some("kubeconfig")),
            ("kubeauth", Some("kubeconfig")),
            ("x509-by-name", Some("kubeconfig")),
        ]
    );

    let refused_as = |user: &str| format!("\"{user}\" cannot list resource \"namespaces\"");
    for (context, expected) in [
        ("token", Err(refused_as("system:serviceaccount:kc:token-user"))),
        ("token-file", Err(refused_as("system:serviceaccount:kc:file-user"))),
        ("x509", Ok("kc-visible")),
        ("script", Err(refused_as("system:serviceaccount:kc:exec-user"))),
        ("kubeauth", Err(refused_as("system:serviceaccount:kc:kubeauth-user"))),
        ("x509-by-name", Ok("kc-visible")),
    ] {
        let kubectl = as_kubectl(env, &kubeconfig, context);
        let ours = as_kubeauth(&kubeauth, context).await;
        for (who, answer) in [("kubectl", &kubectl), ("kubeauth", &ours)] {
            match (&expected, answer) {
                (Ok(namespace), Ok(names)) => {
                    assert!(names.iter().any(|n| n == namespace), "{who} on {context}: {names:?}");
                }
                (Err(refusal), Err(message)) => {
                    assert!(message.contains(refusal), "{who} on {context}: {message}");
                }
                _ => panic!("{who} on {context}: expected {expected:?}, got {answer:?}"),
            }
        }
    }

    // The plugin was told the cluster, as kubectl tells it; kubectl ran it once, kubeauth once for all its
    // requests (the answer is valid for an hour).
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plugin.with_extension("sh.info")).unwrap()).unwrap();
    assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], env.url());
    assert_eq!(info["spec"]["cluster"]["certificate-authority-data"], env.ca().ca_data());
    assert_eq!(runs(&plugin), 2, "one run by kubectl, one by kubeauth");
    for _ in 0..3 {
        let _ = as_kubeauth(&kubeauth, "script").await;
    }
    assert_eq!(runs(&plugin), 2, "kubeauth keeps the plugin's answer until it expires");
}

#[tokio::test]
async fn a_plugin_answer_about_to_expire_is_replaced_and_a_wrong_server_name_is_refused() {
    let env = TestCluster::shared();
    env.create_service_account("kc", "short-user").await;
    let dir = tempfile::tempdir().unwrap();
    // Its answer expires within the refresh margin: each credential runs the plugin again.
    let plugin = write_plugin(dir.path(), "plugin.sh", SystemTime::now() + Duration::from_secs(30));
    let port = env.url().rsplit(':').next().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "clusters:\n- name: envtest\n  cluster: {{server: '{url}', certificate-authority-data: {ca}}}\n\
             - name: wrong-name\n  cluster: {{server: 'https://127.0.0.1:{port}', tls-server-name: wrong.kubeauth.test, certificate-authority-data: {ca}}}\n\
             users:\n- name: short\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {plugin}\n      interactiveMode: Never\n      env: [{{name: PLUGIN_TOKEN, value: {token}}}]\n\
             contexts:\n- {{name: short, context: {{cluster: envtest, user: short}}}}\n- {{name: wrong-name, context: {{cluster: wrong-name, user: short}}}}\n",
            url = env.url(),
            ca = env.ca().ca_data(),
            plugin = plugin.display(),
            token = env.service_account_token("kc", "short-user").await,
        ),
    )
    .unwrap();
    let kubeauth = kubeauth_on(&kubeconfig, None);
    for _ in 0..3 {
        let before = runs(&plugin);
        let err = as_kubeauth(&kubeauth, "short").await.unwrap_err();
        assert!(err.contains("system:serviceaccount:kc:short-user"), "{err}");
        assert!(runs(&plugin) > before, "an answer inside the refresh margin is not kept");
    }

    // The certificate does not name `wrong.kubeauth.test`: both refuse the handshake.
    let ours = as_kubeauth(&kubeauth, "wrong-name").await.unwrap_err();
    assert!(ours.contains("wrong.kubeauth.test") || ours.contains("certificate"), "{ours}");
    let kubectl = as_kubectl(env, &kubeconfig, "wrong-name").unwrap_err();
    assert!(kubectl.contains("wrong.kubeauth.test"), "{kubectl}");
}

#[tokio::test]
async fn a_failing_plugin_is_that_clusters_error_and_names_the_plugin_never_the_output() {
    let env = TestCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "clusters:\n- name: envtest\n  cluster: {{server: '{url}', certificate-authority-data: {ca}}}\n\
             users:\n\
             - name: missing\n  user:\n    exec: {{apiVersion: client.authentication.k8s.io/v1, command: kubeauth-no-such-plugin, interactiveMode: Never, installHint: 'Install it with: brew install no-such-plugin'}}\n\
             - name: garbage\n  user:\n    exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, 'echo not-json-s3cret'], interactiveMode: Never}}\n\
             - name: typed\n  user:\n    exec: {{apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, 'printf \"{{\\\"apiVersion\\\":\\\"client.authentication.k8s.io/v1\\\",\\\"kind\\\":\\\"ExecCredential\\\",\\\"status\\\":{{\\\"token\\\":987654321}}}}\"'], interactiveMode: Never}}\n\
             - name: token\n  user: {{token: {token}}}\n\
             contexts:\n\
             - {{name: missing, context: {{cluster: envtest, user: missing}}}}\n\
             - {{name: garbage, context: {{cluster: envtest, user: garbage}}}}\n\
             - {{name: typed, context: {{cluster: envtest, user: typed}}}}\n\
             - {{name: fine, context: {{cluster: envtest, user: token}}}}\n",
            url = env.url(),
            ca = env.ca().ca_data(),
            token = env.admin_token(),
        ),
    )
    .unwrap();
    let kubeauth = kubeauth_on(&kubeconfig, None);
    let missing = as_kubeauth(&kubeauth, "missing").await.unwrap_err();
    assert!(missing.contains("cluster 'missing'"), "{missing}");
    assert!(missing.contains("exec plugin `kubeauth-no-such-plugin` of user `missing`"), "{missing}");
    assert!(missing.contains("brew install no-such-plugin"), "{missing}");
    let garbage = as_kubeauth(&kubeauth, "garbage").await.unwrap_err();
    assert!(garbage.contains("is not an ExecCredential"), "{garbage}");
    assert!(!garbage.contains("s3cret"), "{garbage}");
    // A value of the wrong type is not repeated either.
    let typed = as_kubeauth(&kubeauth, "typed").await.unwrap_err();
    assert!(typed.contains("no token and no client certificate"), "{typed}");
    assert!(!typed.contains("987654321"), "{typed}");
    // The other contexts are not taken down.
    assert!(as_kubeauth(&kubeauth, "fine").await.unwrap().contains(&"default".to_owned()));
}
