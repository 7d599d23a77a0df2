//! Entra ID's side, for the azure provider: access tokens as Entra issues them for AKS (RS256 JWTs with the
//! AKS server application as audience), their JWKS, a TokenReview verifier that validates them as AKS does, and
//! a fake `az` executable.
//!
//! No Entra ID emulator exists. The fake `az` answers `az account get-access-token -o json --scope S` exactly
//! as the real Azure CLI does (`accessToken`, `expiresOn`, `expires_on`, `subscription`, `tenant`, `tokenType`);
//! azure_identity's `AzureCliCredential` runs it unmodified.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::server::json;
use crate::{TokenVerifier, UserInfo, VerifyFuture};

/// The AKS server application: the audience of AKS tokens.
pub const AKS_AUDIENCE: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// A tenant's token signer: it mints tokens and publishes the JWKS that verifies them.
pub struct EntraTokens {
    /// The tenant id.
    pub tenant: String,
    key: EncodingKey,
    kid: String,
    jwks: JwkSet,
}

impl std::fmt::Debug for EntraTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraTokens").field("tenant", &self.tenant).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    aud: String,
    iss: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    oid: String,
    sub: String,
    tid: String,
    /// A unique token id, as Entra's `uti`.
    uti: String,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl EntraTokens {
    /// A signer for `tenant` with a fresh RSA key.
    pub fn new(tenant: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
        let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).expect("the key");
        let kid = crate::pki::random_hex(8);
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).expect("a JWK");
        jwk.common.key_id = Some(kid.clone());
        Self { tenant: tenant.to_owned(), key, kid, jwks: JwkSet { keys: vec![jwk] } }
    }

    /// The issuer of its tokens (Entra's v1 issuer, which AKS tokens carry).
    pub fn issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant)
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::to_value(&self.jwks).unwrap_or_default()
    }

    /// An access token for object id `oid`, audience `audience`, valid for `lifetime` (negative: expired).
    pub fn mint(&self, oid: &str, audience: &str, lifetime: i64) -> (String, u64) {
        let iat = now();
        let exp = iat.saturating_add_signed(lifetime);
        let claims = Claims {
            aud: audience.into(),
            iss: self.issuer(),
            iat,
            nbf: iat,
            exp,
            oid: oid.into(),
            sub: oid.into(),
            tid: self.tenant.clone(),
            uti: crate::pki::random_hex(8),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        (jsonwebtoken::encode(&header, &claims, &self.key).expect("a token"), exp)
    }

    /// The verifier AKS is: signature via the JWKS, audience, issuer, expiry; the user is the object id.
    pub fn verifier(&self) -> EntraVerifier {
        EntraVerifier { jwks: self.jwks.clone(), issuer: self.issuer() }
    }
}

/// Validates Entra access tokens for AKS; see [`EntraTokens::verifier`].
#[derive(Debug, Clone)]
pub struct EntraVerifier {
    jwks: JwkSet,
    issuer: String,
}

impl TokenVerifier for EntraVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(async move {
            let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
            let kid = header.kid.ok_or("the token has no kid")?;
            let jwk = self.jwks.find(&kid).ok_or("unknown signing key")?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_audience(&[AKS_AUDIENCE]);
            validation.set_issuer(&[self.issuer.as_str()]);
            validation.leeway = 0;
            let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
                .map_err(|e| format!("token refused: {e}"))?
                .claims;
            Ok(UserInfo { username: claims.oid.clone(), uid: claims.oid, groups: vec![] })
        })
    }
}

