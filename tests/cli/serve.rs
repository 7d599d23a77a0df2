//! `kubeauth serve`, the binary, as a user runs it.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kubeauth_testkit::{Supervised, TestCluster, free_port, http};

const KUBEAUTH: &str = env!("CARGO_BIN_EXE_kubeauth-under-test");

/// `kubeauth ARGS` in `dir`, with the folder's `app-config.yaml` if there is one; its output once it exits.
fn kubeauth(dir: &Path, args: &[&str]) -> Output {
    in_folder(Command::new(KUBEAUTH).args(args), dir).output().expect("run kubeauth")
}

/// `command` run in `dir`, naming the folder's `app-config.yaml` when there is one (it is not read unasked).
fn in_folder<'a>(command: &'a mut Command, dir: &Path) -> &'a mut Command {
    command.current_dir(dir).env_remove("KUBEAUTH_CONFIG");
    if dir.join("app-config.yaml").is_file() {
        command.env("KUBEAUTH_CONFIG", "app-config.yaml");
    }
    command
}

/// A running `kubeauth serve`, killed on drop.
struct Serving {
    child: Child,
    addr: String,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(dir: &Path, extra: &[&str]) -> Serving {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = in_folder(Command::new(KUBEAUTH).args(["serve", "--listen", &addr]).args(extra), dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubeauth serve");
    let mut serving = Serving { child, addr };
    let started = Instant::now();
    while http::get(&serving.addr, "/healthz", &[]).await.is_err() {
        if let Ok(Some(status)) = serving.child.try_wait() {
            panic!("kubeauth serve exited with {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(20), "kubeauth serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serving
}

#[tokio::test]
async fn the_embedded_default_serves_the_cluster_behind_kubectl_proxy() {
    let env = TestCluster::shared();
    // kubectl proxy on its default port, as a user starts it.
    let scratch = tempfile::tempdir().unwrap().keep();
    std::fs::write(scratch.join("kubeconfig"), env.kubeconfig_with_token(env.admin_token())).unwrap();
    let _proxy = Supervised::start(
        "kubectl proxy",
        &env.binaries().kubectl,
        &["proxy".into(), format!("--kubeconfig={}", scratch.join("kubeconfig").display())],
        &scratch.join("proxy.log"),
        Some(&scratch),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:8001").is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "kubectl proxy did not listen on 8001");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cwd = tempfile::tempdir().unwrap();
    let server = serve(cwd.path(), &[]).await;
    let clusters = http::get(&server.addr, "/api/kubernetes/clusters", &[]).await.unwrap();
    assert_eq!(clusters.status, 200);
    assert_eq!(clusters.json(), serde_json::json!({"items": [{"name": "local", "authProvider": "localKubectlProxy"}]}));

    let namespaces = http::get(
        &server.addr,
        "/api/kubernetes/proxy/api/v1/namespaces",
        &[("Backstage-Kubernetes-Cluster", "local")],
    )
    .await
    .unwrap();
    assert_eq!(namespaces.status, 200, "{}", namespaces.text());
    let names: Vec<String> = namespaces.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"kube-system".to_owned()), "{names:?}");

    let unknown =
        http::get(&server.addr, "/api/kubernetes/proxy/api/v1/namespaces", &[("Backstage-Kubernetes-Cluster", "nope")])
            .await
            .unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["message"], "Cluster 'nope' not found");
}

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    let cwd = tempfile::tempdir().unwrap();
    let mut server = serve(cwd.path(), &[]).await;
    Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_config_error_exits_2_and_names_the_file_line_cluster_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: prod\n          authProvider: serviceAccount\n          serviceAccountToken: t\n",
    )
    .unwrap();
    let out = kubeauth(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "kubeauth: app-config.yaml: clusterLocatorMethods[0] (config), cluster 'prod' (line 5): url: missing"
        ),
        "{stderr}"
    );
}

