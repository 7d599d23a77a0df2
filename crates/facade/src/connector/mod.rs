//! The connections to located clusters: the one place that builds them, and the one that owns them.

mod proxy;
mod tls;
mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use kubeauth_core::{BoxError, ClusterDetails, Credential, CredentialFuture, ExposeSecret as _, RequestAuth};
use tower::Layer as _;
use tower::util::BoxCloneSyncService;

pub use tls::connection_config;

/// The HTTP proxy the connections to `cluster` go through, without its password: the cluster's `proxyUrl`, else
/// `HTTPS_PROXY`/`HTTP_PROXY` of the environment unless `NO_PROXY` (or a loopback host) says direct. `None`:
/// direct.
pub fn connection_proxy(cluster: &ClusterDetails) -> Option<String> {
    proxy::of_cluster(cluster).map(|url| kubeauth_core::without_userinfo(&url))
}
use transport::Transport;

use crate::layer::{ClientIdentity, CredentialLayer, CredentialSource};
use crate::{ClusterHttpClient, Error, Provider, Registry, RequestBody};

/// How long a [`kube::Client`] of the connector waits for the API server to start answering a request.
pub const KUBE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(295);

/// Connections to located clusters, built from a [`Registry`]: [`kube::Client`]s and raw HTTP clients for any
/// cluster, server-side or client-side, sharing one set of connections per cluster.
///
/// The rules:
/// 1. one entry per cluster, keyed by everything that makes two connections or two credentials differ (name,
///    URL, CA, `skipTLSVerify`, provider and its settings, service-account token);
/// 2. a cluster seen with other values (a locator refresh changed its URL or CA) gets a new entry, and the old
///    one's connections close when their last request ends; [`retain`](Self::retain) drops clusters that are
///    no longer located;
/// 3. an entry is validated and its TLS settings built once, by the first caller, while concurrent first
///    callers wait for that one; no lock is held across I/O;
/// 4. to an API server that offers HTTP/2, every request of the entry goes over one HTTP/2 connection (one TLS
///    handshake per cluster); upgrades and HTTP/1.1-only servers use a pool of HTTP/1.1 connections;
/// 5. a server-side provider's credential is cached per entry and shared by every caller; a client-side
///    provider's credential comes from each request's [`RequestAuth`] and is applied to that request only,
///    over the same connections;
/// 6. the credential is applied by the [`CredentialLayer`] (refreshed ahead of expiry, retried once after a
///    401); a client certificate selects connections that present it.
///
/// Cheap to clone: clones share the entries.
///
/// ```no_run
/// use kubeauth::{ClusterDetails, Connector, Registry, RequestAuth};
/// use k8s_openapi::api::core::v1::Namespace;
///
/// # async fn run(cluster: ClusterDetails) -> Result<(), Box<dyn std::error::Error>> {
/// let connector = Connector::new(Registry::with_defaults());
/// let client = connector.kube_client(&cluster, &RequestAuth::none()).await?;
/// let namespaces = kube::Api::<Namespace>::all(client).list(&Default::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connector {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Arc<Registry>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    opened: Arc<AtomicU64>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("clusters", &self.len())
            .field("connections_opened", &self.connections_opened())
            .finish_non_exhaustive()
    }
}

/// One cluster's connections and, for a server-side provider, its credential.
struct Entry {
    cluster: Arc<ClusterDetails>,
    key: String,
    provider: Provider,
    ready: tokio::sync::OnceCell<Arc<Ready>>,
}

/// What the first caller of an entry builds.
struct Ready {
    cluster: Arc<ClusterDetails>,
    opened: Arc<AtomicU64>,
    /// Connections without a client certificate.
    plain: Arc<Transport>,
    /// Connections presenting the current client certificate, for providers that give one.
    identified: Mutex<Option<(ClientIdentity, Arc<Transport>)>>,
    /// Server side: the credential layer every caller shares (one cache).
    shared_layer: Option<CredentialLayer>,
    /// Server side: the kube client every caller shares.
    kube: OnceLock<kube::Client>,
}

impl Connector {
    /// A connector for the clusters of `registry`'s providers.
    pub fn new(registry: Registry) -> Self {
        Self::shared(Arc::new(registry))
    }

    /// A connector over a registry shared with others.
    pub fn shared(registry: Arc<Registry>) -> Self {
        Self {
            shared: Arc::new(Shared {
                registry,
                entries: Mutex::new(HashMap::new()),
                opened: Arc::new(AtomicU64::new(0)),
            }),
        }
    }

