//! The client-side login against a real, certified OpenID provider (panva's `oidc-provider`), driven through
//! its own login and consent pages, and the user's token against the real kube-apiserver started with
//! `--oidc-*` flags.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use kubeauth::login::{Flow, Login, LoginError, LoginSettings, Prompt, SendToken, SessionStore};
use kubeauth::{ClusterDetails, Registry, metadata};
use kubeauth_testkit::oidc::{OidcClient, OidcPeer};
use kubeauth_testkit::{TestCluster, http, user};

const APISERVER_CLIENT: &str = "kubernetes";

struct Env {
    peer: OidcPeer,
    clients: Vec<OidcClient>,
    cluster: OnceLock<TestCluster>,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut short = OidcClient::public("short-lived");
        short.short_lived = true;
        let mut expiring = OidcClient::public("expiring-refresh");
        expiring.short_lived = true;
        expiring.expired_refresh = true;
        let mut google = OidcClient::public("google-desktop");
        google.secret = Some("google-desktop-secret".into());
        // Only the parallel-refresh test uses this one: its grants are that test's alone.
        let mut parallel = OidcClient::public("parallel-refresh");
        parallel.short_lived = true;
        // Only the stale-session test uses this one, for the same reason.
        let stale = OidcClient::public("stale-session");
        let clients = vec![OidcClient::public(APISERVER_CLIENT), short, expiring, google, parallel, stale];
        Env { peer: OidcPeer::start(&clients), clients, cluster: OnceLock::new() }
    })
}

impl Env {
    fn client(&self, id: &str) -> &OidcClient {
        self.clients.iter().find(|c| c.id == id).unwrap()
    }

    /// kube-apiserver trusting the peer's ID tokens for client `kubernetes`: users are `oidc:<sub>`.
    /// A test cluster trusting the issuer's ID tokens for client `kubernetes`: users are `oidc:<sub>`.
    async fn cluster(&'static self) -> &'static TestCluster {
        if let Some(cluster) = self.cluster.get() {
            return cluster;
        }
        tokio::task::spawn_blocking(move || self.cluster.get_or_init(|| self.peer.start_cluster(APISERVER_CLIENT)))
            .await
            .expect("the test cluster starts")
    }

    fn settings(&self, client: &str) -> LoginSettings {
        let c = self.client(client);
        let mut settings = LoginSettings::oidc("testidp", self.peer.issuer(), client);
        // Any free loopback port: the issuer ignores the port of a native client's loopback redirect (RFC 8252).
        settings.redirect_port = 0;
        settings.ca_file = Some(self.peer.ca_file().to_owned());
        settings.client_secret = c.secret.clone().map(Into::into);
        settings.login_timeout = Duration::from_secs(60);
        settings
    }

    fn login(&self, settings: LoginSettings, store: &tempfile::TempDir) -> Login {
        Login::new(settings, SessionStore::in_dir(store.path())).expect("login")
    }
}

/// A prompt that plays the user: opens the URL (or the device page) in a scripted browser as `user`, and
/// counts how often it was asked.
fn browser(user: &'static str) -> (impl Fn(Prompt<'_>) + Send + Sync, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let prompt = move |prompt: Prompt<'_>| {
        let url = match prompt {
            Prompt::OpenUrl(url) => url.to_owned(),
            Prompt::EnterCode { complete, .. } => complete.expect("verification_uri_complete").to_owned(),
            _ => unreachable!(),
        };
        record.lock().unwrap().push(url.clone());
        let device = matches!(prompt, Prompt::EnterCode { .. });
        tokio::spawn(async move {
            if device { env().peer.device_login(&url, user).await } else { env().peer.browser_login(&url, user).await }
        });
    };
    (prompt, seen)
}