/// Writes an `az` into `dir` that answers `az account get-access-token -o json --scope <scope>` with `token`
/// as the Azure CLI does, and refuses any other command or scope as it would. Returns its path.
pub fn fake_az(dir: &Path, scope: &str, token: &str, expires_on: u64, tenant: &str) -> PathBuf {
    let expires = jiff_like_local(expires_on);
    let answer = serde_json::json!({
        "accessToken": token,
        "expiresOn": expires,
        "expires_on": expires_on,
        "subscription": "00000000-0000-0000-0000-000000000001",
        "tenant": tenant,
        "tokenType": "Bearer",
    });
    let script = format!(
        r#"#!/bin/sh
# A stand-in for the Azure CLI: `az account get-access-token`, as the real one answers it.
if [ "$1 $2" != "account get-access-token" ]; then
  echo "ERROR: '$1 $2' is not a command this test az knows" >&2; exit 2
fi
case " $* " in
  *" --scope {scope} "*) ;;
  *) echo "ERROR: AADSTS70011: The provided request must include a 'scope' input parameter." >&2; exit 1 ;;
esac
cat <<'JSON'
{answer}
JSON
"#
    );
    let path = dir.join("az");
    std::fs::write(&path, script).expect("write az");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod az");
    path
}

/// `expiresOn` as the CLI prints it: local time, `YYYY-MM-DD HH:MM:SS.ffffff` (here in UTC).
fn jiff_like_local(epoch: u64) -> String {
    let secs = epoch as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil from days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.000000", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// How the fake token endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer.
    Normal,
    /// Answer 503.
    Fail,
    /// Never answer.
    Hang,
}

struct EntraState {
    tokens: EntraTokens,
    url: std::sync::Mutex<String>,
    secrets: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    federated: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    certificates: std::sync::Mutex<std::collections::HashMap<String, (String, String)>>,
    identity_header: String,
    managed_oid: String,
    requests: std::sync::atomic::AtomicUsize,
    behaviour: std::sync::Mutex<Behaviour>,
    lifetime: std::sync::atomic::AtomicI64,
}

/// A fake of Entra ID's wire protocol over HTTPS, which azure_identity talks to unmodified through its standard
/// settings (a custom cloud's authority host, `IDENTITY_ENDPOINT`):
/// - `POST /{tenant}/oauth2/v2.0/token`: client credentials with `client_secret` or a `client_assertion`
///   (workload identity's federated token), answered with an RS256 access token for the scope's resource;
/// - `GET /{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/discovery/v2.0/keys` (JWKS);
/// - `GET /msi/token`: the App Service managed-identity endpoint (`X-IDENTITY-HEADER` required), and
///   `GET /metadata/identity/oauth2/token`: the IMDS one (`Metadata: true` required).
///
/// No Entra ID or IMDS emulator exists; this is the smallest thing that speaks their protocol.
pub struct FakeEntra {
    state: std::sync::Arc<EntraState>,
    ca: crate::pki::TestCa,
    _server: crate::server::ThreadServer,
    msi: crate::server::ThreadServer,
}

impl std::fmt::Debug for FakeEntra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEntra").field("url", &self.url()).finish_non_exhaustive()
    }
}

impl FakeEntra {
    /// Starts the fake for `tenant`; its managed identity has object id `managed_oid`.
    pub fn start(tenant: &str, managed_oid: &str) -> Self {
        let (ca, acceptor) = crate::pki::loopback_tls("kubeauth-test-entra-ca");
        let state = std::sync::Arc::new(EntraState {
            tokens: EntraTokens::new(tenant),
            url: Default::default(),
            secrets: Default::default(),
            federated: Default::default(),
            certificates: Default::default(),
            identity_header: crate::pki::random_hex(16),
            managed_oid: managed_oid.to_owned(),
            requests: Default::default(),
            behaviour: std::sync::Mutex::new(Behaviour::Normal),
            lifetime: std::sync::atomic::AtomicI64::new(3599),
        });
        let serve = |tls: Option<tokio_rustls::TlsAcceptor>| {
            let served = state.clone();
            crate::server::ThreadServer::start(tls, move |req| {
                let state = served.clone();
                async move { entra_handle(&state, req).await }
            })
        };
        let server = serve(Some(acceptor));
        // Managed-identity endpoints are plain HTTP on the host, as App Service's and IMDS are.
        let msi = serve(None);
        *state.url.lock().expect("lock") = format!("https://{}", server.addr());
        Self { state, ca, _server: server, msi }
    }

