use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kube::config::{
    AuthInfo, Cluster, Context, ExecConfig, ExecInteractiveMode, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use kubeauth::{ClusterDetails, ProviderSide, Registry};

use crate::context::{find, load_config, locate, toolkit};
use crate::exec_credential::base64_pem;
use crate::failure::Failure;

/// How `kubeauth kubeconfig` prints the kubeconfig.
#[derive(Debug, Clone, Copy, clap::ValueEnum, Default, PartialEq, Eq)]
pub(crate) enum KubeconfigFormat {
    /// YAML, as kubectl writes kubeconfigs.
    #[default]
    Yaml,
    /// JSON (kubectl reads both).
    Json,
}

/// Where `kubeauth kubeconfig` puts the kubeconfig.
#[derive(Debug)]
pub(crate) enum Destination<'a> {
    /// Standard output, in this format.
    Stdout(KubeconfigFormat),
    /// This file, replaced (mode 0600).
    File(&'a Path),
    /// Merged into the kubeconfig kubectl reads (the first file of `KUBECONFIG`, else `~/.kube/config`).
    Merge,
}

/// `kubeauth kubeconfig`: a kubeconfig whose users run `kubeauth token` with the same config.
pub(crate) async fn run(config: &[PathBuf], only: Option<&str>, to: Destination<'_>) -> Result<ExitCode, Failure> {
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
    let yaml = |document: &Kubeconfig| serde_saphyr::to_string(document).map_err(|e| Failure::Runtime(e.to_string()));
    match to {
        Destination::Stdout(KubeconfigFormat::Yaml) => print!("{}", yaml(&document)?),
        Destination::Stdout(KubeconfigFormat::Json) => {
            println!("{}", serde_json::to_string_pretty(&document).map_err(|e| Failure::Runtime(e.to_string()))?);
        }
        Destination::File(path) => write_private(path, &yaml(&document)?)?,
        Destination::Merge => {
            let path = kubectl_kubeconfig()?;
            let merged = match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let existing = Kubeconfig::from_yaml(&text).map_err(|e| {
                        Failure::Config(format!("{}: not a kubeconfig kubeauth can merge into: {e}", path.display()))
                    })?;
                    // A copy of what was there, as it was, before anything changes.
                    let backup = path.with_file_name(format!(
                        "{}.kubeauth-backup",
                        path.file_name().unwrap_or_default().to_string_lossy()
                    ));
                    write_private(&backup, &text)?;
                    eprintln!("kubeauth: the previous {} is kept as {}", path.display(), backup.display());
                    merge(existing, document)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => document,
                Err(e) => return Err(Failure::Runtime(format!("cannot read {}: {e}", path.display()))),
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Failure::Runtime(format!("cannot create {}: {e}", dir.display())))?;
            }
            write_private(&path, &yaml(&merged)?)?;
            eprintln!(
                "kubeauth: {} in {}; current context: {}",
                crate::table::count(selected.len(), "cluster"),
                path.display(),
                merged.current_context.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The kubeconfig kubectl reads first: the first file of `KUBECONFIG`, else `~/.kube/config`.
fn kubectl_kubeconfig() -> Result<PathBuf, Failure> {
    if let Some(first) =
        std::env::var_os("KUBECONFIG").and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| Failure::Config("HOME is not set: name the file with --output-file".into()))?;
    Ok(PathBuf::from(home).join(".kube/config"))
}

/// `new` over `existing`, as `aws eks update-kubeconfig` does: entries of the same name replaced, the others kept,
/// the current context the new one.
fn merge(mut existing: Kubeconfig, new: Kubeconfig) -> Kubeconfig {
    existing.clusters.retain(|c| !new.clusters.iter().any(|n| n.name == c.name));
    existing.clusters.extend(new.clusters);
    existing.auth_infos.retain(|u| !new.auth_infos.iter().any(|n| n.name == u.name));
    existing.auth_infos.extend(new.auth_infos);
    existing.contexts.retain(|c| !new.contexts.iter().any(|n| n.name == c.name));
    existing.contexts.extend(new.contexts);
    if new.current_context.is_some() {
        existing.current_context = new.current_context;
    }
    existing
}

/// Writes `text` to `path` readable by its owner alone, replacing it whole (the store's way of writing).
fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    kubeauth::core::store::replace_private_file(path, text.as_bytes())
        .map_err(|e| Failure::Runtime(kubeauth::report(&e)))
}

fn kubeconfig(
    clusters: &[&ClusterDetails],
    registry: &Registry,
    command: &str,
    config_files: &[PathBuf],
) -> Result<Kubeconfig, Failure> {
    let mut document = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        current_context: clusters.first().map(|c| c.name.clone()),
        ..Kubeconfig::default()
    };
    for cluster in clusters {
        let mut entry = Cluster { server: Some(cluster.url.clone()), ..Cluster::default() };
        if cluster.skip_tls_verify {
            entry.insecure_skip_tls_verify = Some(true);
        } else if let Some(der) = cluster.ca_certificates_der().map_err(|e| Failure::config(&e))? {
            let blocks: Vec<pem::Pem> = der.into_iter().map(|d| pem::Pem::new("CERTIFICATE", d)).collect();
            entry.certificate_authority_data = Some(base64_pem(&pem::encode_many(&blocks)));
        }
        document.clusters.push(NamedCluster { name: cluster.name.clone(), cluster: Some(entry), ..Default::default() });

        let user_name = format!("kubeauth-{}", cluster.name);
        let user = match registry.provider_for(cluster).map(|(_, p)| (p.allows_anonymous(), p.side())) {
            // A provider whose clusters add the credential themselves (kubectl proxy): there is nothing to exec.
            Ok((true, _)) => AuthInfo::default(),
            Ok((false, side)) => {
                let mut args = vec!["token".to_owned(), "--cluster".to_owned(), cluster.name.clone()];
                for file in config_files {
                    args.push("--config".into());
                    args.push(file.to_string_lossy().into_owned());
                }
                let exec = ExecConfig {
                    api_version: Some("client.authentication.k8s.io/v1".into()),
                    command: Some(command.to_owned()),
                    args: Some(args),
                    // Server-side providers never prompt; client-side ones may need the user to log in.
                    interactive_mode: Some(if side == ProviderSide::Client {
                        ExecInteractiveMode::IfAvailable
                    } else {
                        ExecInteractiveMode::Never
                    }),
                    // `kubeauth token` finds the cluster in its own config.
                    provide_cluster_info: false,
                    ..ExecConfig::default()
                };
                AuthInfo { exec: Some(exec), ..AuthInfo::default() }
            }
            Err(e) => return Err(Failure::config(&e)),
        };
        document.auth_infos.push(NamedAuthInfo {
            name: user_name.clone(),
            auth_info: Some(user),
            ..Default::default()
        });
        document.contexts.push(NamedContext {
            name: cluster.name.clone(),
            context: Some(Context { cluster: cluster.name.clone(), user: Some(user_name), ..Context::default() }),
            ..Default::default()
        });
    }
    Ok(document)
}