fn query(url: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(url).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[tokio::test]
async fn authorization_code_with_pkce_gives_a_verified_id_token() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let mut settings = env.settings(APISERVER_CLIENT);
    settings.redirect_port = env.client(APISERVER_CLIENT).redirect_port;
    let login = env.login(settings, &store);
    let flow = login.start_code_flow().await.unwrap();
    let params = query(flow.url());
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param("code_challenge").map(|c| c.len()), Some(43));
    assert_eq!(param("response_type").as_deref(), Some("code"));
    assert_eq!(param("nonce").as_deref(), Some(flow.nonce()));
    let redirect = format!("http://127.0.0.1:{}/callback", env.client(APISERVER_CLIENT).redirect_port);
    assert_eq!(param("redirect_uri").as_deref(), Some(redirect.as_str()));
    assert!(param("scope").unwrap().split(' ').any(|s| s == "openid"));

    let nonce = flow.nonce().to_owned();
    let url = flow.url().to_owned();
    let browser = tokio::spawn(async move { env.peer.browser_login(&url, "alice").await });
    let session = login.finish_code_flow(flow).await.unwrap();
    assert!(browser.await.unwrap().contains("Logged in"), "the browser sees the success page");

    assert_eq!(session.subject, "alice");
    assert_eq!(session.email.as_deref(), Some("alice@example.com"));
    assert!(session.refresh_token.is_some());
    let id_token = session.id_token.clone().unwrap();
    let lifetime = session.expires_at().duration_since(SystemTime::now()).unwrap();
    assert!(lifetime > Duration::from_secs(3500) && lifetime <= Duration::from_secs(3600), "{lifetime:?}");

    // The ID token passes verification against the issuer's keys with the login's nonce, and with no other.
    let info = login.verify_id_token(&id_token, Some(&nonce)).await.unwrap();
    assert_eq!(info.subject, "alice");
    let err = login.verify_id_token(&id_token, Some("another-nonce")).await.unwrap_err();
    assert!(matches!(err, LoginError::InvalidIdToken { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("nonce"), "{err}");

    // A tampered token (payload changed, signature kept) is rejected.
    let parts: Vec<&str> = id_token.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = "mallory".into();
    let forged = format!("{}.{}.{}", parts[0], b64.encode(serde_json::to_vec(&claims).unwrap()), parts[2]);
    let err = login.verify_id_token(&forged, Some(&nonce)).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("signature"), "{err}");
    // And one for another client (audience) too.
    let other = env.login(env.settings("short-lived"), &store);
    let err = other.verify_id_token(&id_token, Some(&nonce)).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("audience"), "{err}");
    // The error messages do not carry the token.
    assert!(!err.to_string().contains(&id_token));
}

#[tokio::test]
async fn device_flow_logs_in_without_a_browser_on_this_machine() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let login = env.login(env.settings(APISERVER_CLIENT), &store);
    let (prompt, seen) = browser("dave");
    let session = login.login(Flow::Device, &prompt).await.unwrap();
    assert_eq!(session.subject, "dave");
    assert!(seen.lock().unwrap()[0].contains("/device?user_code="), "{:?}", seen.lock().unwrap());
    // Stored: the next lookup needs no network and no prompt.
    let before = env.peer.requests_from_kubeauth().len();
    let again = login.session(None).await.unwrap();
    assert_eq!(again.id_token, session.id_token);
    assert_eq!(env.peer.requests_from_kubeauth().len(), before);
    // The file is the user's alone.
    use std::os::unix::fs::PermissionsExt as _;
    let path = SessionStore::in_dir(store.path()).path(login.settings());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_without_a_login() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let login = env.login(env.settings("short-lived"), &store);
    let (prompt, seen) = browser("erin");
    let first = login.session(Some((Flow::Browser, &prompt))).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1, "one login");

    // Its ID token lives 30 s, inside the one-minute margin: each lookup refreshes it. (A second later, so
    // that the new token's `iat` differs.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = env.peer.requests_from_kubeauth();
    let second = login.session(None).await.unwrap();
    let during: Vec<String> = env.peer.requests_from_kubeauth()[before.len()..].to_vec();
    assert_ne!(second.id_token, first.id_token, "a new ID token");
    assert_eq!(second.subject, "erin");
    assert!(during.iter().any(|r| r.starts_with("POST /token")), "{during:?}");
    assert!(!during.iter().any(|r| r.contains("/auth")), "no new authorization: {during:?}");
    assert_eq!(seen.lock().unwrap().len(), 1, "no new login");
}

