//! An OpenID provider for the client-side tests: panva's certified `oidc-provider` (Node.js, installed by
//! `cargo xtask test`), over HTTPS with a test CA, and a driver that signs a user in through its own login and
//! consent forms the way a browser would (cookies, redirects, form posts), without a browser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Supervised, free_port};

/// The folder where `oidc-provider` is installed (`cargo xtask test` fills it): `KUBEAUTH_NODE_PEERS`, else
/// `~/.cache/kubeauth/node`.
pub fn node_peers_dir() -> PathBuf {
    std::env::var_os("KUBEAUTH_NODE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::EnvtestBinaries::cache_dir().parent().map(|p| p.join("node")).unwrap_or_default())
}

/// A client registered at the [`OidcPeer`].
#[derive(Debug, Clone)]
pub struct OidcClient {
    /// `client_id`.
    pub id: String,
    /// The loopback redirect port (`http://127.0.0.1:<port>/callback`).
    pub redirect_port: u16,
    /// A confidential client's secret (`None`: a public client, PKCE only).
    pub secret: Option<String>,
    /// ID and access tokens live 30 s (always inside the one-minute refresh margin).
    pub short_lived: bool,
    /// Refresh tokens live 1 s.
    pub expired_refresh: bool,
}

impl OidcClient {
    /// A public client with a free redirect port.
    pub fn public(id: &str) -> Self {
        Self { id: id.into(), redirect_port: free_port(), secret: None, short_lived: false, expired_refresh: false }
    }
}

/// panva's `oidc-provider` on a loopback HTTPS port.
pub struct OidcPeer {
    issuer: String,
    ca_file: PathBuf,
    log: PathBuf,
    ca_pem: String,
    _dir: tempfile::TempDir,
    _process: Supervised,
}

impl std::fmt::Debug for OidcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcPeer").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl OidcPeer {
    /// Starts the provider with these clients; waits until its discovery document is served.
    pub fn start(clients: &[OidcClient]) -> Self {
        let module = node_peers_dir().join("oidc-provider");
        assert!(
            module.join("node_modules/oidc-provider/package.json").is_file(),
            "{} has no oidc-provider: run the tests with `cargo xtask test`, which installs it",
            module.display()
        );
        let dir = tempfile::Builder::new().prefix("kubeauth-oidc-").tempdir().expect("temp dir");
        let ca = crate::pki::TestCa::new("kubeauth-test-oidc-ca");
        let cert = ca.server_cert(&["127.0.0.1"]);
        let (ca_file, cert_file, key_file) =
            (dir.path().join("ca.crt"), dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&ca_file, ca.cert_pem()).expect("write CA");
        std::fs::write(&cert_file, &cert.cert_pem).expect("write cert");
        std::fs::write(&key_file, &cert.key_pem).expect("write key");
        let metadata: Vec<serde_json::Value> = clients
            .iter()
            .map(|c| {
                let mut m = serde_json::json!({
                    "client_id": c.id,
                    "application_type": "native",
                    "redirect_uris": [format!("http://127.0.0.1:{}/callback", c.redirect_port)],
                    "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
                    "response_types": ["code"],
                });
                match &c.secret {
                    Some(secret) => {
                        m["client_secret"] = secret.clone().into();
                        m["token_endpoint_auth_method"] = "client_secret_basic".into();
                    }
                    None => m["token_endpoint_auth_method"] = "none".into(),
                }
                m
            })
            .collect();
        let clients_file = dir.path().join("clients.json");
        std::fs::write(&clients_file, serde_json::to_vec(&metadata).expect("json")).expect("write clients");
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/oidc_provider.mjs");
        let mut args = vec![script.display().to_string()];
        for (flag, value) in [
            ("--module", module.display().to_string()),
            ("--port", port.to_string()),
            ("--cert", cert_file.display().to_string()),
            ("--key", key_file.display().to_string()),
            ("--clients", clients_file.display().to_string()),
        ] {
            args.extend([flag.to_owned(), value]);
        }
        for c in clients {
            if c.short_lived {
                args.extend(["--short-lived".to_owned(), c.id.clone()]);
            }
            if c.expired_refresh {
                args.extend(["--expired-refresh".to_owned(), c.id.clone()]);
            }
        }
        let log = dir.path().join("oidc-provider.log");
        let process = Supervised::start("oidc-provider", Path::new("node"), &args, &log, None);
        let started = Instant::now();
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("listening https://") {
            assert!(!process.has_exited(), "oidc-provider stopped: {}", process.log_tail(30));
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "oidc-provider did not start: {}",
                process.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            issuer: format!("https://127.0.0.1:{port}"),
            ca_file,
            log,
            ca_pem: ca.cert_pem().to_owned(),
            _dir: dir,
            _process: process,
        }
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The CA certificate file of its HTTPS certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Every request it served: `METHOD /path ua=<user agent>`.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("request ").map(str::to_owned))
            .collect()
    }

    /// How many tokens it granted to `client_id` with `grant_type` (`authorization_code`, `refresh_token`, …).
    pub fn grants(&self, client_id: &str, grant_type: &str) -> usize {
        let line = format!("grant {client_id} {grant_type}");
        std::fs::read_to_string(&self.log).unwrap_or_default().lines().filter(|l| *l == line).count()
    }

    /// The requests whose user agent starts with `kubeauth/`.
    pub fn requests_from_kubeauth(&self) -> Vec<String> {
        self.requests().into_iter().filter(|r| r.contains(" ua=kubeauth/")).collect()
    }

    /// Signs `user` in at an authorization URL the way a browser would: follows redirects, fills the login
    /// form, grants consent, and finally follows the redirect to the client's loopback callback (whose answer
    /// is returned).
    pub async fn browser_login(&self, authorization_url: &str, user: &str) -> String {
        self.drive(authorization_url, user, true).await
    }

    /// Completes a device flow at `verification_uri_complete` (the code already in it) as `user`; returns the
    /// final page.
    pub async fn device_login(&self, verification_uri_complete: &str, user: &str) -> String {
        self.drive(verification_uri_complete, user, true).await
    }

    /// An ID token for `user` and public client `client_id`, got without kubeauth: authorization code + PKCE
    /// done by hand (the reference client of the tests).
    pub async fn id_token(&self, client_id: &str, user: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let verifier = crate::pki::random_hex(32);
        let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
        let redirect = "http://127.0.0.1:9/callback";
        let mut url = reqwest::Url::parse(&format!("{}/auth", self.issuer)).expect("issuer URL");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", "openid email")
            .append_pair("redirect_uri", redirect)
            .append_pair("state", &crate::pki::random_hex(8))
            .append_pair("nonce", &crate::pki::random_hex(8))
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let callback = self.drive(url.as_str(), user, false).await;
        let callback = reqwest::Url::parse(&callback).expect("callback URL");
        let code = callback.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code");
        let answer: serde_json::Value = self
            .client()
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("client_id", client_id),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token answer");
        answer["id_token"].as_str().unwrap_or_else(|| panic!("no id_token: {answer}")).to_owned()
    }

    /// kube-apiserver flags that trust this issuer's ID tokens for `client_id`; users are `oidc:<sub>`,
    /// groups from the `groups` claim.
    pub fn apiserver_args(&self, client_id: &str) -> Vec<String> {
        vec![
            format!("--oidc-issuer-url={}", self.issuer),
            format!("--oidc-client-id={client_id}"),
            format!("--oidc-ca-file={}", self.ca_file.display()),
            "--oidc-username-claim=sub".into(),
            "--oidc-username-prefix=oidc:".into(),
            "--oidc-groups-claim=groups".into(),
        ]
    }

    /// Starts a test cluster with [`apiserver_args`](Self::apiserver_args) and waits until it accepts this
    /// issuer's tokens: kube-apiserver sets its OIDC authenticator up in the background and retries every
    /// 10 s, answering 401 until then. Blocks; call it from a plain thread (or `spawn_blocking`).
    pub fn start_cluster(&self, client_id: &str) -> crate::TestCluster {
        let mut builder = crate::TestCluster::builder();
        for arg in self.apiserver_args(client_id) {
            builder = builder.arg(arg);
        }
        let cluster = builder.start();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async {
            let token = self.id_token(client_id, "readiness-probe").await;
            let addr = cluster.url().trim_start_matches("https://").to_owned();
            let ca = reqwest::Certificate::from_pem(cluster.ca().cert_pem().as_bytes()).expect("CA");
            let http = reqwest::Client::builder().tls_certs_only([ca]).build().expect("client");
            let started = Instant::now();
            loop {
                let status =
                    http.get(format!("https://{addr}/version")).bearer_auth(&token).send().await.map(|r| r.status());
                if status.as_ref().is_ok_and(|s| s.as_u16() != 401) {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "the API server does not accept the issuer's tokens ({status:?}): {}",
                    cluster.apiserver_log_tail(20)
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        cluster
    }

    fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA");
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_only([ca])
            .build()
            .expect("client")
    }

    async fn drive(&self, start: &str, user: &str, follow_callback: bool) -> String {
        let client = self.client();
        let mut cookies: BTreeMap<String, String> = BTreeMap::new();
        let mut request: (reqwest::Method, String, Vec<(String, String)>) =
            (reqwest::Method::GET, start.to_owned(), vec![]);
        for _ in 0..40 {
            let (method, url, form) = request.clone();
            let cookie = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            let mut builder = client.request(method.clone(), &url).header("cookie", cookie);
            if method == reqwest::Method::POST {
                builder = builder.form(&form);
            }
            let response = builder.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            for value in response.headers().get_all("set-cookie") {
                let text = value.to_str().unwrap_or_default();
                if let Some((name, rest)) =
                    text.split(';').next().and_then(|kv| kv.split_once('=')).map(|(k, v)| (k.trim(), v))
                {
                    if rest.is_empty() {
                        cookies.remove(name)
                    } else {
                        cookies.insert(name.to_owned(), rest.to_owned())
                    };
                }
            }
            let status = response.status();
            let base = response.url().clone();
            if status.is_redirection() {
                let location = response.headers().get("location").and_then(|l| l.to_str().ok()).expect("location");
                let next = base.join(location).expect("redirect URL");
                if next.scheme() == "http" && !follow_callback {
                    return next.to_string();
                }
                if next.scheme() == "http" {
                    // The client's loopback callback: what the browser does last.
                    let answer = reqwest::get(next.clone()).await.unwrap_or_else(|e| panic!("GET {next}: {e}"));
                    return answer.text().await.unwrap_or_default();
                }
                request = (reqwest::Method::GET, next.to_string(), vec![]);
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            assert!(status.is_success(), "{method} {url}: {status}: {body}");
            let Some((action, mut fields)) = first_form(&body) else { return body };
            if fields.iter().any(|(k, _)| k == "login") {
                fields.retain(|(k, _)| k != "login" && k != "password");
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), "any".into()));
            }
            let action = if action.is_empty() { base.clone() } else { base.join(&action).expect("form action") };
            request = (reqwest::Method::POST, action.to_string(), fields);
        }
        panic!("the login at {start} did not finish in 40 steps");
    }
}

/// The action and the named inputs (with their values, HTML entities decoded) of the first form in a page.
fn first_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>").map(|e| start + e).unwrap_or(html.len());
    let form = &html[start..end];
    let tag_end = form.find('>')?;
    let action = attribute(&form[..tag_end], "action").unwrap_or_default();
    let mut fields = Vec::new();
    let mut rest = &form[tag_end..];
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        let tag_text = &tag[..close];
        if let Some(name) = attribute(tag_text, "name") {
            fields.push((name, attribute(tag_text, "value").unwrap_or_default()));
        }
        rest = &tag[close..];
    }
    Some((action, fields))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let at = tag.find(&needle)? + needle.len();
    let value = &tag[at..at + tag[at..].find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&#39;", "'")
            .replace("&#x2F;", "/")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}
