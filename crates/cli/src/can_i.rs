//! `kubeauth can-i`: what a Backstage user would be allowed through `kubeauth serve`, per cluster, by kubeauth's
//! permission rules and by the cluster itself (a SelfSubjectAccessReview made as `kubeauth serve` would make
//! the request: impersonating the user where `kubeauth.server.impersonation` applies).

use std::path::PathBuf;
use std::process::ExitCode;

use kubeauth::{ClusterDetails, ProviderSide, RequestAuth};
use kubeauth_server::RequestInfo;
use kubeauth_server::access::{Impersonation, Permissions};
use kubeauth_server::{BackstageCaller, Caller};
use serde::Serialize;

use crate::OutputFormat;
use crate::context::{find, load_config, locate, toolkit};
use crate::failure::Failure;

/// What was asked: the verb, the resource (`pods`, `pods/exec`, `deployments.apps`) and the namespace.
pub(crate) struct Question<'a> {
    pub(crate) verb: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) user: &'a str,
    pub(crate) groups: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    cluster: String,
    /// kubeauth's rules: `allowed`, or why not.
    rules: String,
    /// Who the cluster was asked about (the impersonated user, or the server's own identity).
    asked_as: String,
    /// The cluster's answer: `yes`, `no` (with its reason), or what failed.
    cluster_says: String,
    allowed: bool,
}

pub(crate) async fn run(
    config: &[PathBuf],
    only: Option<&str>,
    question: Question<'_>,
    output: OutputFormat,
) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let kubeauth = toolkit(&loaded.config)?;
    let clusters = locate(&kubeauth).await?;
    let selected: Vec<&ClusterDetails> = match only {
        Some(name) => vec![find(&clusters, name)?],
        None => clusters.iter().collect(),
    };
    let settings = &loaded.config.kubeauth.server;
    let permissions = Permissions::from_config(settings.permissions.as_deref());
    let impersonation = settings.impersonation.as_ref().map(Impersonation::from_config);
    let caller = Caller::Backstage(BackstageCaller::User {
        entity_ref: question.user.to_owned(),
        ownership: std::iter::once(question.user.to_owned()).chain(question.groups.iter().cloned()).collect(),
    });
    let (name, sub) = question.resource.split_once('/').map_or((question.resource, None), |(r, s)| (r, Some(s)));
    let (resource, group) = name.split_once('.').map_or((name, ""), |(r, g)| (r, g));
    let request = RequestInfo::resource_request(
        question.verb,
        group,
        resource,
        sub.unwrap_or_default(),
        question.namespace.unwrap_or_default(),
    );
    let mut answers = Vec::new();
    for cluster in selected {
        let rules = match permissions.check(&caller, &cluster.name, &request) {
            Ok(_) => "allowed".to_owned(),
            Err(refused) => refused.to_string(),
        };
        let server_side =
            kubeauth.registry().provider_for(cluster).is_ok_and(|(_, p)| p.side() == ProviderSide::Server);
        let identity = match &impersonation {
            Some(impersonation) => impersonation.identity_for(kubeauth.registry(), cluster, &caller),
            None => Ok(None),
        };
        let (asked_as, cluster_says, yes) = if !server_side {
            ("-".to_owned(), "the user's own token decides (a client-side provider)".to_owned(), true)
        } else {
            let review = serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {
                    "namespace": question.namespace.unwrap_or_default(), "verb": question.verb,
                    "group": group, "resource": resource, "subresource": sub.unwrap_or_default(),
                }},
            });
            let asked_as = match &identity {
                Ok(Some(who)) => who.user.clone(),
                Err(_) => "-".to_owned(),
                Ok(None) => "the server's identity".to_owned(),
            };
            match ask(&kubeauth, cluster, identity, review).await {
                Ok((true, _)) => (asked_as, "yes".to_owned(), true),
                Ok((false, reason)) => (asked_as, format!("no{reason}"), false),
                Err(failed) => (asked_as, failed, false),
            }
        };
        answers.push(Answer {
            cluster: cluster.name.clone(),
            allowed: yes && rules == "allowed",
            rules,
            asked_as,
            cluster_says,
        });
    }
    if !crate::table::print_structured(output, &answers, |a| a.cluster.as_str())? {
        let rows: Vec<Vec<String>> = answers
            .iter()
            .map(|a| {
                let verdict = if a.allowed { "yes" } else { "no" };
                vec![a.cluster.clone(), verdict.into(), a.rules.clone(), a.asked_as.clone(), a.cluster_says.clone()]
            })
            .collect();
        crate::table::print(&["CLUSTER", "ALLOWED", "KUBEAUTH RULES", "ASKED AS", "CLUSTER"], &rows);
    }
    Ok(if answers.iter().all(|a| a.allowed) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The cluster's SelfSubjectAccessReview answer (allowed, and its reason), asked as `identity` when given.
async fn ask(
    kubeauth: &kubeauth::Kubeauth,
    cluster: &ClusterDetails,
    identity: Result<Option<kubeauth_server::Impersonated>, kubeauth_server::ServerError>,
    review: serde_json::Value,
) -> Result<(bool, String), String> {
    let identity = identity.map_err(|e| e.to_string())?;
    let client =
        kubeauth_server::access::kube_client(kubeauth.connector(), cluster, &RequestAuth::none(), identity.as_ref())
            .await
            .map_err(|e| kubeauth::report(&e))?;
    let request = kube::core::Request::new("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        .create(&Default::default(), serde_json::to_vec(&review).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let answer: serde_json::Value = client.request(request).await.map_err(|e| kubeauth::report(&e))?;
    let status = &answer["status"];
    let reason = status["reason"].as_str().filter(|r| !r.is_empty()).map(|r| format!(": {r}")).unwrap_or_default();
    Ok((status["allowed"].as_bool().unwrap_or(false), reason))
}
