//! Every config example in docs/ parses, and (unless marked parse-only) locates and validates.

use std::path::{Path, PathBuf};

use kubeauth::{AppConfig, Kubeauth, ResolveContext};
use kubeauth_testkit::pki::TestCa;

/// Providers that docs mention but that this build does not have yet.
const NOT_BUILT: &[&str] = &[];

struct Example {
    page: PathBuf,
    yaml: String,
    parse_only: bool,
}

fn examples() -> Vec<Example> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let mut pages = Vec::new();
    let mut dirs = vec![docs];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```yaml\n") {
            let before = &rest[..start];
            let parse_only = before.trim_end().ends_with("-->")
                && before.rfind("<!-- example: parse-only").is_some_and(|i| !before[i..].contains("```"));
            let body = &rest[start + 8..];
            let end = body.find("```").unwrap();
            out.push(Example { page: page.clone(), yaml: body[..end].to_owned(), parse_only });
            rest = &body[end + 3..];
        }
    }
    out
}

#[tokio::test]
async fn every_docs_config_example_is_valid() {
    let examples = examples();
    assert!(examples.len() >= 8, "found only {} examples", examples.len());
    let ca = TestCa::new("docs").ca_data();
    let env = move |name: &str| match name {
        n if n.ends_with("CA_DATA") => Some(ca.clone()),
        n if n.ends_with("_HOST") => Some("10.0.0.1".to_owned()),
        n if n.ends_with("_ADDRESS") => Some("https://10.0.0.1:443".to_owned()),
        n if n.ends_with("_PORT") => Some("443".to_owned()),
        n if n.ends_with("_TOKEN") => Some("a-token".to_owned()),
        n if n.ends_with("_SA_KEY") => {
            Some(r#"{"type":"service_account","client_email":"a@b","private_key":"k"}"#.to_owned())
        }
        _ => None,
    };
    for example in examples {
        let page = example.page.display().to_string();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        std::fs::write(dir.path().join("certs/staging-ca.crt"), TestCa::new("staging").cert_pem()).unwrap();
        std::fs::write(
            dir.path().join("gke-reader-key.json"),
            r#"{"type":"service_account","client_email":"a@b","private_key":"k"}"#,
        )
        .unwrap();
        // The kubeconfig the kubeconfig examples name.
        std::fs::write(
            dir.path().join("kubeconfig.yaml"),
            "clusters: [{name: c, cluster: {server: 'https://10.0.0.1:6443'}}]\n\
             users:\n- {name: t, user: {token: a-token}}\n\
             - {name: e, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: get-token, interactiveMode: Never}}}\n\
             contexts:\n- {name: dev, context: {cluster: c, user: t}}\n- {name: prod, context: {cluster: c, user: t}}\n\
             - {name: exec-dev, context: {cluster: c, user: e}}\n",
        )
        .unwrap();
        let file = dir.path().join("app-config.yaml");
        std::fs::write(&file, &example.yaml).unwrap();
        let config = AppConfig::from_file(&file).unwrap_or_else(|e| panic!("{page}: {e}"));
        if example.parse_only {
            continue;
        }
        let ctx = ResolveContext::new(env.clone());
        let kubeauth = Kubeauth::from_config(&config, &ctx).unwrap_or_else(|e| panic!("{page}: {e}"));
        // The gke and catalog methods would ask Google's API or a Backstage catalog: their settings are checked
        // above, their clusters are not listed.
        if example.yaml.contains("type: gke") || example.yaml.contains("type: catalog") {
            continue;
        }
        // Every identity provider under kubeauth.login has complete settings (a CA file that exists and parses).
        #[cfg(feature = "login")]
        let logins =
            kubeauth.logins().clone().with_store(kubeauth::login::SessionStore::in_dir(dir.path().join("sessions")));
        #[cfg(feature = "login")]
        for name in logins.configured() {
            logins.open(&name).unwrap_or_else(|e| panic!("{page}: {}", kubeauth::report(&e)));
        }
        let clusters = kubeauth.clusters().await.unwrap_or_else(|e| panic!("{page}: {e}"));
        for cluster in clusters.iter().filter(|c| !NOT_BUILT.contains(&c.auth_provider().unwrap_or_default())) {
            kubeauth.registry().validate(cluster).unwrap_or_else(|e| panic!("{page}: {e}"));
            // A client-side cluster's login is configured in the same example.
            #[cfg(feature = "login")]
            if let Some(name) = logins.login_for(cluster)
                && example.yaml.contains("login:")
            {
                logins.settings(&name).unwrap_or_else(|e| panic!("{page}: cluster {}: {e}", cluster.name));
            }
        }
    }
}

#[tokio::test]
async fn backstages_own_examples_build_the_toolkit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster-locator/tests/fixtures/backstage");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let yaml = std::fs::read_to_string(&path).unwrap();
        let config = AppConfig::from_yaml_str(&yaml, Some(&path)).unwrap();
        assert!(config.unknown_keys.is_empty(), "{}: {:?}", path.display(), config.unknown_keys);
        // Only the API server addresses are set: the other keys that refer to a variable are absent, and
        // everything else builds (the gke method included; it asks Google's API only when listing). An example
        // Backstage itself refuses is refused, with the error its `# refused:` line says.
        let env = ResolveContext::new(|name| name.ends_with("_ADDRESS").then(|| "https://10.0.0.1:443".to_owned()));
        let built = Kubeauth::from_config(&config, &env);
        if let Some(expected) = yaml.lines().find_map(|l| l.strip_prefix("# refused: ")) {
            let err = built.err().unwrap_or_else(|| panic!("{}: Backstage refuses it", path.display())).to_string();
            assert!(err.contains(expected), "{}: {err}", path.display());
        } else {
            built.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        seen += 1;
    }
    assert!(seen >= 6);
}

#[tokio::test]
async fn an_unset_google_key_variable_leaves_application_default_credentials() {
    let yaml = "kubernetes:\n  googleServiceAccountCredentials: ${GOOGLE_KEY_JSON}\n  clusterLocatorMethods: []\n";
    let config = AppConfig::from_yaml_str(yaml, None).unwrap();
    // As Backstage: the key is absent, so the application's default Google credentials are used.
    Kubeauth::from_config(&config, &ResolveContext::new(|_| None)).unwrap();
    // A value that is there must be a key.
    let set = ResolveContext::new(|name| (name == "GOOGLE_KEY_JSON").then(|| "not json".to_owned()));
    let err = Kubeauth::from_config(&config, &set).err().unwrap().to_string();
    assert!(err.contains("kubernetes.googleServiceAccountCredentials"), "{err}");
}
