//! Backstage tokens as API credentials (`kubeauth.server.auth.backstage`): a signed-in user's token, as
//! Backstage's frontend sends it, and a backend plugin's service token, checked as Backstage's own backend checks
//! them.
//!
//! - User tokens (`typ: vnd.backstage.user` or `vnd.backstage.limited-user`, or untyped with `aud: backstage`)
//!   are verified against the auth backend's keys, `<baseUrl>/api/auth/.well-known/jwks.json`.
//! - Plugin tokens (`typ: vnd.backstage.plugin`) are accepted from the listed plugins only, addressed (`aud`) to
//!   kubeauth's plugin id, and verified against the calling plugin's keys,
//!   `<baseUrl>/api/<plugin>/.backstage/auth/v1/jwks.json`; an `obo` user token in it names the user.
//!
//! Only asymmetric algorithms are accepted (never `none` or an HMAC), `iat`, `exp` and `sub` are required,
//! expiry is checked with the configured clock skew. Key sets are cached; a key id not in the cache fetches
//! the set again, at most once per 10 seconds per set, so unknown key ids cannot make the server
//! hammer the backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kubeauth::locator::catalog::BackstageBackend;
use serde::Deserialize;

/// The least time between two fetches of one key set.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// How long a fetched key set is used before it is fetched again (keys may have been revoked).
const KEYS_FRESH_FOR: Duration = Duration::from_secs(600);
/// The longest token looked at.
const MAX_TOKEN_LENGTH: usize = 16 * 1024;

const USER: &str = "vnd.backstage.user";
const LIMITED_USER: &str = "vnd.backstage.limited-user";
const PLUGIN: &str = "vnd.backstage.plugin";

/// Who a verified Backstage token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackstageCaller {
    /// A signed-in user: the user entity (`user:default/jane`), and the entities the user belongs to (the
    /// token's `ent` claim; empty in a limited token).
    User {
        /// The user entity reference.
        entity_ref: String,
        /// The ownership entity references.
        ownership: Vec<String>,
    },
    /// A backend plugin (`catalog`, `scaffolder`), on behalf of a user when its token says so.
    Plugin {
        /// The plugin id.
        plugin: String,
        /// The user entity reference of the `obo` token.
        on_behalf_of: Option<String>,
    },
}

/// The settings of [`BackstageTokens`].
#[derive(Clone, Debug)]
pub struct BackstageTokenSettings {
    /// The plugins whose service tokens are accepted.
    pub plugins: Vec<String>,
    /// The plugin id plugin tokens must be addressed to (`kubernetes`).
    pub plugin_id: String,
    /// Clock difference allowed when checking expiry.
    pub clock_skew: Duration,
}

impl Default for BackstageTokenSettings {
    fn default() -> Self {
        Self { plugins: Vec::new(), plugin_id: "kubernetes".into(), clock_skew: Duration::from_secs(30) }
    }
}

struct KeySet {
    keys: Arc<HashMap<String, (DecodingKey, Algorithm)>>,
    fetched: Instant,
}

/// The verifier of a Backstage backend's tokens.
pub struct BackstageTokens {
    backend: BackstageBackend,
    settings: BackstageTokenSettings,
    key_sets: Mutex<HashMap<String, KeySet>>,
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for BackstageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackstageTokens")
            .field("base_url", &self.backend.base_url())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(rename = "iat")]
    _iat: u64,
    #[serde(default)]
    ent: Vec<String>,
    #[serde(default)]
    obo: Option<String>,
}

impl BackstageTokens {
    /// Tokens of the Backstage backend `backend`.
    pub fn new(backend: BackstageBackend, settings: BackstageTokenSettings) -> Self {
        Self { backend, settings, key_sets: Mutex::default(), fetching: tokio::sync::Mutex::new(()) }
    }