    /// The providers.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// A [`kube::Client`] for `cluster`, authenticated by the provider its `authProvider` names (client-side
    /// providers use the user's tokens in `auth`; pass [`RequestAuth::none`] for server-side ones).
    ///
    /// The cluster is validated and a first credential got now, so a wrong configuration or a provider that
    /// cannot authenticate is an error here, not at the first request.
    pub async fn kube_client(&self, cluster: &ClusterDetails, auth: &RequestAuth) -> Result<kube::Client, Error> {
        self.connect(cluster, auth).await.map(|(client, _)| client)
    }

    /// Like [`kube_client`](Self::kube_client), also giving the credential it got first (for reports that
    /// say what was obtained and until when, without a second fetch).
    pub async fn connect(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<(kube::Client, Credential), Error> {
        let (ready, layer, credential) = self.bind(cluster, auth).await?;
        let client = match &ready.shared_layer {
            Some(_) => ready.kube.get_or_init(|| http_client(&ready, layer).kube_client()).clone(),
            None => http_client(&ready, layer).kube_client(),
        };
        Ok((client, credential))
    }

    /// A raw HTTP client for `cluster`, authenticated by its provider (with `auth` for client-side ones): what
    /// a proxy forwards requests with.
    pub async fn http_client(&self, cluster: &ClusterDetails, auth: &RequestAuth) -> Result<ClusterHttpClient, Error> {
        let (ready, layer, _) = self.layer(cluster, auth).await?;
        Ok(http_client(&ready, layer))
    }

    /// A raw HTTP client for `cluster` that sends the caller's own `credential` instead of its provider's (what
    /// Backstage's proxy does with `Backstage-Kubernetes-Authorization`): the cluster's connections, the
    /// caller's identity. The provider is not asked.
    pub async fn http_client_with(
        &self,
        cluster: &ClusterDetails,
        credential: Credential,
    ) -> Result<ClusterHttpClient, Error> {
        let entry = self.entry(cluster)?;
        let ready = self.ready(&entry).await?;
        Ok(http_client(&ready, CredentialLayer::fixed(&entry.cluster.name, credential)?))
    }

    /// Forgets the clusters that are not in `located`: their connections close when their last request ends.
    pub fn retain(&self, located: &[ClusterDetails]) {
        let mut entries = self.shared.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > located.len() || entries.keys().any(|name| !located.iter().any(|c| &c.name == name)) {
            entries.retain(|name, _| located.iter().any(|c| &c.name == name));
        }
    }

    /// How many clusters have an entry.
    pub fn len(&self) -> usize {
        self.shared.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no cluster has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many connections the connector has opened so far (each is one TCP connection, and one TLS
    /// handshake for `https` clusters).
    pub fn connections_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::Relaxed)
    }

    /// The cluster's entry ready for use, its credential layer for `auth`, and the first credential.
    async fn bind(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<(Arc<Ready>, CredentialLayer, Credential), Error> {
        let (ready, layer, credential) = self.layer(cluster, auth).await?;
        let credential = match credential {
            Some(credential) => credential,
            None => layer.credential().await?,
        };
        Ok((ready, layer, credential))
    }

    /// The cluster's entry ready for use, and its credential layer for `auth`: for a server-side provider the
    /// entry's shared one (its credential got by the first request); for a client-side one, a layer of the
    /// user's credential, got now, so that a missing token is this cluster's error before anything is sent.
    async fn layer(
        &self,
        cluster: &ClusterDetails,
        auth: &RequestAuth,
    ) -> Result<(Arc<Ready>, CredentialLayer, Option<Credential>), Error> {
        let entry = self.entry(cluster)?;
        let ready = self.ready(&entry).await?;
        match &ready.shared_layer {
            Some(layer) => Ok((ready.clone(), layer.clone(), None)),
            None => {
                let credential = entry.provider.credential(&entry.key, &entry.cluster, auth).await?;
                let layer = CredentialLayer::fixed(&entry.cluster.name, credential.clone())?;
                Ok((ready, layer, Some(credential)))
            }
        }
    }

    /// The entry's connections and settings, built by its first use.
    async fn ready(&self, entry: &Arc<Entry>) -> Result<Arc<Ready>, Error> {
        Ok(entry.ready.get_or_try_init(|| async { self.build(entry).map(Arc::new) }).await?.clone())
    }

    /// The entry of `cluster`: the existing one if nothing that matters changed, else a new one.
    fn entry(&self, cluster: &ClusterDetails) -> Result<Arc<Entry>, Error> {
        let mut entries = self.shared.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(&cluster.name) {
            if same_connection(&entry.cluster, cluster) {
                return Ok(entry.clone());
            }
            tracing::debug!(cluster = %cluster.name, "the cluster's settings changed: new connections and credential");
        }
        let (key, provider) = self.shared.registry.provider_for(cluster)?;
        let entry = Arc::new(Entry {
            cluster: Arc::new(cluster.clone()),
            key: key.to_owned(),
            provider: provider.clone(),
            ready: tokio::sync::OnceCell::new(),
        });
        entries.insert(cluster.name.clone(), entry.clone());
        Ok(entry)
    }

    /// Validates the entry's cluster and builds its TLS settings (reading its CA): once per entry.
    fn build(&self, entry: &Entry) -> Result<Ready, Error> {
        self.shared.registry.validate(&entry.cluster)?;
        // Connections go where the provider's credential must reach the cluster (the located address, unless
        // the provider says otherwise); the provider is asked with the located cluster.
        let reached = entry.provider.endpoint(&entry.cluster).map_or_else(|| entry.cluster.clone(), Arc::new);
        let plain = Arc::new(Transport::new(&reached, None, self.shared.opened.clone())?);
        let shared_layer = match &entry.provider {
            Provider::Server(_) => Some(CredentialLayer::new(Arc::new(BoundProvider {
                key: entry.key.clone(),
                provider: entry.provider.clone(),
                cluster: entry.cluster.clone(),
            }))),
            Provider::Client(_) => None,
        };
        Ok(Ready {
            cluster: reached,
            opened: self.shared.opened.clone(),
            plain,
            identified: Mutex::new(None),
            shared_layer,
            kube: OnceLock::new(),
        })
    }
}

impl Ready {
    /// The connections that present `identity`, or none.
    fn transport(&self, identity: Option<&ClientIdentity>) -> Result<Arc<Transport>, Error> {
        let Some(identity) = identity else { return Ok(self.plain.clone()) };
        {
            let current = self.identified.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((held, transport)) = current.as_ref()
                && held.same_as(identity)
            {
                return Ok(transport.clone());
            }
        }
        // A new certificate (the first, or a rotated one): new connections, built outside the lock.
        let transport = Arc::new(Transport::new(&self.cluster, Some(identity), self.opened.clone())?);
        *self.identified.lock().unwrap_or_else(PoisonError::into_inner) = Some((identity.clone(), transport.clone()));
        Ok(transport)
    }
}

/// Whether two located versions of a cluster can share connections and credentials.
fn same_connection(a: &ClusterDetails, b: &ClusterDetails) -> bool {
    a.name == b.name
        && a.url == b.url
        && a.ca_data == b.ca_data
        && a.ca_file == b.ca_file
        && a.skip_tls_verify == b.skip_tls_verify
        && a.connect_addresses == b.connect_addresses
        && a.proxy_url == b.proxy_url
        && a.tls_server_name == b.tls_server_name
        && a.auth_metadata == b.auth_metadata
        && a.service_account_token.as_ref().map(|t| t.expose_secret())
            == b.service_account_token.as_ref().map(|t| t.expose_secret())
}

/// The entry's transport as a tower service: picks the connections of the request's client identity.
#[derive(Clone)]
struct EntryService {
    ready: Arc<Ready>,
}

impl tower::Service<Request<RequestBody>> for EntryService {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let ready = self.ready.clone();
        Box::pin(async move {
            let transport = ready.transport(request.extensions().get::<ClientIdentity>())?;
            transport.send(request).await
        })
    }
}

fn http_client(ready: &Arc<Ready>, layer: CredentialLayer) -> ClusterHttpClient {
    let service = layer.layer(EntryService { ready: ready.clone() });
    ClusterHttpClient::new(ready.cluster.name.as_str().into(), BoxCloneSyncService::new(service))
}

/// A server-side provider bound to one cluster: the source of the entry's shared credential layer.
struct BoundProvider {
    key: String,
    provider: Provider,
    cluster: Arc<ClusterDetails>,
}

impl CredentialSource for BoundProvider {
    fn cluster(&self) -> &str {
        &self.cluster.name
    }

    fn fetch(&self) -> CredentialFuture<'_> {
        Box::pin(async move { self.provider.credential(&self.key, &self.cluster, &RequestAuth::none()).await })
    }
}