#[tokio::test]
async fn an_expired_refresh_token_falls_back_to_a_login() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let login = env.login(env.settings("expiring-refresh"), &store);
    let (prompt, seen) = browser("frank");
    login.session(Some((Flow::Browser, &prompt))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // Without permission to prompt: a clear error.
    let err = login.session(None).await.unwrap_err();
    assert!(matches!(err, LoginError::NotLoggedIn { .. }), "{err}");
    assert!(err.to_string().contains("refreshing it failed"), "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");

    // With it: a new login.
    let session = login.session(Some((Flow::Browser, &prompt))).await.unwrap();
    assert_eq!(session.subject, "frank");
    assert_eq!(seen.lock().unwrap().len(), 2, "a second login");
}

#[tokio::test]
async fn parallel_lookups_refresh_once() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let (prompt, _) = browser("grace");
    env.login(env.settings("parallel-refresh"), &store).session(Some((Flow::Browser, &prompt))).await.unwrap();
    let before = env.peer.grants("parallel-refresh", "refresh_token");
    // Separate `Login`s (as separate kubectl processes would be) on one store.
    let lookups = (0..8).map(|_| {
        let login = env.login(env.settings("parallel-refresh"), &store);
        tokio::spawn(async move { login.session(None).await.map(|s| s.id_token) })
    });
    let tokens: Vec<_> = futures::future::join_all(lookups).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    let refreshes = env.peer.grants("parallel-refresh", "refresh_token") - before;
    // Each refreshed token lives 30 s, so it is never "fresh": every lookup refreshes, one at a time, under
    // the lock, and each sees a valid session.
    assert_eq!(refreshes, tokens.len(), "one refresh per lookup, serialised");
    assert!(tokens.iter().all(Option::is_some));
}

