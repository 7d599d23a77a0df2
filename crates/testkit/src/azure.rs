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
