//! Google's side, for the googleServiceAccount provider and the gke locator.
//!
//! No emulator exists for Google's OAuth token endpoint or the GKE API, so [`FakeGoogle`] is a small fake of
//! their real wire protocols, which the provider's HTTP client and google-cloud-auth talk to unmodified:
//! - `POST /token`: the RFC 7523 jwt-bearer grant; the RS256 assertion is verified against the service
//!   account's public key, with `aud` (its own URL or Google's), `iat` and `exp` checked as Google does; the
//!   answer is `{access_token, expires_in, token_type}`, an error `{error, error_description}` with 400;
//! - `GET /v1/projects/{project}/locations/{location}/clusters`: the clusters a test sets, for a token it issued;
//! - [`TokenVerifier`]: the access tokens it issued map to the service account's e-mail, for the API server's
//!   TokenReview webhook (what GKE's authenticator does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};

use crate::server::{ThreadServer, json};
use crate::{TokenVerifier, UserInfo, VerifyFuture};

#[derive(Default)]
struct State {
    token_url: Mutex<String>,
    public_keys: Mutex<HashMap<String, String>>,
    tokens: Mutex<HashMap<String, String>>,
    clusters: Mutex<HashMap<(String, String), serde_json::Value>>,
    token_requests: AtomicUsize,
}

/// The fake; see the [module docs](self).
pub struct FakeGoogle {
    url: String,
    state: Arc<State>,
    _server: ThreadServer,
}

impl std::fmt::Debug for FakeGoogle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGoogle").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The access tokens a [`FakeGoogle`] issued, as a TokenReview verifier: token → the service account's e-mail.
#[derive(Clone)]
pub struct GoogleTokenVerifier(Arc<State>);

impl std::fmt::Debug for GoogleTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GoogleTokenVerifier")
    }
}

impl TokenVerifier for GoogleTokenVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            let email = self.0.tokens.lock().expect("lock").get(token).cloned().ok_or("unknown Google access token")?;
            Ok(UserInfo { username: email.clone(), uid: email, groups: vec!["system:authenticated".into()] })
        })
    }
}

impl FakeGoogle {
    /// Starts the fake on a loopback port, on a thread of its own.
    pub fn start() -> Self {
        let state = Arc::new(State::default());
        let served = state.clone();
        let server = ThreadServer::start(None, move |req| {
            let state = served.clone();
            async move { handle(&state, req).await }
        });
        let url = format!("http://{}", server.addr());
        *state.token_url.lock().expect("lock") = format!("{url}/token");
        Self { url, state, _server: server }
    }

    /// The base URL (the GKE API's base URL for the gke locator's `apiBaseUrl`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token endpoint, as keys' `token_uri`.
    pub fn token_url(&self) -> String {
        self.state.token_url.lock().expect("lock").clone()
    }

    /// A new service account: its key file's JSON (RSA key, `token_uri` pointing here).
    pub fn service_account(&self, email: &str) -> String {
        let (key_json, public_pem) = key_json(email, &self.token_url());
        self.state.public_keys.lock().expect("lock").insert(email.to_owned(), public_pem);
        key_json
    }

    /// A key file for a known service account but with a private key that is not its key.
    pub fn forged_key(&self, email: &str) -> String {
        key_json(email, &self.token_url()).0
    }

    /// What `GET /v1/projects/{project}/locations/{location}/clusters` answers: `{"clusters": clusters}`.
    pub fn set_clusters(&self, project: &str, location: &str, clusters: serde_json::Value) {
        self.state.clusters.lock().expect("lock").insert((project.into(), location.into()), clusters);
    }

    /// How many token requests it answered (granted or refused).
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// The verifier of the tokens it issued.
    pub fn verifier(&self) -> GoogleTokenVerifier {
        GoogleTokenVerifier(self.state.clone())
    }
}

fn key_json(email: &str, token_uri: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "kubeauth-test",
        "private_key_id": crate::pki::random_hex(8),
        "private_key": key.serialize_pem(),
        "client_email": email,
        "client_id": "1000000000000000000",
        "token_uri": token_uri,
    });
    (json.to_string(), key.public_key_pem())
}

async fn handle(state: &State, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if method == hyper::Method::POST && path == "/token" {
        state.token_requests.fetch_add(1, Ordering::SeqCst);
        return match grant(state, &String::from_utf8_lossy(&body)) {
            Ok((token, email)) => {
                state.tokens.lock().expect("lock").insert(token.clone(), email);
                json(200, &serde_json::json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
            }
            Err(description) => {
                json(400, &serde_json::json!({"error": "invalid_grant", "error_description": description}))
            }
        };
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["v1", "projects", project, "locations", location, "clusters"] = parts[..] {
        if !bearer.is_some_and(|t| state.tokens.lock().expect("lock").contains_key(&t)) {
            return json(
                401,
                &serde_json::json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
            );
        }
        let clusters =
            state.clusters.lock().expect("lock").get(&((*project).to_owned(), (*location).to_owned())).cloned();
        return json(200, &serde_json::json!({ "clusters": clusters.unwrap_or_else(|| serde_json::json!([])) }));
    }
    json(404, &serde_json::json!({"error": {"code": 404, "message": format!("{path} not found")}}))
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    iat: u64,
    exp: u64,
}

/// The jwt-bearer grant, checked as Google checks it.
fn grant(state: &State, form: &str) -> Result<(String, String), String> {
    let field = |name: &str| {
        form.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| crate::aws::decode(v).ok()).flatten()
        })
    };
    if field("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return Err("Invalid grant_type.".into());
    }
    let assertion = field("assertion").ok_or("Missing required parameter: assertion")?;
    // The issuer names the key to check the signature with.
    let payload = assertion.split('.').nth(1).ok_or("Invalid JWT.")?;
    use base64::Engine as _;
    let unverified: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("Invalid JWT.")?;
    let iss = unverified["iss"].as_str().ok_or("Invalid JWT: no iss.")?;
    let public = state.public_keys.lock().expect("lock").get(iss).cloned().ok_or("Invalid issuer: No such account.")?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).map_err(|e| e.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    let token_url = state.token_url.lock().expect("lock").clone();
    validation.set_audience(&[token_url.as_str(), "https://oauth2.googleapis.com/token"]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
    let claims = jsonwebtoken::decode::<Claims>(&assertion, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "Invalid JWT Signature.".to_owned(),
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                "Invalid JWT: Token must be a short-lived token.".to_owned()
            }
            jsonwebtoken::errors::ErrorKind::InvalidAudience => "Invalid JWT: audience.".to_owned(),
            other => format!("Invalid JWT: {other:?}"),
        })?
        .claims;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    if claims.iat > now + 60 || claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    if !claims.scope.split(' ').any(|s| s == "https://www.googleapis.com/auth/cloud-platform") {
        return Err("Invalid scope.".into());
    }
    Ok((format!("ya29.fake-{}", crate::pki::random_hex(24)), claims.iss))
}
