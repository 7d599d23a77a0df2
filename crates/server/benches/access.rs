//! What per-user access adds to each proxied request: decoding the path and deriving its RequestInfo, evaluating the
//! permission rules (twenty, the matching one last), and the impersonation headers of the caller.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use kubeauth::locator::{AccessRuleConfig, ImpersonationConfig};
use kubeauth_server::RequestInfo;
use kubeauth_server::access::{Impersonation, Permissions};
use kubeauth_server::{BackstageCaller, Caller};

fn rules() -> Vec<AccessRuleConfig> {
    let mut yaml = String::new();
    for i in 0..19 {
        yaml.push_str(&format!(
            "- callers: [group:default/team-{i}]\n  namespaces: [team-{i}]\n  resources: [pods, pods/log, deployments.apps]\n  verbs: [get, list, watch]\n"
        ));
    }
    yaml.push_str("- callers: [group:default/team-a]\n  namespaces: [team-a]\n  resources: [pods, pods/log]\n  verbs: [get, list, watch]\n");
    serde_saphyr::from_str(&yaml).expect("rules")
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

criterion_group!(benches, per_request);
criterion_main!(benches);
