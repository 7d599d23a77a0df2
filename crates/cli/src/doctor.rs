use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use futures::StreamExt as _;
use kubeauth::{ClusterDetails, Credential, Kubeauth, RequestAuth, core::ExposeSecret};
use serde::Serialize;

use crate::OutputFormat;
use crate::context::{find, load_config, locate, toolkit};
use crate::exec_credential::rfc3339;
use crate::failure::Failure;

/// What `kubeauth doctor` found for one cluster.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    cluster: String,
    /// Where the cluster was found: the locator method (and, for a kubeconfig, the file and the context).
    source: String,
    auth_provider: String,
    /// The kind of credential obtained, if one was.
    credential: Option<String>,
    expires_at: Option<String>,
    /// The API server's version, if it answered.
    server_version: Option<String>,
    /// Who the API server says the credential belongs to, where it can tell.
    identity: Option<String>,
    can_list_namespaces: Option<bool>,
    /// The HTTP proxy the API server is reached through (without its password), if any.
    via_proxy: Option<String>,
    ok: bool,
    failure: Option<Problem>,
}

/// Why a check failed: its kind (config, provider, tls, unauthorized, forbidden, network, timeout), the message
/// and what to do about it.
#[derive(Debug, Serialize)]
struct Problem {
    kind: &'static str,
    message: String,
    hint: &'static str,
}

