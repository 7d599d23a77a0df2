//! The guard against the API server itself: a generated corpus of request targets (escaped letters and
//! separators, dot segments, double slashes, `watch` values, list options that do and do not decode, path verbs,
//! subresources, groups, cluster-scoped and namespaced, non-resource paths) through `kubeauth serve` with narrow
//! rules, and the real kube-apiserver's audit log (Metadata level) read back: every request that reached it was
//! recorded with the verb, group, version, resource, subresource, namespace and name the guard decided on, and
//! nothing the rules forbid was ever recorded.

use std::collections::HashMap;
use std::time::Duration;

use ::http::Method;
use futures::StreamExt as _;
use kubeauth_server::RequestInfo;
use kubeauth_testkit::{TestCluster, http};
use serde_json::Value;

use crate::server::{admin_auth, config, serve};

const USER_AGENT: &str = "kubeauth-audit-differential";

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
    corpus
}

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
    let addr = serve(&format!("{}{rules}", config(&[cluster]))).await;

    let corpus = corpus();
    assert!(corpus.len() >= 2000, "{} requests", corpus.len());
    let answers: Vec<(Method, String, Option<u16>, Option<String>)> =
        futures::stream::iter(corpus.into_iter().map(|(method, target)| {
            let addr = addr.clone();
            async move {
                let path = format!("/api/kubernetes/proxy{target}");
                let sent = http::request(
                    &addr,
                    method.as_str(),
                    &path,
                    &[("User-Agent", USER_AGENT), ("Audit-ID", "chosen-by-the-caller")],
                    b"",
                );
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

    // What the guard decided for each request that reached the API server, by the Audit-ID kubeauth sent.
    let mut decided: HashMap<String, (String, RequestInfo)> = HashMap::new();
    let (mut refused_here, mut bad_requests) = (0, 0);
    for (method, target, status, id) in &answers {
        let parsed = RequestInfo::parse(method, target);
        match (status, id) {
            (_, Some(id)) => {
                assert_ne!(id, "chosen-by-the-caller", "{method} {target}: the caller's Audit-ID went upstream");
                let info = parsed.unwrap_or_else(|e| panic!("{method} {target} reached the API server: {e}")).info;
                assert!(permitted(&info), "{method} {target} reached the API server: {info:?}");
                decided.insert(id.clone(), (format!("{method} {target}"), info));
            }
            (Some(400), None) => {
                assert!(parsed.is_err(), "{method} {target}: 400 from kubeauth for a path it reads");
                bad_requests += 1;
            }
            (Some(403), None) => {
                let info = parsed.unwrap().info;
                assert!(!permitted(&info), "{method} {target}: refused though the rules allow {info:?}");
                refused_here += 1;
            }
            // An open API takes no POST a web page could send (the browser guard).
            (Some(415), None) if *method == Method::POST => refused_here += 1,
            (status, None) => panic!("{method} {target}: {status:?} without an Audit-ID"),
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
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        events = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["userAgent"] == USER_AGENT)
            .collect();
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
        let Some((request, info)) = decided.get(id) else {
            panic!("the API server recorded a request kubeauth did not let through: {event}");
        };
        joined.insert(id.to_owned());
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
        if recorded != guard {
            mismatches.push(format!("{request}: API server {recorded:?}, guard {guard:?}"));
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
}