    /// The App Service managed-identity endpoint (`IDENTITY_ENDPOINT`), plain HTTP on loopback.
    pub fn identity_endpoint(&self) -> String {
        format!("http://{}/msi/token", self.msi.addr())
    }

    /// The authority host (`https://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        self.state.url.lock().expect("lock").clone()
    }

    /// The CA of its certificate.
    pub fn ca(&self) -> &crate::pki::TestCa {
        &self.ca
    }

    /// The secret the managed-identity endpoint requires (`IDENTITY_HEADER`).
    pub fn identity_header(&self) -> &str {
        &self.state.identity_header
    }

    /// The signer (for the API server's verifier).
    pub fn tokens(&self) -> &EntraTokens {
        &self.state.tokens
    }

    /// Registers a service principal with a client secret; its tokens carry object id `oid`.
    pub fn add_client_secret(&self, client_id: &str, secret: &str, oid: &str) {
        self.state.secrets.lock().expect("lock").insert(client_id.into(), (secret.into(), oid.into()));
    }

    /// Registers a federated credential: `assertion` (the projected token's content) for `client_id`.
    pub fn add_federated(&self, client_id: &str, assertion: &str, oid: &str) {
        self.state.federated.lock().expect("lock").insert(client_id.into(), (assertion.into(), oid.into()));
    }

    /// Registers a service principal with a client certificate; returns the PEM file (certificate and RSA key)
    /// for `AZURE_CLIENT_CERTIFICATE_PATH`.
    pub fn add_client_certificate(&self, client_id: &str, oid: &str) -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
        let mut params = rcgen::CertificateParams::new(vec!["kubeauth-test-client".into()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, client_id);
        let cert = params.self_signed(&key).expect("a certificate");
        self.state.certificates.lock().expect("lock").insert(client_id.into(), (key.public_key_pem(), oid.into()));
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    /// How many token requests it has had.
    pub fn requests(&self) -> usize {
        self.state.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on, answer, fail or hang.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().expect("lock") = behaviour;
    }

    /// The lifetime of the tokens it issues from now on, in seconds.
    pub fn set_token_lifetime(&self, seconds: i64) {
        self.state.lifetime.store(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

fn form_field(form: &str, name: &str) -> Option<String> {
    form.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| crate::aws::decode(&v.replace('+', " ")).ok()).flatten()
    })
}

