//! A stand-in for the token issuers of a Backstage backend: the auth backend's user tokens and a backend
//! plugin's service tokens, with the key sets a Backstage backend publishes for them.
//!
//! A real Backstage backend needs a database and a whole plugin system to run, which this test environment does
//! not have, so this serves the two public endpoints kubeauth reads in their real wire format —
//! `GET /api/auth/.well-known/jwks.json` (the auth backend's keys) and
//! `GET /api/<plugin>/.backstage/auth/v1/jwks.json` (a plugin's keys) — and signs tokens as Backstage's
//! `TokenFactory` and `PluginTokenHandler` do: ES256 with a `kid`, `typ: vnd.backstage.user` with
//! `iss`/`sub`/`ent`/`aud: backstage`/`iat`/`exp`, `typ: vnd.backstage.plugin` with `sub` (the calling plugin),
//! `aud` (the target plugin), `iat`, `exp` and an optional `obo` limited user token.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::server::ThreadServer;

/// One signing key: its id, private key and public JWK.
struct SigningKey {
    kid: String,
    private_pem: String,
    jwk: Value,
}

impl SigningKey {
    fn generate() -> Self {
        let pair = rcgen::KeyPair::generate().expect("generate a P-256 key");
        let point = pair.public_key_raw();
        // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
        let (x, y) = point[1..].split_at(32);
        let kid = crate::pki::random_hex(8);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        Self { kid, private_pem: pair.serialize_pem(), jwk }
    }

    fn sign(&self, typ: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ec_pem(self.private_pem.as_bytes()).expect("an EC key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign a token")
    }
}

#[derive(Default)]
struct Issuers {
    /// The auth backend's keys (user tokens), newest last.
    auth: Vec<SigningKey>,
    /// Each plugin's keys (service tokens).
    plugins: Vec<(String, SigningKey)>,
}

/// The stand-in; stops when dropped.
pub struct FakeBackstageAuth {
    url: String,
    issuers: Arc<Mutex<Issuers>>,
    key_set_requests: Arc<AtomicUsize>,
    _server: ThreadServer,
}

impl std::fmt::Debug for FakeBackstageAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBackstageAuth").field("url", &self.url).finish_non_exhaustive()
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl FakeBackstageAuth {
    /// Starts it with one auth backend key and one key for each plugin of `plugins`.
    pub fn start(plugins: &[&str]) -> Self {
        let issuers = Arc::new(Mutex::new(Issuers {
            auth: vec![SigningKey::generate()],
            plugins: plugins.iter().map(|p| ((*p).to_owned(), SigningKey::generate())).collect(),
        }));
        let key_set_requests = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (issuers.clone(), key_set_requests.clone());
        let server = ThreadServer::start(None, move |req| {
            let path = req.uri().path().to_owned();
            let (issuers, counted) = (served.clone(), counted.clone());
            async move {
                let issuers = issuers.lock().expect("lock");
                let keys: Option<Vec<Value>> = if path == "/api/auth/.well-known/jwks.json" {
                    Some(issuers.auth.iter().map(|k| k.jwk.clone()).collect())
                } else {
                    path.strip_prefix("/api/")
                        .and_then(|rest| rest.strip_suffix("/.backstage/auth/v1/jwks.json"))
                        .filter(|plugin| issuers.plugins.iter().any(|(p, _)| p == plugin))
                        .map(|plugin| {
                            issuers.plugins.iter().filter(|(p, _)| p == plugin).map(|(_, k)| k.jwk.clone()).collect()
                        })
                };
                match keys {
                    Some(keys) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        crate::server::json(200, &json!({ "keys": keys }))
                    }
                    None => crate::server::json(404, &json!({"error": {"name": "NotFoundError"}})),
                }
            }
        });
        Self { url: format!("http://{}", server.addr()), issuers, key_set_requests, _server: server }
    }

    /// The backend's base URL (`kubeauth.server.auth.backstage.baseUrl`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many key sets have been served so far.
    pub fn key_set_requests(&self) -> usize {
        self.key_set_requests.load(Ordering::SeqCst)
    }

    /// A user token as the auth backend issues it at sign-in: `sub` the user entity, `ent` its ownership
    /// references, valid for `ttl_seconds` (negative: already expired).
    pub fn user_token(&self, user: &str, ownership: &[&str], ttl_seconds: i64) -> String {
        let issuers = self.issuers.lock().expect("lock");
        let key = issuers.auth.last().expect("an auth key");
        let iat = now();
        let claims = json!({
            "iss": format!("{}/api/auth", self.url), "sub": user, "ent": ownership,
            "aud": "backstage", "iat": iat, "exp": iat + ttl_seconds,
        });
        key.sign("vnd.backstage.user", &claims)
    }

    /// A user token with `claims` as they are (to try tokens the auth backend would not issue), signed with the
    /// auth backend's key as `vnd.backstage.user`.
    pub fn signed_user_claims(&self, claims: &Value) -> String {
        let issuers = self.issuers.lock().expect("lock");
        issuers.auth.last().expect("an auth key").sign("vnd.backstage.user", claims)
    }

    /// A service token of `plugin` for `target` (Backstage's `getPluginRequestToken`), valid for an hour,
    /// on behalf of a user when `on_behalf_of` holds a user token.
    pub fn plugin_token(&self, plugin: &str, target: &str, on_behalf_of: Option<&str>) -> String {
        let issuers = self.issuers.lock().expect("lock");
        let key = issuers.plugins.iter().find(|(p, _)| p == plugin).map(|(_, k)| k).expect("a key of the plugin");
        let iat = now();
        let mut claims = json!({ "sub": plugin, "aud": target, "iat": iat, "exp": iat + 3600 });
        if let Some(user_token) = on_behalf_of {
            claims["obo"] = Value::from(limited(user_token, &issuers.auth));
        }
        key.sign("vnd.backstage.plugin", &claims)
    }

    /// A new auth backend key replaces the old ones (tokens signed before no longer verify).
    pub fn rotate_user_key(&self) {
        self.issuers.lock().expect("lock").auth = vec![SigningKey::generate()];
    }
}

/// The limited form of a user token (`typ: vnd.backstage.limited-user`, only `sub`/`iat`/`exp`), signed by the
/// same key, as Backstage's auth backend makes it for `obo` and cookies.
fn limited(user_token: &str, keys: &[SigningKey]) -> String {
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(user_token).expect("a user token").claims;
    let key = keys.last().expect("an auth key");
    key.sign("vnd.backstage.limited-user", &json!({"sub": claims["sub"], "iat": claims["iat"], "exp": claims["exp"]}))
}