    /// Whether `token` looks like a JWT (three dot-separated parts), so that it is worth verifying.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.len() <= MAX_TOKEN_LENGTH && token.split('.').count() == 3
    }

    /// Who `token` speaks for, or why it is refused (a message without the token).
    pub async fn verify(&self, token: &str) -> Result<BackstageCaller, String> {
        if !Self::looks_like_jwt(token) {
            return Err("not a Backstage token".into());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a Backstage token: {e}"))?;
        match header.typ.as_deref() {
            Some(PLUGIN) => {
                let unverified = jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(token)
                    .map_err(|e| format!("a plugin token without its claims: {e}"))?;
                let plugin = unverified.sub;
                if !plugin_id_allowed(&plugin) || !self.settings.plugins.contains(&plugin) {
                    return Err(format!(
                        "plugin tokens of `{plugin}` are not accepted (kubeauth.server.auth.backstage.plugins)"
                    ));
                }
                let path = format!("/api/{plugin}/.backstage/auth/v1/jwks.json");
                let claims = self.check(token, &header, &path, Some(&self.settings.plugin_id)).await?;
                let on_behalf_of = match &claims.obo {
                    Some(obo) => match Box::pin(self.verify(obo)).await? {
                        BackstageCaller::User { entity_ref, .. } => Some(entity_ref),
                        BackstageCaller::Plugin { .. } => return Err("a plugin token on behalf of a plugin".into()),
                    },
                    None => None,
                };
                Ok(BackstageCaller::Plugin { plugin, on_behalf_of })
            }
            typ @ (Some(USER) | Some(LIMITED_USER) | None) => {
                // A limited token carries no audience; a full one, and an untyped one, is for `backstage`.
                let audience = (typ != Some(LIMITED_USER)).then_some("backstage");
                let claims = self.check(token, &header, "/api/auth/.well-known/jwks.json", audience).await?;
                Ok(BackstageCaller::User { entity_ref: claims.sub, ownership: claims.ent })
            }
            Some(other) => Err(format!("a token of type `{other}` is not a Backstage user or plugin token")),
        }
    }

    /// The claims of `token` once its signature (a key of the set at `path`), expiry and audience are checked.
    async fn check(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        path: &str,
        audience: Option<&str>,
    ) -> Result<Claims, String> {
        if !is_asymmetric(header.alg) {
            return Err(format!("the algorithm {:?} is not accepted", header.alg));
        }
        let kid = header.kid.as_deref().ok_or("the token names no key (kid)")?;
        let (key, alg) = self.key(path, kid).await?;
        if alg != header.alg {
            return Err(format!("key {kid} is for {alg:?}, the token says {:?}", header.alg));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.settings.clock_skew.as_secs();
        match audience {
            // A token without `aud` passes an audience check unless the claim is required.
            Some(aud) => {
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
                validation.set_audience(&[aud]);
            }
            None => {
                validation.set_required_spec_claims(&["exp", "sub"]);
                validation.validate_aud = false;
            }
        }
        jsonwebtoken::decode::<Claims>(token, &key, &validation).map(|data| data.claims).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
            jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                format!("the token is not addressed to `{}`", audience.unwrap_or_default())
            }
            _ => format!("the token does not verify: {e}"),
        })
    }

    /// The key `kid` of the set at `path`: from the cache, or from a fetch when the cached set lacks it (or is
    /// old) and was not fetched within [`REFETCH_AFTER`].
    async fn key(&self, path: &str, kid: &str) -> Result<(DecodingKey, Algorithm), String> {
        let cached = |sets: &HashMap<String, KeySet>| {
            sets.get(path).map(|set| (set.keys.get(kid).cloned(), set.fetched.elapsed()))
        };
        let lookup = cached(&self.key_sets.lock().unwrap_or_else(|p| p.into_inner()));
        match lookup {
            Some((Some(key), age)) if age < KEYS_FRESH_FOR => return Ok(key),
            Some((_, age)) if age < REFETCH_AFTER => return Err(format!("no key {kid} in the key set")),
            _ => {}
        }
        let _turn = self.fetching.lock().await;
        // Another request may have fetched the set while this one waited.
        if let Some((found, age)) = cached(&self.key_sets.lock().unwrap_or_else(|p| p.into_inner()))
            && age < REFETCH_AFTER
        {
            return found.ok_or_else(|| format!("no key {kid} in the key set"));
        }
        let fetched = self.backend.get_json(path, &[], None).await;
        let keys = match fetched {
            Ok(Some(value)) => {
                let set: JwkSet = serde_json::from_value(value)
                    .map_err(|e| format!("the key set at {}{path} is not a JWK set: {e}", self.backend.base_url()))?;
                decoding_keys(&set)
            }
            Ok(None) => HashMap::new(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch a Backstage key set");
                return Err(format!("cannot fetch the key set: {e}"));
            }
        };
        let found = keys.get(kid).cloned();
        let set = KeySet { keys: Arc::new(keys), fetched: Instant::now() };
        self.key_sets.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_owned(), set);
        found.ok_or_else(|| format!("no key {kid} in the key set"))
    }
}

/// Backstage's rule for plugin ids: letters, digits, `_` and `-`.
pub(crate) fn plugin_id_allowed(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The usable keys of a set by key id: asymmetric keys with an id; the algorithm from the key's `alg`, or the
/// one its curve implies.
fn decoding_keys(set: &JwkSet) -> HashMap<String, (DecodingKey, Algorithm)> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
                (Some(alg), _) => alg.to_string().parse::<Algorithm>().ok()?,
                (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
                    EllipticCurve::P256 => Algorithm::ES256,
                    EllipticCurve::P384 => Algorithm::ES384,
                    _ => return None,
                },
                (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
                (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
                (None, _) => return None,
            };
            if !is_asymmetric(alg) || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return None;
            }
            Some((kid, (DecodingKey::from_jwk(jwk).ok()?, alg)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_ids_follow_backstages_rule() {
        assert!(plugin_id_allowed("catalog") && plugin_id_allowed("my_plugin-2"));
        assert!(!plugin_id_allowed("") && !plugin_id_allowed("../auth") && !plugin_id_allowed("a/b"));
    }

    #[test]
    fn symmetric_keys_never_verify_tokens() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "oct", "kid": "shared", "k": "c2VjcmV0", "alg": "HS256"},
        ]}))
        .expect("a key set");
        assert!(decoding_keys(&set).is_empty());
        assert!(!is_asymmetric(Algorithm::HS256) && is_asymmetric(Algorithm::ES256));
    }
}