async fn entra_handle(
    state: &EntraState,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt as _;
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (metadata, identity_header) = (header("metadata"), header("x-identity-header"));
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let form = String::from_utf8_lossy(&body).into_owned();
    let tenant = state.tokens.tenant.clone();
    let url = state.url.lock().expect("lock").clone();
    let lifetime = state.lifetime.load(std::sync::atomic::Ordering::SeqCst);

    if path == format!("/{tenant}/v2.0/.well-known/openid-configuration") {
        return json(
            200,
            &serde_json::json!({
                "issuer": state.tokens.issuer(),
                "token_endpoint": format!("{url}/{tenant}/oauth2/v2.0/token"),
                "jwks_uri": format!("{url}/{tenant}/discovery/v2.0/keys"),
            }),
        );
    }
    if path == format!("/{tenant}/discovery/v2.0/keys") {
        return json(200, &state.tokens.jwks());
    }

    let is_token = path == format!("/{tenant}/oauth2/v2.0/token")
        || path == "/msi/token"
        || path == "/metadata/identity/oauth2/token";
    if !is_token {
        return json(404, &serde_json::json!({"error": "not_found"}));
    }
    state.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let behaviour = *state.behaviour.lock().expect("lock");
    match behaviour {
        Behaviour::Hang => std::future::pending::<()>().await,
        Behaviour::Fail => {
            return json(
                503,
                &serde_json::json!({"error": "temporarily_unavailable", "error_description": "AADSTS90033: A transient error has occurred."}),
            );
        }
        Behaviour::Normal => {}
    }
    let resource = |scope: &str| scope.trim_end_matches("/.default").to_owned();

    if path == "/msi/token" || path == "/metadata/identity/oauth2/token" {
        let allowed = if path == "/msi/token" {
            identity_header.as_deref() == Some(state.identity_header.as_str())
        } else {
            metadata.as_deref() == Some("true")
        };
        if !allowed {
            return json(
                400,
                &serde_json::json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            );
        }
        let audience = form_field(&query, "resource").unwrap_or_default();
        let (token, expires_on) = state.tokens.mint(&state.managed_oid, audience.trim_end_matches('/'), lifetime);
        return json(
            200,
            &serde_json::json!({
                "access_token": token,
                "expires_on": expires_on.to_string(),
                "expires_in": lifetime.to_string(),
                "resource": audience,
                "token_type": "Bearer",
            }),
        );
    }

    if form_field(&form, "grant_type").as_deref() != Some("client_credentials") {
        return json(400, &serde_json::json!({"error": "unsupported_grant_type"}));
    }
    let client_id = form_field(&form, "client_id").unwrap_or_default();
    let scope = form_field(&form, "scope").unwrap_or_default();
    let oid = if let Some(secret) = form_field(&form, "client_secret") {
        match state.secrets.lock().expect("lock").get(&client_id) {
            Some((known, oid)) if *known == secret => oid.clone(),
            _ => {
                return json(
                    401,
                    &serde_json::json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
                );
            }
        }
    } else if let Some(assertion) = form_field(&form, "client_assertion")
        && let Some((public, oid)) = state.certificates.lock().expect("lock").get(&client_id).cloned()
    {
        // A certificate's assertion: RS256 by the registered key, for this token endpoint, from this client.
        let audience = format!("{url}/{tenant}/oauth2/v2.0/token");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[audience.as_str()]);
        validation.set_issuer(&[client_id.as_str()]);
        let key = DecodingKey::from_rsa_pem(public.as_bytes()).expect("the registered key");
        match jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &validation) {
            Ok(data) if data.claims["sub"] == client_id.as_str() => oid,
            _ => {
                return json(
                    401,
                    &serde_json::json!({"error": "invalid_client", "error_description": "AADSTS700027: Client assertion contains an invalid signature."}),
                );
            }
        }
    } else if let Some(assertion) = form_field(&form, "client_assertion") {
        match state.federated.lock().expect("lock").get(&client_id) {
            Some((known, oid)) if *known == assertion => oid.clone(),
            _ => {
                return json(
                    401,
                    &serde_json::json!({"error": "invalid_client", "error_description": "AADSTS70021: No matching federated identity record found for presented assertion."}),
                );
            }
        }
    } else {
        return json(
            400,
            &serde_json::json!({"error": "invalid_request", "error_description": "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required."}),
        );
    };
    let (token, _) = state.tokens.mint(&oid, &resource(&scope), lifetime);
    json(
        200,
        &serde_json::json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}),
    )
}

/// A kube-apiserver that authenticates Entra ID tokens of a [`FakeEntra`] through its TokenReview webhook,
/// shared by the tests of a binary.
pub struct AzureTestEnv {
    /// Entra ID and IMDS.
    pub entra: FakeEntra,
    /// The webhook the API server asks.
    pub webhook: crate::TokenReviewWebhook,
    /// The API server.
    pub cluster: crate::TestCluster,
}

impl std::fmt::Debug for AzureTestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureTestEnv").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl AzureTestEnv {
    /// Entra ID of `tenant` (its managed identity `managed_oid`) and an API server that trusts its tokens.
    pub fn start(tenant: &str, managed_oid: &str) -> Self {
        let entra = FakeEntra::start(tenant, managed_oid);
        let (cluster, webhook) = crate::TestCluster::start_with_verifier(entra.tokens().verifier());
        Self { entra, webhook, cluster }
    }
}
