//! What per-user access adds to each proxied request: decoding the path and deriving its RequestInfo, evaluating the
//! permission rules (twenty, the matching one last), and the impersonation headers of the caller; and a whole
//! refused request through kubeauth's router, its audit line written.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use kubeauth::locator::{AccessRuleConfig, ImpersonationConfig};
use kubeauth_server::RequestInfo;
use kubeauth_server::access::{Impersonation, Permissions};
use kubeauth_server::{BackstageCaller, Caller};

/// Twenty rules, the one for team-a last.
fn rules_yaml() -> String {
    let mut yaml = String::new();
    for i in 0..19 {
        yaml.push_str(&format!(
            "- callers: [group:default/team-{i}]\n  namespaces: [team-{i}]\n  resources: [pods, pods/log, deployments.apps]\n  verbs: [get, list, watch]\n"
        ));
    }
    yaml.push_str("- callers: [group:default/team-a]\n  namespaces: [team-a]\n  resources: [pods, pods/log]\n  verbs: [get, list, watch]\n");
    yaml
}

fn rules() -> Vec<AccessRuleConfig> {
    serde_saphyr::from_str(&rules_yaml()).expect("rules")
}

fn per_request(c: &mut Criterion) {
    let rules = rules();
    let permissions = Permissions::from_config(Some(&rules));
    let impersonation = Impersonation::from_config(&ImpersonationConfig::default());
    let caller = Caller::Backstage(BackstageCaller::User {
        entity_ref: "user:default/alice".into(),
        ownership: vec!["user:default/alice".into(), "group:default/team-a".into(), "group:default/everyone".into()],
    });
    c.bench_function("RequestInfo + 20 rules + impersonation headers, per proxied request", |b| {
        b.iter(|| {
            let request =
                RequestInfo::parse(&Method::GET, "/api/v1/namespaces/team-a/pods/web-1/log?container=app&follow=true")
                    .expect("a valid path");
            permissions.check(&caller, "prod", &request.info).expect("allowed");
            impersonation.identity(&caller).expect("a user").headers().expect("headers")
        });
    });
}

/// A proxied request the rules refuse, through every layer of the router: the audit record, the browser guard,
/// the bound on requests in flight, the API auth (a bearer token), RequestInfo, twenty rules, the 403 and its
/// audit line to a file. Nothing reaches the cluster (its address is never dialled).
fn through_the_router(c: &mut Criterion) {
    use tower::ServiceExt as _;
    let dir = std::env::temp_dir().join(format!("kubeauth-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let mut yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: prod\n          \
         url: https://127.0.0.1:1\n          authProvider: serviceAccount\n          serviceAccountToken: bench\n\
         kubeauth:\n  server:\n    audit:\n      path: {}\n    auth:\n      bearerTokens: [a-token-of-24-characters]\n    \
         permissions:\n",
        dir.join("audit.log").display()
    );
    for line in rules_yaml().lines() {
        yaml.push_str(&format!("      {line}\n"));
    }
    let config = kubeauth::AppConfig::from_yaml_str(&yaml, None).expect("a config");
    let server = kubeauth_server::KubeauthServer::from_config(&config, &kubeauth::ResolveContext::new(|_| None))
        .expect("a server");
    let router = server.router();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let request = || {
        http::Request::get("/api/kubernetes/proxy/api/v1/namespaces/team-a/pods/web-1/log?container=app&follow=true")
            .header("authorization", "Bearer a-token-of-24-characters")
            .header("backstage-kubernetes-cluster", "prod")
            .header("user-agent", "bench")
            .body(axum::body::Body::empty())
            .expect("a request")
    };
    // The cluster list is resolved once, as a running server has it.
    let status = runtime.block_on(router.clone().oneshot(request())).expect("an answer").status();
    assert_eq!(status, http::StatusCode::FORBIDDEN);
    c.bench_function("a refused proxied request through the router, audit line included", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let answer = router.clone().oneshot(request()).await.expect("an answer");
                axum::body::to_bytes(answer.into_body(), usize::MAX).await.expect("a body")
            })
        });
    });
    drop(router);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, per_request, through_the_router);
criterion_main!(benches);
