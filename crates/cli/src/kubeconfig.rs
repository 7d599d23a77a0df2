use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kubeauth::{ClusterDetails, ProviderSide, Registry};
use serde_json::json;

use crate::context::{find, load_config, locate, toolkit};
use crate::exec_credential::base64_pem;
use crate::failure::Failure;

/// `kubeauth kubeconfig`: a kubeconfig whose users run `kubeauth token` with the same config.
pub(crate) async fn run(config: &[PathBuf], only: Option<&str>, output: Option<&Path>) -> Result<ExitCode, Failure> {
    let loaded = load_config(config)?;
    let kubeauth = toolkit(&loaded.config)?;
    let registry = kubeauth.registry();
    let clusters = locate(&kubeauth).await?;
    let selected: Vec<&ClusterDetails> = match only {
        Some(name) => vec![find(&clusters, name)?],
        None => clusters.iter().collect(),
    };
    for cluster in &selected {
        registry.validate(cluster).map_err(|e| Failure::config(&e))?;
    }
    let command =
        std::env::current_exe().map_err(|e| Failure::Runtime(format!("cannot find the kubeauth executable: {e}")))?;
    let document = kubeconfig(&selected, registry, &command.to_string_lossy(), &loaded.files)?;
    let text = serde_saphyr::to_string(&document).map_err(|e| Failure::Runtime(e.to_string()))?;
    match output {
        None => print!("{text}"),
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
            file.write_all(text.as_bytes())
                .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", path.display())))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn kubeconfig(
    clusters: &[&ClusterDetails],
    registry: &Registry,
    command: &str,
    config_files: &[PathBuf],
) -> Result<serde_json::Value, Failure> {
    let mut kube_clusters = Vec::new();
    let mut users = Vec::new();
    let mut contexts = Vec::new();
    for cluster in clusters {
        let mut entry = serde_json::Map::new();
        entry.insert("server".into(), cluster.url.clone().into());
        if cluster.skip_tls_verify {
            entry.insert("insecure-skip-tls-verify".into(), true.into());
        } else if let Some(der) = cluster.ca_certificates_der().map_err(|e| Failure::config(&e))? {
            let blocks: Vec<pem::Pem> = der.into_iter().map(|d| pem::Pem::new("CERTIFICATE", d)).collect();
            let pem = pem::encode_many(&blocks);
            entry.insert("certificate-authority-data".into(), base64_pem(&pem).into());
        }
        kube_clusters.push(json!({ "name": cluster.name, "cluster": entry }));

        let user_name = format!("kubeauth-{}", cluster.name);
        let user = match registry.provider_for(cluster).map(|(_, p)| (p.allows_anonymous(), p.side())) {
            // A provider whose clusters add the credential themselves (kubectl proxy): there is nothing to exec.
            Ok((true, _)) => json!({}),
            Ok((false, side)) => {
                let mut args = vec!["token".to_owned(), "--cluster".to_owned(), cluster.name.clone()];
                for file in config_files {
                    args.push("--config".into());
                    args.push(file.to_string_lossy().into_owned());
                }
                json!({ "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": command,
                    "args": args,
                    // Server-side providers never prompt; client-side ones may need the user to log in.
                    "interactiveMode": if side == ProviderSide::Client { "IfAvailable" } else { "Never" },
                    // `kubeauth token` finds the cluster in its own config.
                    "provideClusterInfo": false,
                }})
            }
            Err(e) => return Err(Failure::config(&e)),
        };
        users.push(json!({ "name": user_name, "user": user }));
        contexts.push(json!({ "name": cluster.name, "context": { "cluster": cluster.name, "user": user_name } }));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": kube_clusters,
        "users": users,
        "contexts": contexts,
        "current-context": clusters.first().map(|c| c.name.clone()).unwrap_or_default(),
    }))
}