#[tokio::test]
async fn the_google_preset_sends_an_access_token_for_cloud_platform() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let c = env.client("google-desktop");
    let google = kubeauth::google::GoogleProvider::login();
    let mut settings =
        LoginSettings::from_preset(&google, &kubeauth::google::GoogleProvider::preset(), env.peer.issuer(), &c.id);
    settings.client_secret = c.secret.clone().map(Into::into);
    settings.redirect_port = c.redirect_port;
    settings.ca_file = Some(env.peer.ca_file().to_owned());
    assert_eq!(settings.send, SendToken::AccessToken);
    let login = env.login(settings, &store);
    let flow = login.start_code_flow().await.unwrap();
    let params = query(flow.url());
    let scope = params.iter().find(|(k, _)| k == "scope").unwrap().1.clone();
    assert!(scope.split(' ').any(|s| s == "https://www.googleapis.com/auth/cloud-platform"), "{scope}");
    assert!(params.contains(&("access_type".into(), "offline".into())));
    let url = flow.url().to_owned();
    tokio::spawn(async move { env.peer.browser_login(&url, "heidi").await });
    let session = login.finish_code_flow(flow).await.unwrap();
    assert!(!session.access_token.is_empty());
    assert_ne!(Some(&session.access_token), session.id_token.as_ref());
    // The access token is what the `google` provider gets and sends.
    let auth = auth_for("google", &session.access_token);
    assert_eq!(auth.token("google"), Some(session.access_token.as_str()));
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_with_the_issuers_reason() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let mut settings = env.settings("google-desktop");
    settings.client_secret = Some("not-the-secret".to_owned().into());
    let login = env.login(settings, &store);
    let flow = login.start_code_flow().await.unwrap();
    let url = flow.url().to_owned();
    tokio::spawn(async move { env.peer.browser_login(&url, "ivan").await });
    let err = login.finish_code_flow(flow).await.unwrap_err();
    assert!(matches!(err, LoginError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
}

/// The request auth a login's token travels in (`oidc.testidp` → `auth.oidc.testidp`), as the login gives it.
fn auth_for(login: &str, token: &str) -> kubeauth::RequestAuth {
    let mut auth = kubeauth::RequestAuth::none();
    auth.insert_login(&login.parse().unwrap(), token);
    auth
}

#[tokio::test]
async fn a_custom_client_side_provider_takes_part_in_the_workstation_login() {
    use kubeauth::core::{LoginPreset, client_side_fn};
    use kubeauth::{Kubeauth, LoginName, Provider};

    let env = env();
    let cluster = env.cluster().await;
    cluster.grant("oidc-kim-reader", user("oidc:kim"), &["list"], &["namespaces"]).await;
    // The company gateway's provider: the user's ID token from `auth.gateway`, signed in as `kubeauth.login.gateway`.
    let gateway = LoginName::new("gateway");
    let provider =
        client_side_fn(|cluster, auth| async move { auth.user_credential(&cluster, &LoginName::new("gateway")) })
            .with_login(gateway.clone(), LoginPreset::openid_connect());
    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: behind-gateway\n          url: {}\n          caData: {}\n          authProvider: gateway\nkubeauth:\n  login:\n    gateway:\n      issuer: {}\n      clientId: {APISERVER_CLIENT}\n      caFile: {}\n",
        cluster.url(),
        cluster.ca().ca_data(),
        env.peer.issuer(),
        env.peer.ca_file().display()
    );
    let config = kubeauth::AppConfig::from_yaml_str(&yaml, None).unwrap();
    let kubeauth = Kubeauth::builder(&config, &kubeauth::ResolveContext::new(|_| None))
        .unwrap()
        .provider("gateway", Provider::client(provider))
        .unwrap()
        .build()
        .unwrap();
    let store = tempfile::tempdir().unwrap();
    let logins = kubeauth.logins().clone().with_store(SessionStore::in_dir(store.path()));
    let clusters = kubeauth.clusters().await.unwrap();
    let target = &clusters[0];
    assert_eq!(logins.login_for(target), Some(gateway.clone()));
    assert_eq!(logins.configured(), [gateway]);

    // Not logged in, and not allowed to prompt: a clear error naming the login.
    let err = logins.user_auth(target, None).await.unwrap_err().to_string();
    assert!(err.starts_with("gateway: not logged in"), "{err}");

    // The login, then the user's token reaches the API server as that user, through the custom provider.
    let (prompt, seen) = browser("kim");
    let user_auth = logins.user_auth(target, Some((Flow::Browser, &prompt))).await.unwrap().unwrap();
    assert_eq!(user_auth.user, "kim@example.com");
    assert!(user_auth.auth.token("gateway").is_some());
    let client = kubeauth.kube_client(target, &user_auth.auth).await.unwrap();
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    assert!(namespaces.list(&Default::default()).await.is_ok());
    let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::all(client).list(&Default::default()).await;
    assert!(pods.unwrap_err().to_string().contains("oidc:kim"));
    // The session is kept: the next lookup prompts nobody.
    logins.user_auth(target, None).await.unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
}

fn oidc_cluster(cluster: &TestCluster, provider: &str) -> ClusterDetails {
    let mut details = cluster.cluster_details("oidc-cluster", "oidc");
    details.auth_metadata.insert(metadata::OIDC_TOKEN_PROVIDER.into(), provider.into());
    details
}

#[tokio::test]
async fn the_users_id_token_reaches_the_api_server_as_that_user() {
    let env = env();
    let cluster = env.cluster().await;
    cluster.grant("oidc-judy-reader", user("oidc:judy"), &["list"], &["namespaces"]).await;
    let store = tempfile::tempdir().unwrap();
    let (prompt, _) = browser("judy");
    let session = env.login(env.settings(APISERVER_CLIENT), &store).login(Flow::Browser, &prompt).await.unwrap();
    let id_token = session.id_token.unwrap();

    // Under the cluster's oidcTokenProvider: the API server sees judy.
    let registry = Registry::with_defaults();
    let details = oidc_cluster(cluster, "testidp");
    let auth = auth_for("oidc.testidp", &id_token);
    let client = kubeauth::Connector::new(registry.clone()).kube_client(&details, &auth).await.unwrap();
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client).list(&Default::default()).await;
    let namespaces = namespaces.unwrap_or_else(|e| panic!("{e}: {}", cluster.apiserver_log_tail(400)));
    assert!(namespaces.items.iter().any(|n| n.metadata.name.as_deref() == Some("default")));
    // judy may list namespaces but not pods: the identity is the user's.
    let client = kubeauth::Connector::new(registry.clone()).kube_client(&details, &auth).await.unwrap();
    let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::all(client).list(&Default::default()).await;
    assert!(pods.unwrap_err().to_string().contains("oidc:judy"));

    // Under another provider's key: a per-cluster error, no request without a token.
    let wrong = auth_for("oidc.otheridp", &id_token);
    let err = registry.credential(&details, &wrong).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster 'oidc-cluster': the oidc provider needs the user's token under `auth.oidc.testidp` of the request, and there is none"
    );
}

