//! AWS peers: moto's STS on loopback ([`MotoSts`]) and the EKS side of token authentication
//! ([`EksTokenVerifier`]), a [`TokenVerifier`] for the API server's TokenReview webhook.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::{Supervised, TokenVerifier, UserInfo, VerifyFuture, free_port, http};

/// The folder of the Python test peers' virtual environments (`cargo xtask test` fills it):
/// `KUBEAUTH_PYTHON_PEERS`, else `~/.cache/kubeauth/python`.
pub fn python_peers_dir() -> PathBuf {
    std::env::var_os("KUBEAUTH_PYTHON_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::EnvtestBinaries::cache_dir().parent().map(|p| p.join("python")).unwrap_or_default())
}

/// A Python tool of the peers' virtual environments (`moto/bin/python`, `awscli/bin/aws`), or a panic saying
/// how to get it.
pub fn python_peer(relative: &str) -> PathBuf {
    let path = python_peers_dir().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo xtask test`, which installs the Python test peers (moto, awscli)",
        path.display()
    );
    path
}

/// moto's STS server on a loopback port, wrapped to answer presigned GetCallerIdentity requests as STS does
/// (see `peers/moto_sts.py`).
pub struct MotoSts {
    url: String,
    addr: String,
    _process: Supervised,
}

impl std::fmt::Debug for MotoSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotoSts").field("url", &self.url).finish()
    }
}

impl MotoSts {
    /// Starts moto; AssumeRole of each `(role ARN, external id)` in `external_ids` requires that external id.
    pub fn start(external_ids: &[(&str, &str)]) -> Self {
        let python = python_peer("moto/bin/python");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/moto_sts.py");
        let port = free_port();
        let scratch = tempfile::Builder::new().prefix("kubeauth-moto-").tempdir().expect("temp dir").keep();
        let mut args = vec![script.display().to_string(), "--port".into(), port.to_string()];
        for (role, id) in external_ids {
            args.push("--external-id".into());
            args.push(format!("{role}={id}"));
        }
        let process = Supervised::start("moto", &python, &args, &scratch.join("moto.log"), Some(&scratch));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(!process.has_exited(), "moto stopped: {}", process.log_tail(20));
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not listen: {}", process.log_tail(20));
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { url: format!("http://127.0.0.1:{port}"), addr: format!("127.0.0.1:{port}"), _process: process }
    }

    /// moto's URL, for `AWS_ENDPOINT_URL_STS`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// The EKS side of token authentication, for the TokenReview webhook: aws-iam-authenticator's checks of the
/// token and its presigned URL, a SigV4 signature check (moto does not check presigned signatures), then
/// GetCallerIdentity at moto for the identity, whose ARN (an assumed role's ARN maps to the role) is mapped to a
/// Kubernetes user.
#[derive(Debug, Clone)]
pub struct EksTokenVerifier {
    /// This cluster's id: what STS sees in `x-k8s-aws-id`.
    pub cluster_id: String,
    /// Where GetCallerIdentity goes (moto), `host:port`.
    pub sts_addr: String,
    /// Secrets by access key id, for the signature check; keys issued by moto's AssumeRole are asked of moto.
    pub secrets: HashMap<String, String>,
    /// IAM ARN → Kubernetes user name.
    pub users: HashMap<String, String>,
}

const ALLOWED_PARAMS: [&str; 9] = [
    "action",
    "version",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-signedheaders",
];

impl EksTokenVerifier {
    /// The checks aws-iam-authenticator makes before it calls STS, and the signature check STS makes. Returns
    /// the query string to replay to STS.
    pub fn check(&self, token: &str, now: SystemTime) -> Result<String, String> {
        if token.len() > 4096 {
            return Err("token is too long".into());
        }
        let b64 = token.strip_prefix("k8s-aws-v1.").ok_or("token has no k8s-aws-v1. prefix")?;
        if b64.contains('=') {
            return Err("token is padded".into());
        }
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|e| format!("token is not base64url: {e}"))?;
        let url = String::from_utf8(url).map_err(|_| "token URL is not UTF-8")?;
        let rest = url.strip_prefix("https://").ok_or("token URL is not https")?;
        let (host, path_query) = rest.split_once('/').ok_or("token URL has no path")?;
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        if !path.is_empty() {
            return Err(format!("token URL path is /{path}, not /"));
        }
        let region = sts_region(host).ok_or_else(|| format!("token URL host {host} is not an STS endpoint"))?;

        let mut params: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            let lower = k.to_ascii_lowercase();
            if !ALLOWED_PARAMS.contains(&lower.as_str()) {
                return Err(format!("token URL has a parameter that is not allowed: {k}"));
            }
            if params.iter().any(|(seen, _)| seen.eq_ignore_ascii_case(&k)) {
                return Err(format!("token URL has {k} twice"));
            }
            params.push((k, v));
        }
        let get = |name: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        if get("action") != Some("GetCallerIdentity") {
            return Err("token URL action is not GetCallerIdentity".into());
        }
        let signed_headers = get("x-amz-signedheaders").ok_or("token URL has no X-Amz-SignedHeaders")?;
        if !signed_headers.split(';').any(|h| h == "x-k8s-aws-id") {
            return Err("x-k8s-aws-id is not signed".into());
        }
        let expires: u64 =
            get("x-amz-expires").and_then(|e| e.parse().ok()).ok_or("X-Amz-Expires is missing or not a number")?;
        if expires > 900 {
            return Err(format!("X-Amz-Expires {expires} is over 900"));
        }
        let date = get("x-amz-date").ok_or("X-Amz-Date is missing")?;
        let signed_at = parse_amz_date(date).ok_or_else(|| format!("X-Amz-Date {date} is malformed"))?;
        if now.duration_since(signed_at).is_ok_and(|age| age > Duration::from_secs(15 * 60)) {
            return Err("token is older than 15 minutes".into());
        }

        // What STS does: recompute the signature over what aws-iam-authenticator sends it.
        if signed_headers != "host;x-k8s-aws-id" {
            return Err(format!("signed headers {signed_headers} are not host;x-k8s-aws-id"));
        }
        let credential = get("x-amz-credential").ok_or("X-Amz-Credential is missing")?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [key, day, scope_region, service, "aws4_request"] = scope[..] else {
            return Err("X-Amz-Credential is malformed".into());
        };
        if scope_region != region || service != "sts" {
            return Err("the signature's scope does not match the endpoint".into());
        }
        let secret = match self.secrets.get(key) {
            Some(secret) => secret.clone(),
            None => issued_secret(&self.sts_addr, key)?,
        };
        let mut canonical_query: Vec<(String, String)> =
            params.iter().filter(|(k, _)| k != "X-Amz-Signature").map(|(k, v)| (encode(k), encode(v))).collect();
        canonical_query.sort();
        let canonical_query = canonical_query.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let canonical_request = format!(
            "GET\n/\n{canonical_query}\nhost:{host}\nx-k8s-aws-id:{}\n\nhost;x-k8s-aws-id\n{}",
            self.cluster_id,
            hex::encode(Sha256::digest(b""))
        );
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{day}/{region}/sts/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let mut signing_key = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
        for part in [region.as_str(), "sts", "aws4_request"] {
            signing_key = hmac(&signing_key, part.as_bytes());
        }
        let expected = hex::encode(hmac(&signing_key, string_to_sign.as_bytes()));
        if get("x-amz-signature") != Some(expected.as_str()) {
            return Err("SignatureDoesNotMatch".into());
        }
        Ok(query.to_owned())
    }

    async fn identity(&self, token: &str) -> Result<UserInfo, String> {
        let query = self.check(token, SystemTime::now())?;
        let answer = http::get(
            &self.sts_addr,
            &format!("/?{query}"),
            &[("x-k8s-aws-id", &self.cluster_id), ("Accept", "application/json")],
        )
        .await
        .map_err(|e| format!("STS: {e}"))?;
        if answer.status != 200 {
            return Err(format!("STS answered {}: {}", answer.status, answer.text()));
        }
        let body = answer.json();
        let result = &body["GetCallerIdentityResponse"]["GetCallerIdentityResult"];
        let arn = result["Arn"].as_str().ok_or("STS gave no ARN")?;
        let canonical = canonical_arn(arn);
        let username = self.users.get(&canonical).ok_or_else(|| format!("ARN {canonical} is not mapped to a user"))?;
        Ok(UserInfo {
            username: username.clone(),
            uid: format!(
                "aws-iam-authenticator:{}:{}",
                result["Account"].as_str().unwrap_or_default(),
                result["UserId"].as_str().unwrap_or_default()
            ),
            groups: vec![],
        })
    }
}

impl TokenVerifier for EksTokenVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.identity(token))
    }
}

/// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION` → `arn:aws:iam::ACCOUNT:role/ROLE`; others unchanged.
pub fn canonical_arn(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = parts[..]
        && let Some(rest) = resource.strip_prefix("assumed-role/")
    {
        let role = rest.split('/').next().unwrap_or_default();
        return format!("arn:{partition}:iam::{account}:role/{role}");
    }
    arn.to_owned()
}

fn issued_secret(sts_addr: &str, key: &str) -> Result<String, String> {
    // Called from the webhook's runtime thread: a blocking helper thread keeps it simple.
    let (addr, path) = (sts_addr.to_owned(), format!("/kubeauth-test/secret/{key}"));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let answer = runtime.block_on(http::get(&addr, &path, &[])).map_err(|e| e.to_string())?;
        if answer.status == 200 {
            Ok(answer.text())
        } else {
            Err("InvalidClientTokenId: unknown access key".to_owned())
        }
    })
    .join()
    .map_err(|_| "secret lookup failed".to_owned())?
}

