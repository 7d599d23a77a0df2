//! A small HTTPS server in the test process that answers like a kube-apiserver for one endpoint
//! (`GET /api/v1/namespaces`): 200 with a `NamespaceList` for an accepted bearer token or any verified client
//! certificate, else the API server's 401 `Status`. It records what each request carried. It stands in for the
//! real API server in these unit-level tests of the credential layer; the end-to-end tests use a real one.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kubeauth_testkit::pki::TestCa;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;

/// What one request carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub authorization: Option<String>,
    pub client_certificate: bool,
}

pub struct FakeApiServer {
    pub url: String,
    pub ca: TestCa,
    accepted: Arc<Mutex<HashSet<String>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// A server whose certificate is signed by a fresh CA; with `client_ca`, it also verifies client
    /// certificates signed by that CA (and still accepts connections without one).
    pub async fn start(client_ca: Option<&TestCa>) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = TestCa::new("fake-apiserver-ca");
        let cert = ca.server_cert(&["127.0.0.1", "localhost"]);
        let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            Some(client_ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(CertificateDer::from_pem_slice(client_ca.cert_pem().as_bytes()).unwrap()).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .allow_unauthenticated()
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let accepted = Arc::new(Mutex::new(HashSet::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (acc, sn) = (accepted.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, accepted, seen) = (acceptor.clone(), acc.clone(), sn.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let client_certificate = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let authorization =
                            req.headers().get("authorization").map(|v| v.to_str().unwrap_or_default().to_owned());
                        seen.lock().unwrap().push(Seen { authorization: authorization.clone(), client_certificate });
                        let token = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer "));
                        let ok = client_certificate || token.is_some_and(|t| accepted.lock().unwrap().contains(t));
                        async move { Ok::<_, Infallible>(respond(ok, req.uri().path())) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self { url: format!("https://{addr}"), ca, accepted, seen, task }
    }

    pub fn accept_token(&self, token: &str) {
        self.accepted.lock().unwrap().insert(token.to_owned());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(ok: bool, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = if !ok {
        (
            401,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#.to_owned(),
        )
    } else if path == "/api/v1/namespaces" {
        (
            200,
            r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"default"}},{"metadata":{"name":"kube-system"}}]}"#.to_owned(),
        )
    } else {
        (
            404,
            format!(
                r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"{path} not found","reason":"NotFound","code":404}}"#
            ),
        )
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
