//! The one place a cluster's TLS settings are built.

use base64::Engine as _;
use kube::client::ConfigExt as _;
use kubeauth_core::{ClusterDetails, ExposeSecret};

use crate::{ClientIdentity, Error};

/// The connection settings of a cluster as a [`kube::Config`]: URL, CA (`caData` or `caFile`),
/// `skipTLSVerify`, and the client certificate of `identity` when there is one. A bearer token is not put here:
/// the [`CredentialLayer`](crate::CredentialLayer) applies it per request.
pub fn connection_config(cluster: &ClusterDetails, identity: Option<&ClientIdentity>) -> Result<kube::Config, Error> {
    let uri: http::Uri = cluster.url.parse().map_err(|_| kubeauth_core::Error::Config {
        cluster: cluster.name.clone(),
        key: "url".into(),
        message: format!("`{}` is not a valid URL", cluster.url),
    })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = cluster.ca_certificates_der()?;
    config.accept_invalid_certs = cluster.skip_tls_verify;
    config.tls_server_name = cluster.tls_server_name.clone();
    if let Some(identity) = identity {
        let b64 = &base64::engine::general_purpose::STANDARD;
        config.auth_info.client_certificate_data = Some(b64.encode(identity.certificate_pem()));
        config.auth_info.client_key_data = Some(b64.encode(identity.private_key_pem().expose_secret()).into());
    }
    Ok(config)
}

/// The rustls settings of a cluster's connections, for `alpn` (the protocols offered, most wanted first).
pub(crate) fn rustls_config(
    cluster: &ClusterDetails,
    identity: Option<&ClientIdentity>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, Error> {
    let config = connection_config(cluster, identity)?;
    let mut tls =
        config.rustls_client_config().map_err(|source| Error::Client { cluster: cluster.name.clone(), source })?;
    tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tls)
}