fn sts_region(host: &str) -> Option<String> {
    if host == "sts.amazonaws.com" {
        return Some("us-east-1".into());
    }
    let rest = host.strip_prefix("sts.")?;
    let region = rest.strip_suffix(".amazonaws.com").or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    (!region.is_empty() && !region.contains('.')).then(|| region.to_owned())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub(crate) fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| "bad escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad escape")?);
                i += 3;
            }
            b'%' => return Err("bad escape".into()),
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "query is not UTF-8".into())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_amz_date(date: &str) -> Option<SystemTime> {
    // 20260102T030405Z
    if date.len() != 16 || !date.ends_with('Z') || date.as_bytes()[8] != b'T' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| date.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, s) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    u64::try_from(secs).ok().map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// A kube-apiserver that authenticates EKS tokens through [`EksTokenVerifier`] and moto, shared by the tests
/// of a binary.
pub struct AwsTestEnv {
    /// moto's STS.
    pub sts: MotoSts,
    /// The webhook the API server asks.
    pub webhook: crate::TokenReviewWebhook,
    /// The API server.
    pub cluster: crate::TestCluster,
}

impl std::fmt::Debug for AwsTestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsTestEnv").field("sts", &self.sts).field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl AwsTestEnv {
    /// The EKS cluster id the API server expects in tokens.
    pub const CLUSTER_ID: &'static str = "kubeauth-e2e";
    /// The region tokens are signed for.
    pub const REGION: &'static str = "us-west-2";
    /// Static test credentials: access key id.
    pub const ACCESS_KEY_ID: &'static str = "AKIAKUBEAUTHTEST0001";
    /// Static test credentials: secret.
    pub const SECRET_ACCESS_KEY: &'static str = "kubeauth/test/secret+key";
    /// moto's default account.
    pub const ACCOUNT: &'static str = "123456789012";
    /// The Kubernetes user of the static credentials.
    pub const USER: &'static str = "aws-user";
    /// A role to assume, which requires [`EXTERNAL_ID`](Self::EXTERNAL_ID).
    pub const ROLE_ARN: &'static str = "arn:aws:iam::123456789012:role/eks-reader";
    /// The external id the role requires.
    pub const EXTERNAL_ID: &'static str = "kubeauth-ext-1";
    /// The Kubernetes user of the role.
    pub const ROLE_USER: &'static str = "aws-role-user";

    /// The environment, started by the first test that asks.
    pub fn shared() -> &'static AwsTestEnv {
        static SHARED: std::sync::OnceLock<Result<AwsTestEnv, String>> = std::sync::OnceLock::new();
        let started = SHARED.get_or_init(|| {
            std::thread::spawn(Self::start).join().map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "the AWS test environment did not start".into())
            })
        });
        started.as_ref().unwrap_or_else(|message| panic!("{message}"))
    }

    fn start() -> Self {
        let sts = MotoSts::start(&[(Self::ROLE_ARN, Self::EXTERNAL_ID)]);
        let verifier = EksTokenVerifier {
            cluster_id: Self::CLUSTER_ID.into(),
            sts_addr: sts.addr().to_owned(),
            secrets: HashMap::from([(Self::ACCESS_KEY_ID.to_owned(), Self::SECRET_ACCESS_KEY.to_owned())]),
            users: HashMap::from([
                // moto's identity for access keys it did not issue.
                (format!("arn:aws:sts::{}:user/moto", Self::ACCOUNT), Self::USER.to_owned()),
                (Self::ROLE_ARN.to_owned(), Self::ROLE_USER.to_owned()),
            ]),
        };
        let (cluster, webhook) = crate::TestCluster::start_with_verifier(verifier);
        Self { sts, webhook, cluster }
    }

    /// A cluster entry for the API server with the `aws` provider and the expected cluster id and region.
    pub fn cluster_details(&self, name: &str) -> kubeauth::ClusterDetails {
        let mut cluster = self.cluster.cluster_details(name, "aws");
        cluster.auth_metadata.insert(kubeauth::metadata::X_K8S_AWS_ID.into(), Self::CLUSTER_ID.into());
        cluster.auth_metadata.insert(kubeauth::metadata::AWS_REGION.into(), Self::REGION.into());
        cluster
    }

    /// Environment variables that give a process the static test credentials and send its STS calls to moto,
    /// with every other AWS source switched off.
    pub fn process_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET_ACCESS_KEY.into()),
            ("AWS_REGION", Self::REGION.into()),
            ("AWS_ENDPOINT_URL_STS", self.sts.url().to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent/kubeauth-test/config".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kubeauth-test/credentials".into()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse() {
        let t = parse_amz_date("20270115T080000Z").unwrap();
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(), 1_800_000_000);
    }

    #[test]
    fn assumed_role_arns_map_to_the_role() {
        assert_eq!(
            canonical_arn("arn:aws:sts::123456789012:assumed-role/eks-reader/kubeauth"),
            "arn:aws:iam::123456789012:role/eks-reader"
        );
        assert_eq!(canonical_arn("arn:aws:iam::123456789012:user/alice"), "arn:aws:iam::123456789012:user/alice");
    }
}
