use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::OutputFormat;
use crate::context::{load_config, locate, tls_mode, toolkit};
use crate::failure::Failure;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterRow {
    name: String,
    title: Option<String>,
    url: String,
    auth_provider: Option<String>,
    oidc_token_provider: Option<String>,
    tls: &'static str,
    source: String,
    errors: Vec<String>,
}

pub(crate) async fn run(config: &[PathBuf], output: OutputFormat) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let kubeauth = toolkit(&loaded.config)?;
    let registry = kubeauth.registry();
    let clusters = locate(&kubeauth).await?;
    let rows: Vec<ClusterRow> = clusters
        .iter()
        .map(|c| ClusterRow {
            errors: match registry.validate(c) {
                Ok(()) => vec![],
                Err(kubeauth::core::Error::InvalidCluster { issues, .. }) => {
                    issues.iter().map(ToString::to_string).collect()
                }
                Err(other) => vec![other.to_string()],
            },
            name: c.name.clone(),
            title: c.title.clone(),
            url: c.url.clone(),
            auth_provider: c.auth_provider().map(str::to_owned),
            oidc_token_provider: c.oidc_token_provider().map(str::to_owned),
            tls: tls_mode(c),
            source: c.source.clone(),
        })
        .collect();
    let invalid = rows.iter().any(|r| !r.errors.is_empty());
    match output {
        _ if crate::table::print_structured(output, &rows, |r| r.name.as_str())? => {}
        _ => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.title.clone().unwrap_or_default(),
                        r.url.clone(),
                        match (&r.auth_provider, &r.oidc_token_provider) {
                            (Some(p), Some(o)) => format!("{p} ({o})"),
                            (Some(p), None) => p.clone(),
                            _ => String::new(),
                        },
                        r.tls.to_owned(),
                        if r.errors.is_empty() { "ok".into() } else { r.errors.join("; ") },
                    ]
                })
                .collect();
            crate::table::print(&["NAME", "TITLE", "URL", "AUTH PROVIDER", "TLS", "CONFIG"], &table);
        }
    }
    Ok(if invalid { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
