use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use kubeauth::RequestAuth;

use crate::context::{find, load_config, locate, toolkit};
use crate::exec_credential::{parse_exec_info, render};
use crate::failure::Failure;
use crate::login::PromptOptions;
use crate::token_cache::DiskCache;

/// `kubeauth token --cluster NAME`: an ExecCredential on stdout.
///
/// For a cluster whose provider names a login (oidc, google, aks, custom client-side ones) the credential is
/// the provider's answer to the user's token from the login session (stored, refreshed, or — when kubectl
/// allows prompting — from a new login). For the others, a cached credential still valid for more than a
/// minute is printed without any network; otherwise one process fetches under the cluster's lock while
/// parallel ones wait, then read what it stored.
pub(crate) async fn run(config: &[PathBuf], name: &str, prompt: PromptOptions) -> Result<ExitCode, Failure> {
    let exec_info = std::env::var("KUBERNETES_EXEC_INFO").ok();
    let info = parse_exec_info(exec_info.as_deref(), std::io::stdin().is_terminal()).map_err(Failure::Config)?;
    let loaded = load_config(config)?;
    let kubeauth = toolkit(&loaded.config)?;
    let clusters = locate(&kubeauth).await?;
    let cluster = find(&clusters, name)?;
    let registry = kubeauth.registry();
    registry.validate(cluster).map_err(|e| Failure::config(&e))?;

    if let Some(user) = crate::login::user_auth(&kubeauth, cluster, info.interactive.then_some(prompt)).await? {
        let credential = registry.credential(cluster, &user.auth).await.map_err(|e| Failure::runtime(&e))?;
        let credential = credential.with_expiry(user.expires_at);
        println!("{}", render(info.api_version, &cluster.name, &credential).map_err(Failure::Runtime)?);
        return Ok(ExitCode::SUCCESS);
    }

    let store_failure = |e: kubeauth::core::store::StoreError| Failure::Runtime(format!("the credential cache: {e}"));
    let cache = DiskCache::open().map_err(store_failure)?;
    if let Some(credential) = cache.read(cluster).map_err(store_failure)? {
        tracing::debug!(cluster = %cluster.name, "credential served from the cache");
        println!("{}", render(info.api_version, &cluster.name, &credential).map_err(Failure::Runtime)?);
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = cache.lock(cluster).await.map_err(store_failure)?;
    let credential = match cache.read(cluster).map_err(store_failure)? {
        // Another kubectl refreshed it while this one waited for the lock.
        Some(credential) => credential,
        None => {
            let credential =
                registry.credential(cluster, &RequestAuth::none()).await.map_err(|e| Failure::runtime(&e))?;
            if let Err(e) = cache.write(cluster, &credential) {
                tracing::warn!(error = %kubeauth::report(&e), "cannot store the credential in the cache");
            }
            credential
        }
    };
    println!("{}", render(info.api_version, &cluster.name, &credential).map_err(Failure::Runtime)?);
    Ok(ExitCode::SUCCESS)
}
