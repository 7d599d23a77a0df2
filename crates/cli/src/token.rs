use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use kubeauth::RequestAuth;

use crate::context::{find, load_config, locate, registry};
use crate::exec_credential::{parse_exec_info, render};
use crate::failure::Failure;
use crate::login::PromptOptions;
use crate::token_cache::DiskCache;

/// `kubeauth token --cluster NAME`: an ExecCredential on stdout. A cached credential still valid for more
/// than a minute is printed without any network; otherwise one process fetches under the cluster's lock while
/// parallel ones wait, then read what it stored.
///
/// For clusters with a client-side provider (oidc, google, aks) the credential is the user's login session
/// instead: see [`crate::login::credential`].
pub(crate) async fn run(config: Option<&Path>, name: &str, prompt: PromptOptions) -> Result<ExitCode, Failure> {
    let exec_info = std::env::var("KUBERNETES_EXEC_INFO").ok();
    let info = parse_exec_info(exec_info.as_deref(), std::io::stdin().is_terminal()).map_err(Failure::Config)?;
    let loaded = load_config(config)?;
    let registry = registry(&loaded.config)?;
    let clusters = locate(&loaded.config, &registry).await?;
    let cluster = find(&clusters, name)?;

    if let Some(login) = kubeauth::login::login_name(cluster) {
        registry.validate(cluster).map_err(|e| Failure::config(&e))?;
        let interactive = info.interactive.then_some(prompt);
        let credential = crate::login::credential(&loaded.config, &registry, cluster, &login, interactive).await?;
        println!("{}", render(info.api_version, &cluster.name, &credential).map_err(Failure::Runtime)?);
        return Ok(ExitCode::SUCCESS);
    }

    let cache = DiskCache::open();
    if let Some(credential) = cache.read(cluster) {
        tracing::debug!(cluster = %cluster.name, "credential served from the cache");
        println!("{}", render(info.api_version, &cluster.name, &credential).map_err(Failure::Runtime)?);
        return Ok(ExitCode::SUCCESS);
    }

    registry.validate(cluster).map_err(|e| Failure::config(&e))?;
    let _lock = cache.lock(cluster).map_err(|e| Failure::Runtime(format!("cannot lock the credential cache: {e}")))?;
    let credential = match cache.read(cluster) {
        // Another kubectl refreshed it while this one waited for the lock.
        Some(credential) => credential,
        None => {
            let credential =
                registry.credential(cluster, &RequestAuth::none()).await.map_err(|e| Failure::runtime(&e))?;
            if let Err(e) = cache.write(cluster, &credential) {
                tracing::warn!(error = %e, "cannot store the credential in the cache");
            }
            credential
        }
    };
    println!("{}", render(info.api_version, &cluster.name, &credential).map_err(Failure::Runtime)?);
    Ok(ExitCode::SUCCESS)
}
