//! A custom authentication provider in a few lines, plugged in beside the defaults the way a downstream crate
//! does it: it depends on published crates only (kubeauth, kube, k8s-openapi, tokio, and rcgen to make a
//! throwaway certificate).
//!
//! `clientCertificateFiles` authenticates with an x509 client certificate whose PEM files the cluster's
//! `authMetadata` names. Run alone, the example makes a certificate, locates a cluster from an inline config,
//! gets its credential through the registry and prints what it got (never the key):
//!
//! ```text
//! cargo run -p kubeauth --example custom_provider
//! ```
//!
//! Given an app-config.yaml, it uses that file's clusters instead, and with `--list-namespaces` it also lists
//! each cluster's namespaces through a `kube::Client` of the connector:
//!
//! ```text
//! cargo run -p kubeauth --example custom_provider -- app-config.yaml --list-namespaces
//! ```

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use kubeauth::core::{Error, server_side_fn};
use kubeauth::{
    AppConfig, ClusterDetails, Credential, Kubeauth, Provider, RequestAuth, ResolveContext, ValidationIssue,
};

/// Where the cluster's `authMetadata` names the certificate and key files.
const CERT_FILE: &str = "kubeauth.example/client-certificate-file";
const KEY_FILE: &str = "kubeauth.example/client-key-file";

/// The provider: read the two files the cluster names, and present them as a client certificate. Its errors
/// name the config key; the registry adds the cluster and the provider.
fn client_certificate_files() -> Provider {
    let provider = server_side_fn(|cluster| async move {
        let certificate = read(&cluster, CERT_FILE).await?;
        let key = read(&cluster, KEY_FILE).await?;
        Ok(Credential::client_certificate(certificate, key))
    })
    // Checked before the provider ever sees the cluster.
    .with_validation(|cluster| {
        [CERT_FILE, KEY_FILE]
            .into_iter()
            .filter(|key| !cluster.auth_metadata.contains_key(*key))
            .map(|key| ValidationIssue::new(format!("authMetadata.{key}"), "missing: the PEM file to read"))
            .collect()
    });
    Provider::server(provider)
}

async fn read(cluster: &ClusterDetails, key: &str) -> Result<String, Error> {
    let path = cluster.auth_metadata.get(key).ok_or_else(|| Error::config(format!("authMetadata.{key}"), "missing"))?;
    tokio::fs::read_to_string(path).await.map_err(|source| Error::Io {
        cluster: String::new(),
        key: format!("authMetadata.{key}"),
        path: PathBuf::from(path),
        source,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let list_namespaces = args.iter().any(|a| a == "--list-namespaces");
    let config_file = args.iter().find(|a| !a.starts_with("--")).map(PathBuf::from);
    for line in run(config_file.as_deref(), list_namespaces).await? {
        println!("{line}");
    }
    Ok(())
}

/// Locates the clusters, gets each one's credential through a toolkit that has the custom provider, and says
/// what it got; with `list_namespaces`, lists them through a `kube::Client` of the connector.
pub async fn run(config_file: Option<&Path>, list_namespaces: bool) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    // Run alone: a throwaway certificate and an inline config that points at it.
    let scratch = tempfile::tempdir()?;
    let config = match config_file {
        Some(path) => AppConfig::from_file(path)?,
        None => {
            let key = rcgen::KeyPair::generate()?;
            let certificate = rcgen::CertificateParams::new(vec!["example-user".to_owned()])?.self_signed(&key)?;
            std::fs::write(scratch.path().join("client.crt"), certificate.pem())?;
            std::fs::write(scratch.path().join("client.key"), key.serialize_pem())?;
            let yaml = format!(
                r#"
kubernetes:
  clusterLocatorMethods:
    - type: config
      clusters:
        - name: example
          url: https://127.0.0.1:6443
          authProvider: clientCertificateFiles
          authMetadata:
            {CERT_FILE}: {}
            {KEY_FILE}: {}
"#,
                scratch.path().join("client.crt").display(),
                scratch.path().join("client.key").display()
            );
            AppConfig::from_yaml_str(&yaml, None)?
        }
    };

    let kubeauth = Kubeauth::builder(&config, &ResolveContext::from_process_env())?
        .provider("clientCertificateFiles", client_certificate_files())?
        .build()?;

    let mut out = Vec::new();
    for cluster in kubeauth.clusters().await?.iter() {
        kubeauth.registry().validate(cluster)?;
        let credential = kubeauth.registry().credential(cluster, &RequestAuth::none()).await?;
        let detail = match &credential {
            Credential::ClientCertificate { certificate_pem, .. } => {
                format!("{}-byte certificate, private key [redacted]", certificate_pem.len())
            }
            other => format!("{other:?}"),
        };
        out.push(format!("cluster '{}' ({}): {} ({detail})", cluster.name, cluster.url, credential.kind()));
        if list_namespaces {
            let client = kubeauth.kube_client(cluster, &RequestAuth::none()).await?;
            let namespaces = kube::Api::<Namespace>::all(client).list(&Default::default()).await?;
            for ns in namespaces.items {
                out.push(format!("namespace {}", ns.metadata.name.unwrap_or_default()));
            }
        }
    }
    Ok(out)
}
