//! The guard against the API server itself: a generated corpus of request targets (escaped letters and
//! separators, dot segments, double slashes, `watch` values, list options that do and do not decode, path verbs,
//! subresources, groups, cluster-scoped and namespaced, non-resource paths) through `kubeauth serve` with narrow
//! rules, and the real kube-apiserver's audit log (Metadata level) read back: every request that reached it was
//! recorded with the verb, group, version, resource, subresource, namespace and name the guard decided on, and
//! nothing the rules forbid was ever recorded. kubeauth's own audit log joins it by Audit-ID: one line for every
//! request, with the same attributes as the API server's event.

use std::collections::HashMap;
use std::time::Duration;

use ::http::Method;
use futures::StreamExt as _;
use kubeauth_server::RequestInfo;
use kubeauth_testkit::{TestCluster, http};
use serde_json::Value;

use crate::server::{admin_auth, config, serve};

const USER_AGENT: &str = "kubeauth-audit-differential";

/// The JSON lines of an audit log file.
fn read_lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

fn corpus() -> Vec<(Method, String)> {
    let prefixes = ["/api/v1", "/%61pi/v1", "/ap%69/v1", "/api/v%31", "/apis/apps/v1", "/%61pis/apps/v1"];
    let middles = [
        "namespaces/aud-a/pods",
        "namespaces/aud-b/pods",
        "namespaces/aud-a/secrets",
        "namespaces/aud-b/secrets",
        "namespaces/aud-a/pods/web",
        "namespaces/aud-a/pods/web/log",
        "namespaces/aud-a/pods/web/exec",
        "pods",
        "namespaces/aud-a",
        "namespaces/aud-a/status",
        "watch/namespaces/aud-a/pods",
        "namespaces/%61ud-a/pods",
        "namespaces/aud-a/p%6Fds",
        "namespaces/aud-a/configmaps/x",
        "nodes",
        "namespaces/aud-a/deployments",
        "proxy/namespaces/aud-a/pods/web",
    ];
    let queries = [
        "",
        "?watch=1",
        "?watch=yes",
        "?watch=false",
        "?watch=FALSE",
        "?watch=0",
        "?watch=no",
        "?w%61tch=true",
        "?watch=true;x",
        "?watch=true&limit=abc",
        "?watch=FALSE&limit=abc",
        "?watch=fal%C5%BFe",
        "?watch=fal%C5%BFe&timeoutSeconds=x",
        "?fieldSelector=metadata.name%3Dweb",
        "?fieldSelector=metadata.name%3Dweb&labelSelector=%3D",
        "?fieldSelector=metadata.name%3D..",
        "?labelSelector=app+in+(web,db)",
        "?limit=%2B5",
    ];
    let suffixes = ["/", "//x", "/./x", "/%2e%2e/x", "%2Fx", "%zz"];
    let mut corpus = Vec::new();
    for prefix in prefixes {
        for middle in middles {
            for query in queries {
                corpus.push((Method::GET, format!("{prefix}/{middle}{query}")));
            }
            for suffix in suffixes {
                corpus.push((Method::GET, format!("{prefix}/{middle}{suffix}")));
            }
            corpus.push((Method::DELETE, format!("{prefix}/{middle}")));
            corpus.push((Method::DELETE, format!("{prefix}/{middle}?fieldSelector=metadata.name%3Dweb")));
        }
    }
    for path in ["/logs/", "/%6Cogs/", "/metrics", "/healthz", "/readyz", "/version", "/apis", "/api", "/debug/pprof/"]
    {
        corpus.push((Method::GET, path.to_owned()));
        corpus.push((Method::POST, path.to_owned()));
    }
    // WebSocket upgrades (exec, attach, watches, logs) are decided on as any other request.
    for target in [
        "/api/v1/namespaces/aud-a/pods/web/exec?command=ls&stdout=true",
        "/%61pi/v1/namespaces/aud-b/pods/web/exec?command=ls&stdout=true",
        "/api/v1/namespaces/aud-a/pods/web/attach?stdout=true",
        "/api/v1/namespaces/aud-a/pods?watch=1",
        "/api/v1/namespaces/aud-a/pods/web/log",
        "/api/v1/namespaces/aud-a/pods/web/log?follow=true",
        "/api/v1/namespaces/aud-a/pods/web/portforward?ports=80",
    ] {
        corpus.push((Method::GET, format!("{target}{}", if target.contains('?') { "&" } else { "?" }) + UPGRADE));
    }
    corpus
}

/// The query marker of a corpus entry sent as a WebSocket upgrade (the API server ignores the parameter).
const UPGRADE: &str = "kubeauthTestUpgrade=websocket";

