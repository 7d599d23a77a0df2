use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};

use crate::pki::TestCa;
use crate::server::ThreadServer;

/// Who a token belongs to, as a TokenReview answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The Kubernetes user name.
    pub username: String,
    /// A unique id.
    pub uid: String,
    /// Groups.
    pub groups: Vec<String>,
}

/// The future a [`TokenVerifier`] returns: the user, or why the token is refused.
pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<UserInfo, String>> + Send + 'a>>;

/// Decides who a bearer token belongs to: what EKS (aws-iam-authenticator), AKS (Entra) and GKE do on their side
/// of the wire. Verifiers for each cloud's tokens plug in here.
pub trait TokenVerifier: Send + Sync + 'static {
    /// The user the token authenticates, or why it does not.
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}

/// A verifier that knows a fixed set of tokens.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens(pub std::collections::HashMap<String, UserInfo>);

impl TokenVerifier for StaticTokens {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move { self.0.get(token).cloned().ok_or_else(|| "unknown token".to_owned()) })
    }
}

/// An HTTPS TokenReview webhook (`authentication.k8s.io/v1`) on loopback, for kube-apiserver's
/// `--authentication-token-webhook-config-file` (see [`TestClusterBuilder::token_webhook`]).
///
/// [`TestClusterBuilder::token_webhook`]: crate::TestClusterBuilder::token_webhook
pub struct TokenReviewWebhook {
    url: String,
    ca: TestCa,
    reviews: Arc<AtomicUsize>,
    _server: ThreadServer,
}

impl std::fmt::Debug for TokenReviewWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewWebhook").field("url", &self.url).finish_non_exhaustive()
    }
}

impl TokenReviewWebhook {
    /// Starts the webhook on a thread of its own (it serves whichever test runtime comes and goes).
    pub fn start(verifier: impl TokenVerifier) -> Self {
        let (ca, acceptor) = crate::pki::loopback_tls("kubeauth-test-webhook-ca");
        let reviews = Arc::new(AtomicUsize::new(0));
        let verifier: Arc<dyn TokenVerifier> = Arc::new(verifier);
        let counter = reviews.clone();
        let server = ThreadServer::start(Some(acceptor), move |req| {
            let (verifier, counter) = (verifier.clone(), counter.clone());
            async move { review(req, verifier.as_ref(), &counter).await }
        });
        Self { url: format!("https://{}/authenticate", server.addr()), ca, reviews, _server: server }
    }

    /// The webhook's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many reviews it has answered.
    pub fn reviews(&self) -> usize {
        self.reviews.load(Ordering::SeqCst)
    }

    /// The kubeconfig kube-apiserver reads to call the webhook.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: webhook\n    cluster:\n      server: {}\n      certificate-authority-data: {}\nusers:\n  - name: kube-apiserver\n    user: {{}}\ncontexts:\n  - name: webhook\n    context:\n      cluster: webhook\n      user: kube-apiserver\ncurrent-context: webhook\n",
            self.url,
            self.ca.ca_data()
        )
    }
}

async fn review(
    req: Request<hyper::body::Incoming>,
    verifier: &dyn TokenVerifier,
    counter: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let api_version = request["apiVersion"].as_str().unwrap_or("authentication.k8s.io/v1").to_owned();
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    counter.fetch_add(1, Ordering::SeqCst);
    let status = match verifier.verify(token).await {
        Ok(user) => serde_json::json!({
            "authenticated": true,
            "user": { "username": user.username, "uid": user.uid, "groups": user.groups }
        }),
        Err(reason) => {
            // Shown with the failing test's output: why the API server answered 401.
            eprintln!("token review: refused: {reason}");
            serde_json::json!({ "authenticated": false, "error": reason })
        }
    };
    let answer = serde_json::json!({ "apiVersion": api_version, "kind": "TokenReview", "status": status });
    crate::server::json(200, &answer)
}
