//! A custom authentication provider, plugged in beside the defaults the way a downstream crate does it.
//!
//! `clientCertificateFiles` authenticates with an x509 client certificate whose PEM files the cluster's
//! `authMetadata` names. Run alone, the example makes a certificate, locates a cluster from an inline config,
//! resolves its credential through the registry and prints what it got (never the key):
//!
//! ```text
//! cargo run -p kubeauth --example custom_provider
//! ```
//!
//! Given an app-config.yaml, it uses that file's clusters instead, and with `--list-namespaces` it also lists
//! each cluster's namespaces through a `kube::Client` built by the registry:
//!
//! ```text
//! cargo run -p kubeauth --example custom_provider -- app-config.yaml --list-namespaces
//! ```

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use kubeauth::{
    AppConfig, ClusterDetails, CombinedLocator, Credential, CredentialFuture, Registry, RequestAuth, ResolveContext,
    ServerSideProvider, ValidationIssue,
};

/// Where the cluster's `authMetadata` names the certificate and key files.
const CERT_KEY: &str = "kubeauth.example/client-certificate-file";
const KEY_KEY: &str = "kubeauth.example/client-key-file";

/// Reads an x509 client certificate and its key from the files the cluster's metadata names.
struct ClientCertificateFiles;

impl ClientCertificateFiles {
    fn path<'a>(cluster: &'a ClusterDetails, key: &str) -> Result<&'a str, kubeauth::core::Error> {
        cluster.auth_metadata.get(key).map(String::as_str).ok_or_else(|| kubeauth::core::Error::Config {
            cluster: cluster.name.clone(),
            key: format!("authMetadata.{key}"),
            message: "missing".into(),
        })
    }

    fn read(cluster: &ClusterDetails, key: &str) -> Result<String, kubeauth::core::Error> {
        let path = PathBuf::from(Self::path(cluster, key)?);
        std::fs::read_to_string(&path).map_err(|source| kubeauth::core::Error::Io {
            cluster: cluster.name.clone(),
            key: format!("authMetadata.{key}"),
            path,
            source,
        })
    }
}

impl ServerSideProvider for ClientCertificateFiles {
    fn credential<'a>(&'a self, cluster: &'a ClusterDetails) -> CredentialFuture<'a> {
        Box::pin(async move {
            let cert = Self::read(cluster, CERT_KEY)?;
            let key = Self::read(cluster, KEY_KEY)?;
            Ok(Credential::client_certificate(cert, key))
        })
    }

    fn validate_cluster(&self, cluster: &ClusterDetails) -> Vec<ValidationIssue> {
        [CERT_KEY, KEY_KEY]
            .into_iter()
            .filter(|k| !cluster.auth_metadata.contains_key(*k))
            .map(|k| ValidationIssue::new(format!("authMetadata.{k}"), "missing: the PEM file to read"))
            .collect()
    }
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

/// Locates the clusters, resolves each one's credential through a registry that has the custom provider, and
/// says what it got; with `list_namespaces`, lists them through a `kube::Client` from the registry.
pub async fn run(config_file: Option<&Path>, list_namespaces: bool) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    // Run alone: a throwaway certificate and an inline config that points at it.
    let scratch = tempfile::tempdir()?;
    let config = match config_file {
        Some(path) => AppConfig::from_file(path)?,
        None => {
            let ca = kubeauth_testkit::pki::TestCa::new("example-ca");
            let cert = ca.client_cert("example-user", &["example-group"]);
            std::fs::write(scratch.path().join("client.crt"), &cert.cert_pem)?;
            std::fs::write(scratch.path().join("client.key"), &cert.key_pem)?;
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
            {CERT_KEY}: {}
            {KEY_KEY}: {}
"#,
                scratch.path().join("client.crt").display(),
                scratch.path().join("client.key").display()
            );
            AppConfig::from_yaml_str(&yaml, None)?
        }
    };

    let mut registry = Registry::with_defaults();
    registry.add_server_side("clientCertificateFiles", ClientCertificateFiles)?;

    let mut out = Vec::new();
    let clusters = CombinedLocator::from_config(&config, &ResolveContext::from_process_env())?.clusters().await?;
    for cluster in &clusters {
        registry.validate(cluster)?;
        let credential = registry.credential(cluster, &RequestAuth::none()).await?;
        let detail = match &credential {
            Credential::ClientCertificate { certificate_pem, .. } => {
                format!("{}-byte certificate, private key [redacted]", certificate_pem.len())
            }
            other => format!("{other:?}"),
        };
        out.push(format!("cluster '{}' ({}): {} ({detail})", cluster.name, cluster.url, credential.kind()));
        if list_namespaces {
            let client = registry.kube_client(cluster, &RequestAuth::none()).await?;
            let namespaces = kube::Api::<Namespace>::all(client).list(&Default::default()).await?;
            for ns in namespaces.items {
                out.push(format!("namespace {}", ns.metadata.name.unwrap_or_default()));
            }
        }
    }
    Ok(out)
}