/// The rules' decision as the test reads them: reads of pods and configmaps (and pod logs) in `aud-a`,
/// `/healthz`, and discovery.
fn permitted(info: &RequestInfo) -> bool {
    if !info.is_resource_request {
        return info.is_discovery() || (info.path == "/healthz" && info.verb == "get");
    }
    info.namespace == "aud-a"
        && info.api_group.is_empty()
        && matches!(info.verb.as_str(), "get" | "list")
        && matches!(info.rule_resource().as_deref(), Some("pods" | "configmaps" | "pods/log"))
}

#[tokio::test]
async fn the_api_servers_audit_log_records_exactly_what_the_guard_decided_on() {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("audit-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n  - level: Metadata\n",
    )
    .unwrap();
    let log = policy_dir.path().join("audit.log");
    let (policy_arg, log_arg) =
        (format!("--audit-policy-file={}", policy.display()), format!("--audit-log-path={}", log.display()));
    let env = std::thread::spawn(move || TestCluster::builder().arg(policy_arg).arg(log_arg).start())
        .join()
        .expect("the test cluster starts");
    for namespace in ["aud-a", "aud-b"] {
        env.create_namespace(namespace).await;
    }
    let rules = "kubeauth:\n  server:\n    permissions:\n      - name: team-a-reads\n        callers: ['*']\n        namespaces: [aud-a]\n        resources: [pods, configmaps, pods/log]\n        verbs: [get, list]\n      - name: probes\n        callers: ['*']\n        nonResourceURLs: [/healthz]\n        verbs: [get]\n";
    let cluster = format!(
        "        - name: aud\n          url: {}\n          caData: {}\n{}          skipMetricsLookup: true\n",
        env.url(),
        env.ca().ca_data(),
        admin_auth(&env)
    );
    let kubeauth_log = policy_dir.path().join("kubeauth-audit.log");
    let audit = format!("    audit:\n      path: {}\n", kubeauth_log.display());
    let addr = serve(&format!("{}{rules}{audit}", config(&[cluster]))).await;

    let corpus = corpus();
    assert!(corpus.len() >= 2000, "{} requests", corpus.len());
    let answers: Vec<(Method, String, Option<u16>, Option<String>)> =
        futures::stream::iter(corpus.into_iter().map(|(method, target)| {
            let addr = addr.clone();
            async move {
                let path = format!("/api/kubernetes/proxy{target}");
                let mut headers = vec![("User-Agent", USER_AGENT), ("Audit-ID", "chosen-by-the-caller")];
                if target.ends_with(UPGRADE) {
                    headers.extend([
                        ("Connection", "Upgrade"),
                        ("Upgrade", "websocket"),
                        ("Sec-WebSocket-Version", "13"),
                        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                        ("Sec-WebSocket-Protocol", "v4.channel.k8s.io"),
                    ]);
                }
                let sent = http::request(&addr, method.as_str(), &path, &headers, b"");
                match tokio::time::timeout(Duration::from_secs(5), sent).await {
                    Ok(Ok(answer)) => {
                        let id = answer.header("audit-id").map(str::to_owned);
                        (method, target, Some(answer.status), id)
                    }
                    // A watch the API server held open: its audit event says what it was.
                    _ => (method, target, None, None),
                }
            }
        }))
        .buffer_unordered(8)
        .collect()
        .await;

    // kubeauth's own audit log: one line for every request, under the Audit-ID its answer carries.
    let mut lines: HashMap<String, Value> = HashMap::new();
    for _ in 0..100 {
        lines = read_lines(&kubeauth_log)
            .into_iter()
            .filter(|l| l["actor"]["userAgent"] == USER_AGENT)
            .map(|l| (l["auditID"].as_str().unwrap_or_default().to_owned(), l))
            .collect();
        if lines.len() >= answers.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), answers.len(), "kubeauth's audit log has one line per request");

    // What the guard decided for each request, as its answer and kubeauth's audit line say.
    let mut decided: HashMap<String, (String, RequestInfo)> = HashMap::new();
    let (mut refused_here, mut bad_requests) = (0, 0);
    for (method, target, status, id) in &answers {
        let parsed = RequestInfo::parse(method, target);
        // A watch the API server held open has no answer here; its line is checked below.
        let (Some(status), Some(id)) = (status, id) else { continue };
        assert_ne!(id, "chosen-by-the-caller", "{method} {target}: the caller's Audit-ID was taken");
        let line = &lines.get(id).unwrap_or_else(|| panic!("{method} {target}: no line in kubeauth's audit log"));
        assert_eq!(line["responseStatus"], *status, "{line}");
        assert!(!line["request"]["url"].as_str().unwrap().contains('?'), "{line}");
        match line["decision"]["allowed"].as_bool() {
            Some(true) => {
                let info = parsed.unwrap_or_else(|e| panic!("{method} {target} was let through: {e}")).info;
                assert!(permitted(&info), "{method} {target} was let through: {info:?}");
                assert!(line["upstreamStatus"].is_u64(), "{line}");
                decided.insert(id.clone(), (format!("{method} {target}"), info));
            }
            Some(false) => {
                let info = parsed.unwrap().info;
                assert_eq!(*status, 403, "{line}");
                assert!(!permitted(&info), "{method} {target}: refused though the rules allow {info:?}");
                assert!(line.get("upstreamStatus").is_none(), "{line}");
                refused_here += 1;
            }
            None if *status == 400 => {
                assert!(parsed.is_err(), "{method} {target}: 400 from kubeauth for a path it reads");
                bad_requests += 1;
            }
            // An open API takes no POST a web page could send (the browser guard).
            None if *status == 415 && *method == Method::POST => refused_here += 1,
            None => panic!("{method} {target}: {status} without a decision: {line}"),
        }
    }
    assert!(
        decided.len() >= 150 && refused_here >= 1000 && bad_requests >= 300,
        "{} / {refused_here} / {bad_requests}",
        decided.len()
    );

    // The API server's own record of every request of the corpus (read until each allowed one is there).
    let mut events: Vec<Value> = Vec::new();
    for _ in 0..100 {
        events = read_lines(&log).into_iter().filter(|e| e["userAgent"] == USER_AGENT).collect();
        let seen: std::collections::HashSet<&str> = events.iter().filter_map(|e| e["auditID"].as_str()).collect();
        if decided.keys().all(|id| seen.contains(id.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut mismatches = Vec::new();
    let mut joined = std::collections::HashSet::new();
    for event in &events {
        let id = event["auditID"].as_str().unwrap_or_default();
        // The join: kubeauth's line of the same Audit-ID let it through, and says what the API server read.
        let line = &lines.get(id).unwrap_or_else(|| panic!("not in kubeauth's audit log: {event}"));
        assert_eq!(line["decision"]["allowed"], true, "the API server recorded a request kubeauth refused: {event}");
        let Some((request, info)) = decided.get(id) else { continue };
        joined.insert(id.to_owned());
        let attributes = &line["requestInfo"];
        let logged = |name: &str| attributes[name].as_str().unwrap_or_default().to_owned();
        let kubeauths = (
            line["verb"].as_str().unwrap_or_default().to_owned(),
            logged("apiGroup"),
            logged("apiVersion"),
            logged("resource"),
            logged("subresource"),
            logged("namespace"),
            logged("name"),
        );
        let field = |name: &str| event["objectRef"][name].as_str().unwrap_or_default().to_owned();
        let recorded = (
            event["verb"].as_str().unwrap_or_default().to_owned(),
            field("apiGroup"),
            field("apiVersion"),
            field("resource"),
            field("subresource"),
            field("namespace"),
            field("name"),
        );
        let guard = (
            info.verb.clone(),
            info.api_group.clone(),
            info.api_version.clone(),
            info.resource.clone(),
            info.subresource.clone(),
            info.namespace.clone(),
            info.name.clone(),
        );
        if recorded != guard || (info.is_resource_request && kubeauths != guard) {
            mismatches
                .push(format!("{request}: API server {recorded:?}, guard {guard:?}, kubeauth's log {kubeauths:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} differences:\n{}", mismatches.len(), mismatches.join("\n"));
    let missing: Vec<_> = decided.iter().filter(|(id, _)| !joined.contains(*id)).map(|(_, (r, _))| r).collect();
    assert!(missing.is_empty(), "not in the API server's audit log: {missing:?}");

    // The attacks of the old guard, by name: an escaped letter in the prefix, a watch spelled `yes`.
    let status = |target: &str| {
        answers.iter().find(|(m, t, _, _)| *m == Method::GET && t == target).and_then(|a| a.2).unwrap_or(0)
    };
    assert_eq!(status("/%61pi/v1/namespaces/aud-b/secrets"), 403);
    assert_eq!(status("/api/v1/namespaces/aud-a/pods?watch=yes"), 403);
    assert_eq!(status("/logs/"), 403);
    assert_eq!(status("/api/v1/namespaces/aud-a/pods"), 200);
    assert_eq!(status("/%61pi/v1/namespaces/%61ud-a/pods"), 200);
    assert_eq!(status(&format!("/%61pi/v1/namespaces/aud-b/pods/web/exec?command=ls&stdout=true&{UPGRADE}")), 403);
}

/// Every endpoint's requests are in kubeauth's audit log, named as the Backstage kubernetes backend's auditor
/// names them, with the caller, the outcome, bytes and an upgraded connection's traffic, and no token or query.
#[tokio::test]
async fn kubeauths_audit_log_names_each_operation_as_backstage_does() {
    let env = TestCluster::shared();
    env.create_namespace("aud-ops").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let token = "an-api-token-of-24-chars";
    let yaml = format!(
        "{}kubeauth:\n  server:\n    auth:\n      bearerTokens: [{token}]\n    cors:\n      origin: [http://127.0.0.1]\n    audit:\n      path: {}\n",
        config(&[crate::server::cluster_yaml(env, "ops", &admin_auth(env))]),
        path.display()
    );
    let addr = serve(&yaml).await;
    let bearer = format!("Bearer {token}");
    let call = |method: &'static str, path: &'static str, body: &'static [u8]| {
        let (addr, bearer) = (addr.clone(), bearer.clone());
        async move {
            let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
            http::request(&addr, method, path, &headers, body).await.unwrap()
        }
    };
    let clusters = call("GET", "/api/kubernetes/clusters", b"").await;
    let listed =
        call("GET", "/api/kubernetes/proxy/api/v1/namespaces/aud-ops/configmaps?labelSelector=team%3Dhidden", b"")
            .await;
    let services = call(
        "POST",
        "/api/kubernetes/services/web",
        br#"{"entity":{"kind":"Component","metadata":{"name":"web","namespace":"Default"}},"auth":{}}"#,
    )
    .await;
    let workloads =
        call("POST", "/api/kubernetes/resources/workloads/query", br#"{"entityRef":"component:default/web"}"#).await;
    let refused =
        http::request(&addr, "GET", "/api/kubernetes/clusters", &[("Authorization", "Bearer not-the-token")], b"")
            .await
            .unwrap();
    assert_eq!(
        (clusters.status, listed.status, services.status, workloads.status, refused.status),
        (200, 200, 200, 501, 401)
    );
    let upgraded = crate::server::raw(
        &addr,
        format!(
            "GET /api/kubernetes/proxy/api/v1/namespaces/aud-ops/configmaps?watch=1&timeoutSeconds=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {bearer}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://127.0.0.1\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(upgraded.starts_with("HTTP/1.1 101"), "{upgraded}");

    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = read_lines(&path);
        if lines.len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [token, "not-the-token", "hidden", env.admin_token()] {
        assert!(!text.contains(secret), "the audit log holds `{secret}`");
    }
    let line_of = |answer: &http::HttpResponse| {
        let id = answer.header("audit-id").expect("every answer has an Audit-Id");
        lines.iter().find(|l| l["auditID"] == id).unwrap_or_else(|| panic!("no line for {id}")).clone()
    };
    let named = |line: &Value| {
        (
            line["eventId"].as_str().unwrap().to_owned(),
            line["meta"]["queryType"].as_str().unwrap().to_owned(),
            line["status"].as_str().unwrap().to_owned(),
        )
    };
    let line = line_of(&clusters);
    assert_eq!(named(&line), ("cluster-fetch".into(), "list".into(), "succeeded".into()));
    assert_eq!(line["actor"]["actorId"], "bearerTokens[0]");
    assert_eq!(line["bytes"], clusters.body.len());
    let line = line_of(&listed);
    assert_eq!(named(&line), ("cluster-fetch".into(), "proxy".into(), "succeeded".into()));
    assert_eq!(line["severityLevel"], "medium");
    assert_eq!(line["meta"]["clusterName"], "ops");
    assert_eq!(line["meta"]["path"], "/api/v1/namespaces/aud-ops/configmaps");
    assert_eq!(line["request"]["url"], "/api/kubernetes/proxy/api/v1/namespaces/aud-ops/configmaps");
    assert_eq!((line["verb"].as_str(), line["requestInfo"]["resource"].as_str()), (Some("list"), Some("configmaps")));
    assert_eq!((line["decision"]["allowed"].as_bool(), line["upstreamStatus"].as_u64()), (Some(true), Some(200)));
    let line = line_of(&services);
    assert_eq!(named(&line), ("resource-fetch".into(), "services".into(), "succeeded".into()));
    assert_eq!(
        (line["meta"]["entityRef"].as_str(), line["meta"]["serviceId"].as_str()),
        (Some("component:default/web"), Some("web"))
    );
    assert_eq!(line["clusters"], serde_json::json!(["ops"]));
    let line = line_of(&workloads);
    assert_eq!(named(&line), ("resource-fetch".into(), "workloads".into(), "failed".into()));
    assert!(line["error"].as_str().unwrap().contains("kubeauth.catalog is not configured"), "{line}");
    let line = line_of(&refused);
    assert_eq!((line["status"].as_str(), line["responseStatus"].as_u64()), (Some("failed"), Some(401)));
    assert!(line["actor"].get("actorId").is_none(), "{line}");
    let watch = lines.iter().find(|l| l["responseStatus"] == 101).expect("the upgraded watch's line");
    assert_eq!(named(watch), ("cluster-fetch".into(), "proxy".into(), "succeeded".into()));
    assert_eq!(watch["verb"], "watch");
    assert!(watch["upgraded"]["received"].as_u64().unwrap() > 0, "{watch}");
}