pub(crate) async fn run(
    config: &[PathBuf],
    only: Option<&str>,
    output: OutputFormat,
    timeout: u64,
    strict: bool,
) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    if strict && !loaded.config.unknown_keys.is_empty() {
        let file = loaded.described();
        let keys: Vec<String> = loaded.config.unknown_keys.iter().map(|k| format!("  {k}")).collect();
        return Err(Failure::Config(format!(
            "{file} holds keys kubeauth does not read (--strict):\n{}",
            keys.join("\n")
        )));
    }
    let kubeauth = toolkit(&loaded.config)?;
    let clusters = locate(&kubeauth).await?;
    let selected: Vec<ClusterDetails> = match only {
        Some(name) => vec![find(&clusters, name)?.clone()],
        None => clusters,
    };
    let total = selected.len();
    let progress = std::io::stderr().is_terminal() && output == OutputFormat::Table && !crate::quiet();

    // Every cluster at once; one failing or hanging never holds up or hides the others.
    let mut pending: futures::stream::FuturesUnordered<_> = selected
        .iter()
        .enumerate()
        .map(|(i, cluster)| {
            let kubeauth = &kubeauth;
            async move {
                let report = match tokio::time::timeout(Duration::from_secs(timeout), check(kubeauth, cluster)).await {
                    Ok(report) => report,
                    Err(_) => failed(
                        base(cluster),
                        "timeout",
                        format!("no answer within {timeout} s"),
                        "the API server or the identity provider is unreachable or slow: check the URL and the network",
                    ),
                };
                (i, report)
            }
        })
        .collect();
    let mut reports: Vec<Option<Report>> = (0..total).map(|_| None).collect();
    let mut done = 0;
    while let Some((i, report)) = pending.next().await {
        done += 1;
        if progress {
            eprint!("\rchecking {}: {done} done", crate::table::count(total, "cluster"));
        }
        reports[i] = Some(report);
    }
    if progress {
        eprintln!();
    }
    let reports: Vec<Report> = reports.into_iter().flatten().collect();
    if !crate::table::print_structured(output, &reports, |r| r.cluster.as_str())? {
        print_table(&reports);
    }
    Ok(if reports.iter().all(|r| r.ok) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn base(cluster: &ClusterDetails) -> Report {
    Report {
        cluster: cluster.name.clone(),
        source: cluster.source.clone(),
        auth_provider: cluster.auth_provider().unwrap_or_default().to_owned(),
        credential: None,
        expires_at: None,
        server_version: None,
        identity: None,
        can_list_namespaces: None,
        via_proxy: kubeauth::connection_proxy(cluster),
        ok: false,
        failure: None,
    }
}

fn failed(mut report: Report, kind: &'static str, message: String, hint: &'static str) -> Report {
    report.ok = false;
    report.failure = Some(Problem { kind, message, hint });
    report
}

async fn check(kubeauth: &Kubeauth, cluster: &ClusterDetails) -> Report {
    let mut report = base(cluster);
    if let Err(e) = kubeauth.registry().validate(cluster) {
        return failed(report, "config", kubeauth::report(&e), "fix the cluster's entry in the config");
    }
    // A client-side cluster is checked as the user: with the stored login session, never prompting.
    let auth = match crate::login::user_auth(kubeauth, cluster, None).await {
        Ok(None) => RequestAuth::none(),
        Ok(Some(user)) => user.auth,
        Err(Failure::Config(message) | Failure::Runtime(message)) => {
            return failed(
                report,
                "login",
                message,
                "the user is not logged in to this cluster's identity provider: run `kubeauth login --cluster <name>`",
            );
        }
    };
    let (client, credential) = match kubeauth.connector().connect(cluster, &auth).await {
        Ok(connected) => connected,
        Err(e) => {
            return failed(
                report,
                "provider",
                kubeauth::report(&e),
                "the provider could not get a credential: check its settings and the identity it runs as",
            );
        }
    };
    report.credential = Some(credential.kind().to_string());
    report.expires_at = credential.expires_at().map(rfc3339);

    match client.apiserver_version().await {
        Ok(info) => report.server_version = Some(info.git_version),
        Err(e) => return classify(report, &e),
    }
    match can_list_namespaces(&client).await {
        Ok(allowed) => report.can_list_namespaces = Some(allowed),
        Err(e) => return classify(report, &e),
    }
    report.identity = identity(&client, &credential).await;
    report.ok = true;
    report
}

/// A failed request to the API server, by kind.
fn classify(report: Report, error: &kube::Error) -> Report {
    let message = kubeauth::report(error);
    match error {
        kube::Error::Api(status) if status.code == 401 => failed(
            report,
            "unauthorized",
            format!("401 {}: the API server refused the credential", status.message),
            "the API server does not accept this identity: check the token, its audience and the cluster's identity mapping",
        ),
        kube::Error::Api(status) if status.code == 403 => failed(
            report,
            "forbidden",
            format!("403 {}", status.message),
            "the identity lacks RBAC permissions for this check",
        ),
        _ if message.contains("certificate") || message.to_ascii_lowercase().contains("tls") => failed(
            report,
            "tls",
            message,
            "the API server's certificate was not trusted: set caData or caFile to the CA that signed it",
        ),
        _ => failed(
            report,
            "network",
            message,
            "the API server could not be reached: check the URL and the network path",
        ),
    }
}

async fn can_list_namespaces(client: &kube::Client) -> Result<bool, kube::Error> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("list".into()),
                resource: Some("namespaces".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = kube::Api::<SelfSubjectAccessReview>::all(client.clone()).create(&Default::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Who the API server sees: SelfSubjectReview (Kubernetes 1.28+), else a TokenReview of the token (needs
/// permission to create TokenReviews), else unknown.
async fn identity(client: &kube::Client, credential: &Credential) -> Option<String> {
    let post = |path: &str, body: serde_json::Value| {
        http::Request::post(path)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
    };
    for version in ["v1", "v1beta1"] {
        let Ok(request) = post(
            &format!("/apis/authentication.k8s.io/{version}/selfsubjectreviews"),
            serde_json::json!({"apiVersion": format!("authentication.k8s.io/{version}"), "kind": "SelfSubjectReview"}),
        ) else {
            continue;
        };
        if let Ok(answer) = client.request::<serde_json::Value>(request).await
            && let Some(name) = answer.pointer("/status/userInfo/username").and_then(serde_json::Value::as_str)
        {
            return Some(name.to_owned());
        }
    }
    if let Credential::BearerToken { token, .. } = credential
        && let Ok(request) = post(
            "/apis/authentication.k8s.io/v1/tokenreviews",
            serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token.expose_secret()}}),
        )
        && let Ok(answer) = client.request::<serde_json::Value>(request).await
        && let Some(name) = answer.pointer("/status/user/username").and_then(serde_json::Value::as_str)
    {
        return Some(name.to_owned());
    }
    None
}

fn print_table(reports: &[Report]) {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let dash = || "-".to_owned();
            vec![
                r.cluster.clone(),
                r.auth_provider.clone(),
                match (&r.credential, &r.expires_at) {
                    (Some(kind), Some(until)) => format!("{kind} until {until}"),
                    (Some(kind), None) => kind.clone(),
                    _ => dash(),
                },
                match (&r.server_version, &r.via_proxy) {
                    (Some(v), Some(proxy)) => format!("reachable ({v}) via {proxy}"),
                    (Some(v), None) => format!("reachable ({v})"),
                    (None, _) => dash(),
                },
                match (&r.identity, r.ok) {
                    (Some(who), _) => who.clone(),
                    (None, true) => "unknown".into(),
                    (None, false) => dash(),
                },
                r.can_list_namespaces.map(|b| if b { "yes" } else { "no" }.to_owned()).unwrap_or_else(dash),
                match &r.failure {
                    None => "ok".into(),
                    Some(p) => format!("FAILED ({})", p.kind),
                },
            ]
        })
        .collect();
    crate::table::print(
        &["CLUSTER", "PROVIDER", "CREDENTIAL", "API SERVER", "IDENTITY", "LIST NAMESPACES", "RESULT"],
        &rows,
    );
    for r in reports {
        if let Some(p) = &r.failure {
            println!("\n{} ({}): {}\n  hint: {}", r.cluster, p.kind, p.message, p.hint);
            if !r.source.is_empty() {
                println!("  found by: {}", r.source);
            }
        }
    }
}