#[tokio::test]
async fn the_proxy_sends_the_token_of_the_backstage_header_and_isolates_a_missing_one() {
    let env = env();
    let cluster = env.cluster().await;
    cluster.grant("oidc-ken-reader", user("oidc:ken"), &["list"], &["namespaces"]).await;
    let store = tempfile::tempdir().unwrap();
    let (prompt, _) = browser("ken");
    let session = env.login(env.settings(APISERVER_CLIENT), &store).login(Flow::Browser, &prompt).await.unwrap();
    let id_token = session.id_token.unwrap();

    let yaml = format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: oidc-cluster\n          url: {}\n          caData: {}\n          authProvider: oidc\n          oidcTokenProvider: testidp\n",
        cluster.url(),
        cluster.ca().ca_data()
    );
    let config = kubeauth::AppConfig::from_yaml_str(&yaml, None).unwrap();
    let server =
        kubeauth_server::KubeauthServer::from_config(&config, &kubeauth::ResolveContext::new(|_| None)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, server.router()).await });

    // The raw token, as Backstage's frontend sends it under the provider's header.
    let header = id_token.clone();
    let ok = http::get(
        &addr,
        "/api/kubernetes/proxy/api/v1/namespaces",
        &[
            ("Backstage-Kubernetes-Cluster", "oidc-cluster"),
            ("Backstage-Kubernetes-Authorization-oidc-testidp", &header),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().contains("\"default\""));

    let missing = http::get(
        &addr,
        "/api/kubernetes/proxy/api/v1/namespaces",
        &[("Backstage-Kubernetes-Cluster", "oidc-cluster"), ("Backstage-Kubernetes-Authorization-oidc-other", &header)],
    )
    .await
    .unwrap();
    assert_eq!(missing.status, 401, "{}", missing.text());
    assert!(missing.text().contains("auth.oidc.testidp"), "{}", missing.text());
    assert!(!missing.text().contains(&id_token));
}

#[tokio::test]
async fn parallel_callers_with_a_stale_session_refresh_it_once() {
    let env = env();
    let store = tempfile::tempdir().unwrap();
    let (prompt, _) = browser("heidi");
    let settings = env.settings("stale-session");
    let session = env.login(settings.clone(), &store).login(Flow::Browser, &prompt).await.unwrap();
    // The stored ID token is now 30 s from expiry (inside the one-minute margin), as it would be an hour on.
    let mut stale = session.clone();
    stale.expires_at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() + 30;
    SessionStore::in_dir(store.path()).write(&settings, &stale).unwrap();
    // A second on, so that the refreshed token's `iat` (and so the token) differs.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Counted by the client this test alone uses: other tests refresh their own sessions meanwhile.
    let before = env.peer.grants("stale-session", "refresh_token");
    // Eight callers at once (as eight kubectl processes would be), each with its own `Login`.
    let lookups = (0..8).map(|_| {
        let login = env.login(env.settings("stale-session"), &store);
        tokio::spawn(async move { login.session(None).await.map(|s| s.id_token) })
    });
    let tokens: Vec<_> = futures::future::join_all(lookups).await.into_iter().map(|r| r.unwrap().unwrap()).collect();
    let refreshes = env.peer.grants("stale-session", "refresh_token") - before;
    assert_eq!(refreshes, 1, "one refresh for all of them");
    assert!(tokens.iter().all(|t| t == &tokens[0]), "all got the refreshed token");
    assert_ne!(tokens[0], session.id_token);
}

