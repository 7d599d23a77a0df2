//! A stand-in for the Pinniped Concierge's token exchange, for the `pinniped` providers' tests.
//!
//! No Pinniped Concierge runs here (it needs a cluster that runs pods and a controller manager's signing key), so
//! this is a small HTTPS server on loopback that speaks the Concierge's wire protocol as its client, the
//! `pinniped` command, sees it: `POST /apis/login.concierge.pinniped.dev/v1alpha1/tokencredentialrequests`
//! with a `TokenCredentialRequest` (`spec.token`, `spec.authenticator` of `authentication.concierge.pinniped.dev`),
//! answered `201 Created` with `status.credential` (`clientCertificateData`, `clientKeyData` in PEM,
//! `expirationTimestamp`) or, when the token or the authenticator is not accepted, `status.message:
//! "authentication failed"` and no credential, as the Concierge answers. The token is checked by a
//! [`TokenVerifier`] standing in for the Concierge's JWT or webhook authenticator; the certificate is signed by
//! the signer given, the cluster's client CA in the tests, as the real Concierge signs with the cluster's
//! signing key — so the real kube-apiserver decides whether the certificate it issued is accepted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};

use crate::pki::{CertifiedKey, TestCa};
use crate::server::ThreadServer;
use crate::{TokenVerifier, UserInfo};

/// Signs the client certificate of a user, valid until the time given.
pub type Signer = dyn Fn(&UserInfo, SystemTime) -> CertifiedKey + Send + Sync;

/// The Concierge stand-in on a loopback port. See the [module docs](self).
pub struct ConciergeStandIn {
    url: String,
    ca: TestCa,
    requests: Arc<Mutex<Vec<Seen>>>,
    exchanges: Arc<AtomicUsize>,
    _server: ThreadServer,
}

/// What the stand-in saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `METHOD path`.
    pub request: String,
    /// Whether it carried an `Authorization` header (the Concierge's clients send none).
    pub authorization: bool,
}

impl std::fmt::Debug for ConciergeStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConciergeStandIn").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ConciergeStandIn {
    /// Starts it: tokens for the authenticator `kind`/`name` are checked by `verifier`, certificates valid for
    /// `lifetime` are signed by `signer`.
    pub fn start(
        authenticator: (&str, &str),
        verifier: impl TokenVerifier,
        lifetime: Duration,
        signer: impl Fn(&UserInfo, SystemTime) -> CertifiedKey + Send + Sync + 'static,
    ) -> Self {
        let (ca, acceptor) = crate::pki::loopback_tls("kubeauth-test-concierge-ca");
        let requests: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let exchanges = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State {
            kind: authenticator.0.to_owned(),
            name: authenticator.1.to_owned(),
            verifier: Box::new(verifier),
            lifetime,
            signer: Box::new(signer),
            requests: requests.clone(),
            exchanges: exchanges.clone(),
        });
        let server = ThreadServer::start(Some(acceptor), move |req| {
            let state = state.clone();
            async move { state.answer(req).await }
        });
        Self { url: format!("https://{}", server.addr()), ca, requests, exchanges, _server: server }
    }

    /// A stand-in for `cluster`'s Concierge, whose authenticator `kind`/`name` knows `tokens` as `(token, name)`:
    /// each is user `pinniped:<name>` in group `pinniped:devs`, with certificates of the cluster's client CA valid
    /// five minutes.
    pub fn for_cluster(
        cluster: &'static crate::TestCluster,
        authenticator: (&str, &str),
        tokens: &[(&str, &str)],
    ) -> Self {
        let users = tokens
            .iter()
            .map(|(token, name)| {
                let user = UserInfo {
                    username: format!("pinniped:{name}"),
                    uid: (*name).to_owned(),
                    groups: vec!["pinniped:devs".into()],
                };
                ((*token).to_owned(), user)
            })
            .collect();
        Self::start(authenticator, crate::StaticTokens(users), Duration::from_secs(300), |user, until| {
            let groups: Vec<&str> = user.groups.iter().map(String::as_str).collect();
            cluster.client_ca().client_cert_until(&user.username, &groups, until)
        })
    }

    /// `https://127.0.0.1:<port>`, the Concierge endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA of its serving certificate, base64 of the PEM (as `pinniped-concierge-ca-data`).
    pub fn ca_data(&self) -> String {
        self.ca.ca_data()
    }

    /// Every request it got.
    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many certificates it issued.
    pub fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }
}

struct State {
    kind: String,
    name: String,
    verifier: Box<dyn TokenVerifier>,
    lifetime: Duration,
    signer: Box<Signer>,
    requests: Arc<Mutex<Vec<Seen>>>,
    exchanges: Arc<AtomicUsize>,
}

const PATH: &str = "/apis/login.concierge.pinniped.dev/v1alpha1/tokencredentialrequests";

impl State {
    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let seen = Seen {
            request: format!("{} {}", req.method(), req.uri().path()),
            authorization: req.headers().contains_key(http::header::AUTHORIZATION),
        };
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(seen);
        }
        if req.method() != http::Method::POST || req.uri().path() != PATH {
            let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404});
            return crate::server::json(404, &status);
        }
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let spec = &request["spec"];
        let authenticator = &spec["authenticator"];
        let token = spec["token"].as_str().unwrap_or_default();
        let matches = request["kind"] == "TokenCredentialRequest"
            && request["apiVersion"] == "login.concierge.pinniped.dev/v1alpha1"
            && authenticator["apiGroup"] == "authentication.concierge.pinniped.dev"
            && authenticator["kind"] == self.kind.as_str()
            && authenticator["name"] == self.name.as_str();
        let user = if matches { self.verifier.verify(token).await.ok() } else { None };
        let status = match user {
            Some(user) => {
                let expires = SystemTime::now() + self.lifetime;
                let certificate = (self.signer)(&user, expires);
                self.exchanges.fetch_add(1, Ordering::SeqCst);
                let at = rfc3339(expires);
                serde_json::json!({"credential": {"expirationTimestamp": at,
                    "clientCertificateData": certificate.cert_pem, "clientKeyData": certificate.key_pem}})
            }
            None => serde_json::json!({"message": "authentication failed"}),
        };
        let answer = serde_json::json!({"apiVersion": "login.concierge.pinniped.dev/v1alpha1",
            "kind": "TokenCredentialRequest", "metadata": {"creationTimestamp": null}, "spec": {}, "status": status});
        crate::server::json(201, &answer)
    }
}

/// `2026-01-02T03:04:05Z`.
fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
