use std::sync::Arc;

use base64::Engine as _;
use kube::client::ClientBuilder;
use kubeauth_core::{ClusterDetails, Credential, CredentialFuture, ExposeSecret, RequestAuth};

use crate::layer::{CredentialLayer, CredentialSource};
use crate::{Error, Provider, Registry};

/// The connection settings of a cluster as a [`kube::Config`]: URL, CA (`caData` or `caFile`),
/// `skipTLSVerify`, and a client certificate when the credential is one. This is the one place TLS settings
/// are built; a bearer token is not put here but applied per request by [`CredentialLayer`].
pub fn connection_config(cluster: &ClusterDetails, credential: &Credential) -> Result<kube::Config, Error> {
    let uri: http::Uri = cluster.url.parse().map_err(|_| kubeauth_core::Error::Config {
        cluster: cluster.name.clone(),
        key: "url".into(),
        message: format!("`{}` is not a valid URL", cluster.url),
    })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = cluster.ca_certificates_der()?;
    config.accept_invalid_certs = cluster.skip_tls_verify;
    if let Credential::ClientCertificate { certificate_pem, private_key_pem, .. } = credential {
        let b64 = &base64::engine::general_purpose::STANDARD;
        config.auth_info.client_certificate_data = Some(b64.encode(certificate_pem));
        config.auth_info.client_key_data = Some(b64.encode(private_key_pem.expose_secret()).into());
    }
    Ok(config)
}

/// A provider bound to one cluster and one request's user tokens.
struct BoundProvider {
    key: String,
    provider: Provider,
    cluster: ClusterDetails,
    auth: RequestAuth,
}

impl CredentialSource for BoundProvider {
    fn cluster(&self) -> &str {
        &self.cluster.name
    }

    fn fetch(&self) -> CredentialFuture<'_> {
        Box::pin(self.provider.credential(&self.key, &self.cluster, &self.auth))
    }
}

impl Registry {
    /// What every client of `cluster` starts from: the cluster validated, its provider bound to it (and to
    /// `auth`) behind a [`CredentialLayer`], the first credential fetched, and the connection settings that
    /// credential implies.
    pub(crate) async fn bind(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<(CredentialLayer, Credential, kube::Config), Error> {
        self.validate(cluster)?;
        let (key, provider) = self.provider_for(cluster)?;
        let source = Arc::new(BoundProvider {
            key: key.to_owned(),
            provider: provider.clone(),
            cluster: cluster.clone(),
            auth: auth.clone(),
        });
        let layer = CredentialLayer::new(source);
        let credential = layer.credential().await?;
        let config = connection_config(cluster, &credential)?;
        Ok((layer, credential, config))
    }

    /// A [`kube::Client`] for `cluster`, authenticated by the provider its `authProvider` names (client-side
    /// providers use the user's tokens in `auth`; pass [`RequestAuth::none`] for server-side ones).
    ///
    /// The cluster is validated and a first credential fetched now, so a wrong configuration or a provider that
    /// cannot authenticate is an error here, not at the first request. Bearer tokens are then applied per
    /// request by a [`CredentialLayer`], refreshed ahead of expiry and once after a 401. A client certificate
    /// goes into the TLS settings: the client is marked valid until the certificate expires, after which a new
    /// client must be built.
    pub async fn kube_client(&self, cluster: &ClusterDetails, auth: &RequestAuth) -> Result<kube::Client, Error> {
        self.connect(cluster, auth).await.map(|(client, _)| client)
    }

    /// Like [`kube_client`](Self::kube_client), also giving the credential it fetched first (for reports that
    /// say what was obtained and until when, without a second fetch).
    pub async fn connect(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<(kube::Client, Credential), Error> {
        let (layer, credential, config) = self.bind(cluster, auth).await?;
        let client_error = |source| Error::Client { cluster: cluster.name.clone(), source };
        let builder = ClientBuilder::try_from(config).map_err(client_error)?;
        let valid_until = credential.expires_at().and_then(|at| {
            let at = at.duration_since(std::time::UNIX_EPOCH).ok()?;
            jiff::Timestamp::from_second(i64::try_from(at.as_secs()).ok()?).ok()
        });
        let client = match &credential {
            Credential::ClientCertificate { .. } => builder.with_valid_until(valid_until).build(),
            // The layer retries after a 401, so it needs a service it can call twice: a buffer makes kube's
            // boxed stack cloneable.
            _ => builder.with_layer(&tower::buffer::BufferLayer::new(1024)).with_layer(&layer).build(),
        };
        Ok((client, credential))
    }
}