#[test]
fn an_unknown_auth_provider_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clusters.yaml");
    std::fs::write(
        &file,
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: prod\n          url: https://10.0.0.1\n          authProvider: kerberos\n",
    )
    .unwrap();
    let out = kubeauth(dir.path(), &["serve", "--config", file.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid cluster 'prod': authProvider: \"kerberos\" has no authentication provider"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeauth(dir.path(), &["serve", "--config", "absent.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file `absent.yaml`"));
}

#[test]
fn listening_beyond_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = kubeauth(dir.path(), &["serve", "--listen", "0.0.0.0:7007"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("kubeauth.server.auth.bearerTokens: required to listen on 0.0.0.0:7007, a non-loopback address"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A token that is too short is refused before anything starts.
    std::fs::write(
        dir.path().join("app-config.yaml"),
        "kubeauth:\n  server:\n    auth:\n      bearerTokens: [short]\n",
    )
    .unwrap();
    let out = kubeauth(dir.path(), &["serve", "--listen", "0.0.0.0:7007"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kubeauth.server.auth.bearerTokens[0]: too short"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn with_api_tokens_callers_must_present_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        "kubernetes:\n  clusterLocatorMethods:\n    - type: localKubectlProxy\nkubeauth:\n  server:\n    auth:\n      bearerTokens:\n        - ${API_TOKEN_ONE}\n        - second-token-0123456789\n",
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(KUBEAUTH)
        .args(["serve", "--listen", &addr])
        .current_dir(dir.path())
        .env("KUBEAUTH_CONFIG", "app-config.yaml")
        .env("API_TOKEN_ONE", "first-token-0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serving = Serving { child, addr };
    let started = Instant::now();
    while http::get(&serving.addr, "/healthz", &[]).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "kubeauth serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let get = |auth: Option<&'static str>| {
        let addr = serving.addr.clone();
        async move {
            let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
            http::get(&addr, "/api/kubernetes/clusters", &headers).await.unwrap()
        }
    };
    let none = get(None).await;
    assert_eq!(none.status, 401, "{}", none.text());
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert!(none.text().contains("kubeauth.server.auth"), "{}", none.text());
    assert_eq!(get(Some("Bearer wrong-token-0123456789")).await.status, 401);
    let first = get(Some("Bearer first-token-0123456789")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["items"][0]["name"], "local");
    assert_eq!(get(Some("Bearer second-token-0123456789")).await.status, 200);
    // Health and readiness stay open for probes.
    assert_eq!(http::get(&serving.addr, "/healthz", &[]).await.unwrap().status, 200);
    // The proxy is behind the same check.
    let proxied = http::get(&serving.addr, "/api/kubernetes/proxy/api/v1/namespaces", &[]).await.unwrap();
    assert_eq!(proxied.status, 401);
}

#[test]
fn usage_errors_exit_2_and_every_subcommand_has_help() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(kubeauth(dir.path(), &["serve", "--listen", "not-an-address"]).status.code(), Some(2));
    let help = kubeauth(dir.path(), &["serve", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--listen"));
}

#[test]
fn an_unknown_service_locator_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        "kubernetes:\n  serviceLocatorMethod:\n    type: everywhere\n  clusterLocatorMethods:\n    - type: localKubectlProxy\n",
    )
    .unwrap();
    let out = kubeauth(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "kubernetes.serviceLocatorMethod.type: `everywhere` is not multiTenant, singleTenant or catalogRelation"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn no_token_reaches_the_servers_logs_or_answers_at_trace_level() {
    let env = TestCluster::shared();
    env.create_service_account("serve-trace", "reader").await;
    env.grant(
        "serve-trace-reader",
        kubeauth_testkit::service_account("serve-trace", "reader"),
        &["list"],
        &["namespaces"],
    )
    .await;
    let user_token = env.service_account_token("serve-trace", "reader").await;
    let dir = tempfile::tempdir().unwrap();
    let cluster = |name: &str, auth: &str| {
        format!(
            "        - name: {name}\n          url: {}\n          caData: {}\n{auth}",
            env.url(),
            env.ca().ca_data()
        )
    };
    std::fs::write(
        dir.path().join("app-config.yaml"),
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n{}{}",
            cluster("user", "          authProvider: oidc\n          oidcTokenProvider: okta\n"),
            cluster(
                "app",
                &format!(
                    "          authProvider: serviceAccount\n          serviceAccountToken: {}\n",
                    env.admin_token()
                )
            ),
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = Command::new(KUBEAUTH)
        .args(["serve", "--listen", &addr])
        .current_dir(dir.path())
        .env("KUBEAUTH_CONFIG", "app-config.yaml")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let server = Serving { child, addr };
    let started = Instant::now();
    while http::get(&server.addr, "/healthz", &[]).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "kubeauth serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answers = String::new();
    for (cluster, headers) in [
        ("user", vec![("Backstage-Kubernetes-Authorization-oidc-okta", user_token.as_str())]),
        ("user", vec![("Backstage-Kubernetes-Authorization-oidc-okta", "not-a-valid-user-token")]),
        ("app", vec![("Authorization", "Bearer callers-own-secret-token")]),
        ("missing", vec![]),
    ] {
        let mut all = headers.clone();
        all.push(("Backstage-Kubernetes-Cluster", cluster));
        let answer = http::get(&server.addr, "/api/kubernetes/proxy/api/v1/namespaces", &all).await.unwrap();
        answers.push_str(&answer.text());
    }
    drop(server);
    let logs = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(logs.lines().count() > 20, "trace logs were written");
    for secret in [user_token.as_str(), "not-a-valid-user-token", "callers-own-secret-token", env.admin_token()] {
        for (what, text) in [("logs", &logs), ("answers", &answers)] {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("a token is in the {what}: {}", line.chars().take(200).collect::<String>());
            }
        }
    }
}

#[test]
fn catalog_entities_that_break_the_rules_are_skipped_and_logged() {
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    let entity = kubeauth_testkit::catalog::FakeCatalog::cluster_entity;
    catalog.add(entity(
        "sneaky",
        &[("kubernetes.io/api-server", "https://127.0.0.1:2379"), ("kubernetes.io/auth-provider", "google")],
    ));
    catalog.add(entity(
        "public",
        &[("kubernetes.io/api-server", "https://35.200.10.1"), ("kubernetes.io/auth-provider", "google")],
    ));
    // The server's own AWS credential, for a URL the operator did not allow.
    catalog.add(entity(
        "steered",
        &[
            ("kubernetes.io/api-server", "https://35.200.10.2"),
            ("kubernetes.io/auth-provider", "aws"),
            ("kubernetes.io/x-k8s-aws-id", "prod-eks"),
        ],
    ));
    // The server's own kubeconfig credential, asked for by annotations: the catalog passes none of them, so the
    // kubeconfig provider has no user to read even at a URL allowed for server-side providers.
    catalog.add(entity(
        "borrowed",
        &[
            ("kubernetes.io/api-server", "https://35.200.10.5"),
            ("kubernetes.io/auth-provider", "kubeconfig"),
            ("kubeauth.io/kubeconfig-file", "/etc/kubernetes/admin.conf"),
            ("kubeauth.io/kubeconfig-user", "kubernetes-admin"),
        ],
    ));
    catalog.add(entity(
        "unknown",
        &[("kubernetes.io/api-server", "https://35.200.10.3"), ("kubernetes.io/auth-provider", "vault")],
    ));
    // A name a config cluster has: the config's stays.
    catalog.add(entity(
        "prod",
        &[("kubernetes.io/api-server", "https://35.200.10.4"), ("kubernetes.io/auth-provider", "google")],
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("app-config.yaml");
    std::fs::write(
        &config,
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - {{name: prod, url: 'https://35.200.10.9', authProvider: google}}\n    - type: catalog\n      dangerouslyAllowServerSideProviders: ['https://35.200.10.5']\nkubeauth:\n  catalog:\n    baseUrl: {}\n    token: ${{CATALOG_TOKEN}}\n",
            catalog.url()
        ),
    )
    .unwrap();
    let out = Command::new(KUBEAUTH)
        .args(["clusters", "-o", "json", "--config"])
        .arg(&config)
        .env_remove("KUBEAUTH_CONFIG")
        .env("CATALOG_TOKEN", catalog.token())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<(&str, &str)> =
        listed.as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c["url"].as_str().unwrap())).collect();
    assert_eq!(names, [("prod", "https://35.200.10.9"), ("public", "https://35.200.10.1")], "{stdout}");
    for (entity, reason) in [
        ("resource:default/sneaky", "non-public address 127.0.0.1"),
        ("resource:default/steered", "allow that URL with dangerouslyAllowServerSideProviders"),
        ("resource:default/unknown", "\"vault\" has no authentication provider registered"),
        ("resource:default/borrowed", "serves the clusters of a kubeconfig locator only"),
    ] {
        let line =
            stderr.lines().find(|l| l.contains(entity)).unwrap_or_else(|| panic!("{entity} not logged: {stderr}"));
        assert!(line.contains("skipped a cluster entity of the catalog") && line.contains(reason), "{line}");
    }
    assert!(stderr.contains("two clusters of the same name; keeping the first"), "{stderr}");
    assert!(!stderr.contains(catalog.token()), "{stderr}");
}

#[tokio::test]
async fn serve_resolves_entity_references_in_the_configured_catalog() {
    let catalog = kubeauth_testkit::catalog::FakeCatalog::start("catalog-token-0123456789");
    catalog.add(serde_json::json!({
        "apiVersion": "backstage.io/v1alpha1", "kind": "Component",
        "metadata": {"name": "checkout", "namespace": "default", "annotations": {"backstage.io/kubernetes-id": "checkout"}},
        "spec": {"type": "service", "owner": "team", "lifecycle": "production"}
    }));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app-config.yaml"),
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: localKubectlProxy\nkubeauth:\n  catalog:\n    baseUrl: {}\n    token: {}\n",
            catalog.url(),
            catalog.token()
        ),
    )
    .unwrap();
    let serving = serve(dir.path(), &[]).await;
    let query = |entity_ref: &str| {
        let addr = serving.addr.clone();
        let body = serde_json::json!({"entityRef": entity_ref, "auth": {}}).to_string();
        async move {
            http::request(
                &addr,
                "POST",
                "/api/kubernetes/resources/workloads/query",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await
            .unwrap()
        }
    };
    // Resolved: one entry for the one cluster (nothing listens behind it here: its error, not the request's).
    let found = query("component:default/checkout").await;
    assert_eq!(found.status, 200, "{}", found.text());
    assert_eq!(found.json()["items"][0]["cluster"]["name"], "local");
    assert!(!found.json()["items"][0]["errors"].as_array().unwrap().is_empty());
    // As Backstage's backend: an entity the catalog lacks is the caller's mistake, said in its words.
    let missing = query("component:default/absent").await;
    assert_eq!(missing.status, 400, "{}", missing.text());
    assert_eq!(missing.json()["error"]["message"], "Entity ref missing, component:default/absent");
}