#[tokio::test]
async fn a_kubeconfigs_legacy_oidc_user_is_refreshed_through_the_one_login() {
    use base64::Engine as _;
    let env = env();
    let cluster = env.cluster().await;
    cluster.grant("oidc-kim-reader", user("oidc:kim"), &["list"], &["namespaces"]).await;
    let store = tempfile::tempdir().unwrap();
    let (prompt, _) = browser("kim");
    let session = env.login(env.settings(APISERVER_CLIENT), &store).login(Flow::Browser, &prompt).await.unwrap();
    let refresh_token = session.refresh_token.expect("a refresh token");
    // An ID token that expired long ago (its `exp` is all that is read before refreshing, as kubectl reads it).
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let expired = format!("{}.{}.c2ln", b64.encode(br#"{"alg":"RS256"}"#), b64.encode(br#"{"sub":"kim","exp":1}"#));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let text = format!(
        "clusters:\n- name: envtest\n  cluster: {{server: '{url}', certificate-authority-data: {ca}}}\n\
         users:\n- name: kim\n  user:\n    auth-provider:\n      name: oidc\n      config:\n        idp-issuer-url: {issuer}\n        client-id: {client}\n        id-token: {expired}\n        refresh-token: {refresh_token}\n        idp-certificate-authority: {issuer_ca}\n\
         contexts:\n- {{name: kim, context: {{cluster: envtest, user: kim}}}}\n",
        url = cluster.url(),
        ca = cluster.ca().ca_data(),
        issuer = env.peer.issuer(),
        client = APISERVER_CLIENT,
        issuer_ca = env.peer.ca_file().display(),
    );
    std::fs::write(&kubeconfig, &text).unwrap();
    let config = kubeauth::AppConfig::from_yaml_str(
        &format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: kubeconfig\n      path: {}\n",
            kubeconfig.display()
        ),
        None,
    )
    .unwrap();
    let kubeauth = kubeauth::Kubeauth::from_config(&config, &kubeauth::ResolveContext::new(|_| None)).unwrap();
    let clusters = kubeauth.clusters().await.unwrap();
    assert_eq!((clusters[0].name.as_str(), clusters[0].auth_provider()), ("kim", Some("kubeconfig")));

    let before = env.peer.grants(APISERVER_CLIENT, "refresh_token");
    let client = kubeauth.kube_client(&clusters[0], &kubeauth::RequestAuth::none()).await.unwrap();
    let namespaces = kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    let namespaces = namespaces
        .list(&Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", cluster.apiserver_log_tail(50)));
    assert!(namespaces.items.iter().any(|n| n.metadata.name.as_deref() == Some("default")));
    let pods = kube::Api::<k8s_openapi::api::core::v1::Pod>::all(client).list(&Default::default()).await;
    assert!(pods.unwrap_err().to_string().contains("\"oidc:kim\""), "the API server sees kim");
    assert_eq!(env.peer.grants(APISERVER_CLIENT, "refresh_token") - before, 1, "one refresh for both requests");
    assert_eq!(std::fs::read_to_string(&kubeconfig).unwrap(), text, "the kubeconfig is not written");

    // A refresh token the issuer does not know: that cluster's error, with the issuer's reason and no token.
    let revoked = text.replace(&refresh_token, "not-a-refresh-token");
    std::fs::write(&kubeconfig, &revoked).unwrap();
    let kubeauth = kubeauth::Kubeauth::from_config(&config, &kubeauth::ResolveContext::new(|_| None)).unwrap();
    let clusters = kubeauth.clusters().await.unwrap();
    let Err(err) = kubeauth.kube_client(&clusters[0], &kubeauth::RequestAuth::none()).await else {
        panic!("a refresh token the issuer does not know gave a client")
    };
    let message = kubeauth::core::report(&err);
    assert!(
        message.contains("cluster 'kim'") && message.contains("refreshing the oidc id-token of user `kim`"),
        "{message}"
    );
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(!message.contains("not-a-refresh-token"), "{message}");
}
