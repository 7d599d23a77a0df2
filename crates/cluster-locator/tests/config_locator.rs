//! The config and localKubectlProxy locators, read from YAML as a user writes it.

use std::path::Path;

use kubeauth_cluster_locator::{AppConfig, ClusterLocator, CombinedLocator, LocatorError, ResolveContext};
use kubeauth_core::{ClusterDetails, ExposeSecret, metadata};

/// The first ```yaml block of a docs page.
fn doc_example(page: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs").join(page)).unwrap();
    let start = text.find("```yaml\n").expect("a yaml example") + "```yaml\n".len();
    let end = start + text[start..].find("```").unwrap();
    text[start..end].to_owned()
}

fn env(vars: &'static [(&'static str, &'static str)]) -> ResolveContext {
    ResolveContext::new(move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
}

async fn locate(yaml: &str, ctx: &ResolveContext) -> Result<kubeauth_cluster_locator::Located, LocatorError> {
    let config = AppConfig::from_yaml_str(yaml, Some(Path::new("app-config.yaml")))?;
    CombinedLocator::from_config(&config, ctx)?.clusters().await
}

#[tokio::test]
async fn every_key_of_the_documented_example_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/staging-ca.crt"), include_str!("fixtures/ca.crt")).unwrap();
    let file = dir.path().join("app-config.yaml");
    std::fs::write(&file, doc_example("locators/config.md")).unwrap();

    let config = AppConfig::from_file(&file).unwrap();
    let ctx = env(&[("PROD_EU_HOST", "10.1.2.3"), ("PROD_EU_TOKEN", "prod-eu-token")]);
    let clusters = CombinedLocator::from_config(&config, &ctx).unwrap().clusters().await.unwrap();
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["prod-eu", "staging", "eks-shared", "local"]);

    let prod = &clusters[0];
    assert_eq!(prod.title.as_deref(), Some("Production (EU)"));
    assert_eq!(prod.url, "https://10.1.2.3:6443");
    assert_eq!(prod.auth_provider(), Some("serviceAccount"));
    assert_eq!(prod.service_account_token.as_ref().unwrap().expose_secret(), "prod-eu-token");
    assert!(!prod.skip_tls_verify);
    assert!(prod.skip_metrics_lookup);
    assert_eq!(prod.ca_certificates_der().unwrap().unwrap().len(), 1);
    assert_eq!(prod.dashboard_url.as_deref(), Some("https://dashboard.prod-eu.example.com"));
    assert_eq!(prod.dashboard_app.as_deref(), Some("standard"));
    assert_eq!(prod.dashboard_parameters, Some(serde_json::json!({"projectId": "prod"})));
    assert_eq!(prod.custom_resources.len(), 1);
    assert_eq!(prod.custom_resources[0].plural, "rollouts");
    assert_eq!(prod.custom_resources[0].api_version, "v1alpha1");
    assert!(prod.source.contains("clusterLocatorMethods[0] (config)"), "{}", prod.source);

    let staging = &clusters[1];
    assert_eq!(staging.auth_provider(), Some("oidc"));
    assert_eq!(staging.oidc_token_provider(), Some("okta"));
    assert_eq!(staging.ca_file.as_deref(), Some(dir.path().join("./certs/staging-ca.crt").as_path()));
    assert!(staging.service_account_token.is_none());

    let eks = &clusters[2];
    let md = |k: &str| eks.auth_metadata.get(k).map(String::as_str);
    assert_eq!(md(metadata::AUTH_PROVIDER), Some("aws"));
    assert_eq!(md(metadata::AWS_ASSUME_ROLE), Some("arn:aws:iam::123456789012:role/backstage-reader"));
    assert_eq!(md(metadata::AWS_EXTERNAL_ID), Some("backstage"));
    assert_eq!(md(metadata::X_K8S_AWS_ID), Some("shared-cluster"));
    assert_eq!(md(metadata::AWS_REGION), Some("eu-west-1"));

    let local = &clusters[3];
    assert_eq!(local.url, "http://localhost:8001");
    assert_eq!(local.auth_provider(), Some("localKubectlProxy"));
    assert!(local.skip_metrics_lookup);
}

#[tokio::test]
async fn the_seed_walkthrough_config_reads_as_written() {
    let yaml = include_str!("fixtures/backstage/authentication-azure.yaml");
    let ctx = env(&[("AZURE_CLUSTER_API_SERVER_ADDRESS", "https://my-aks-dns-abc.hcp.westeurope.azmk8s.io:443")]);
    let clusters = locate(yaml, &ctx).await.unwrap();
    assert_eq!(clusters[0].name, "My AKS cluster");
    assert_eq!(clusters[0].url, "https://my-aks-dns-abc.hcp.westeurope.azmk8s.io:443");
    assert!(clusters[0].skip_tls_verify);

    let err = locate(yaml, &env(&[])).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "app-config.yaml: clusterLocatorMethods[0] (config), cluster 'My AKS cluster' (line 6): url: environment variable `AZURE_CLUSTER_API_SERVER_ADDRESS` is not set"
    );
}

#[tokio::test]
async fn auth_metadata_wins_over_the_dedicated_keys() {
    let yaml = r#"
kubernetes:
  clusterLocatorMethods:
    - type: config
      clusters:
        - name: a
          url: https://a.example.com
          authProvider: serviceAccount
          authMetadata:
            kubernetes.io/auth-provider: aws
"#;
    let clusters = locate(yaml, &env(&[])).await.unwrap();
    assert_eq!(clusters[0].auth_provider(), Some("aws"));
}

async fn error_of(yaml: &str) -> String {
    locate(yaml, &env(&[])).await.unwrap_err().to_string()
}

fn one_cluster(body: &str) -> String {
    format!(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: prod\n{}",
        body.lines().map(|l| format!("          {l}\n")).collect::<String>()
    )
}

#[tokio::test]
async fn a_missing_url_names_the_cluster_and_key() {
    let err = error_of(&one_cluster("authProvider: serviceAccount")).await;
    assert!(err.contains("cluster 'prod' (line 5)"), "{err}");
    assert!(err.contains("url: missing"), "{err}");
}

#[tokio::test]
async fn a_missing_name_names_the_position() {
    let yaml = "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - url: https://x\n          authProvider: aws\n";
    let err = error_of(yaml).await;
    assert!(err.contains("cluster '#0'") && err.contains("name: must not be empty"), "{err}");
}

#[tokio::test]
async fn bad_base64_ca_data_names_the_cluster_and_key() {
    let err = error_of(&one_cluster("url: https://x\nauthProvider: aws\ncaData: '%%%'")).await;
    assert!(err.contains("cluster 'prod'") && err.contains("caData: not valid base64"), "{err}");
}

#[tokio::test]
async fn tls_server_name_is_read_and_a_bad_one_named() {
    let yaml = one_cluster("url: https://10.0.0.1\nauthProvider: aws\ntlsServerName: api.prod.example");
    let located = locate(&yaml, &env(&[])).await.unwrap();
    assert_eq!(located[0].tls_server_name.as_deref(), Some("api.prod.example"));
    let err = error_of(&one_cluster("url: https://10.0.0.1\nauthProvider: aws\ntlsServerName: 'a b/c'")).await;
    assert!(err.contains("tlsServerName: `a b/c` is not a DNS name or IP address"), "{err}");
}

#[tokio::test]
async fn a_kubeconfig_method_takes_no_clusters_and_its_file_must_exist() {
    let err = error_of(
        "kubernetes:\n  clusterLocatorMethods:\n    - type: kubeconfig\n      path: /nonexistent/kubeconfig\n",
    )
    .await;
    assert!(err.contains("clusterLocatorMethods[0] (kubeconfig)"), "{err}");
    let yaml = "kubernetes:\n  clusterLocatorMethods:\n    - type: kubeconfig\n      path: /nonexistent/kubeconfig\n";
    let err = kubeauth_core::report(&locate(yaml, &env(&[])).await.unwrap_err());
    assert!(err.contains("kubeconfig `/nonexistent/kubeconfig`: cannot be read"), "{err}");
    let err = error_of("kubernetes:\n  clusterLocatorMethods:\n    - type: kubeconfig\n      clusters: []\n").await;
    assert!(err.contains("type kubeconfig takes no `clusters`"), "{err}");
}

#[tokio::test]
async fn an_unreadable_ca_file_names_the_cluster_key_and_path() {
    let err = error_of(&one_cluster("url: https://x\nauthProvider: aws\ncaFile: /nonexistent/ca.pem")).await;
    assert!(err.contains("cluster 'prod'") && err.contains("caFile: cannot read `/nonexistent/ca.pem`"), "{err}");
}

#[tokio::test]
async fn a_misspelt_key_is_read_past_and_named_with_the_key_it_looks_like() {
    let yaml = one_cluster("url: https://x.example.com\nauthProvider: aws\nskipTlsVerify: true");
    let config = AppConfig::from_yaml_str(&yaml, Some(Path::new("app-config.yaml"))).unwrap();
    let unknown: Vec<String> = config.unknown_keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        unknown,
        [
            "kubernetes.clusterLocatorMethods[0].clusters[0].skipTlsVerify: not a key kubeauth reads; ignored (did you mean `skipTLSVerify`?)"
        ]
    );
    // The cluster is located, without the misspelt setting.
    let clusters = locate(&yaml, &env(&[])).await.unwrap();
    assert!(!clusters[0].skip_tls_verify);
}

#[tokio::test]
async fn malformed_yaml_gets_line_and_column() {
    let err = error_of("kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters: [\n").await;
    assert!(err.starts_with("app-config.yaml: line "), "{err}");
    match AppConfig::from_yaml_str("a: [", None).unwrap_err() {
        LocatorError::Yaml { line, column, .. } => assert!(line >= 1 && column >= 1, "{line}:{column}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_wrongly_typed_value_gets_line_and_column() {
    let err = error_of(&one_cluster("url: [a, b]\nauthProvider: aws")).await;
    assert!(err.starts_with("app-config.yaml: line 6, column"), "{err}");
}

#[tokio::test]
async fn a_name_found_twice_keeps_the_first_as_backstage_does() {
    let yaml = r#"
kubernetes:
  clusterLocatorMethods:
    - type: config
      clusters:
        - name: local
          url: https://a.example.com
          authProvider: serviceAccount
    - type: localKubectlProxy
"#;
    let clusters = locate(yaml, &env(&[])).await.unwrap();
    let found: Vec<(&str, &str)> = clusters.iter().map(|c| (c.name.as_str(), c.url.as_str())).collect();
    assert_eq!(found, [("local", "https://a.example.com")]);
}

#[tokio::test]
async fn unknown_and_unbuilt_methods_are_named() {
    let err = error_of("kubernetes:\n  clusterLocatorMethods:\n    - type: kubeconfig-magic\n").await;
    assert!(err.contains("clusterLocatorMethods[0]: unknown type `kubeconfig-magic`"), "{err}");
    let err = error_of("kubernetes:\n  clusterLocatorMethods:\n    - type: config\n").await;
    assert!(err.contains("needs a `clusters` list"), "{err}");
}

#[tokio::test]
async fn secrets_are_not_repeated_in_errors() {
    let err =
        error_of(&one_cluster("url: https://x\nauthProvider: aws\nserviceAccountToken: sup3r-s3cret\ncaData: '%'"))
            .await;
    assert!(!err.contains("sup3r-s3cret"), "{err}");
}

struct Failing;

impl ClusterLocator for Failing {
    fn clusters(&self) -> kubeauth_cluster_locator::ClustersFuture<'_> {
        Box::pin(async {
            Err(LocatorError::Locator { method: "catalog".into(), source: "catalog API answered 503".into() })
        })
    }
}

#[tokio::test]
async fn continue_on_error_decides_whether_one_failing_method_fails_all() {
    let yaml = "kubernetes:\n  clusterLocatorContinueOnError: ${GO_ON}\n  clusterLocatorMethods:\n    - type: localKubectlProxy\n";
    let config = AppConfig::from_yaml_str(yaml, None).unwrap();

    let strict = CombinedLocator::from_config(&config, &env(&[("GO_ON", "false")])).unwrap();
    let strict = strict.with_locator("catalog", std::sync::Arc::new(Failing));
    let err = strict.clusters().await.unwrap_err();
    assert!(kubeauth_core::report(&err).contains("catalog API answered 503"), "{err}");

    let lenient = CombinedLocator::from_config(&config, &env(&[("GO_ON", "true")])).unwrap();
    let lenient = lenient.with_locator("catalog", std::sync::Arc::new(Failing));
    let clusters = lenient.clusters().await.unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].name, "local");
}

/// A locator whose list is replaced by the test.
struct Swappable(std::sync::Mutex<kubeauth_cluster_locator::Located>);

impl ClusterLocator for Swappable {
    fn clusters(&self) -> kubeauth_cluster_locator::ClustersFuture<'_> {
        let clusters = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(clusters) })
    }
}

#[tokio::test]
async fn an_unchanged_list_is_handed_out_again_without_a_copy() {
    let config =
        AppConfig::from_yaml_str("kubernetes:\n  clusterLocatorMethods:\n    - type: localKubectlProxy\n", None)
            .unwrap();
    let dynamic =
        std::sync::Arc::new(Swappable(std::sync::Mutex::new(vec![ClusterDetails::new("a", "https://a")].into())));
    let locator = CombinedLocator::from_config(&config, &env(&[])).unwrap().with_locator("dynamic", dynamic.clone());
    let first = locator.clusters().await.unwrap();
    let again = locator.clusters().await.unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(first.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["local", "a"]);
    assert_eq!(first[1].source, "dynamic", "the source is filled in");

    *dynamic.0.lock().unwrap() = vec![ClusterDetails::new("b", "https://b")].into();
    let changed = locator.clusters().await.unwrap();
    assert!(!std::sync::Arc::ptr_eq(&first, &changed));
    assert_eq!(changed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["local", "b"]);
}

#[test]
fn the_embedded_default_is_the_local_kubectl_proxy() {
    let config = AppConfig::embedded_default();
    assert_eq!(config.kubernetes.cluster_locator_methods.len(), 1);
    assert_eq!(config.kubernetes.cluster_locator_methods[0].kind, "localKubectlProxy");
}

#[test]
fn inside_a_pod_the_embedded_default_is_the_pods_own_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let in_pod = |name: &str| (name == "KUBERNETES_SERVICE_HOST").then(|| "10.96.0.1".to_owned());
    // The variable without the token, or the token without the variable: not a pod.
    let kind = |config: AppConfig| config.kubernetes.cluster_locator_methods[0].kind.clone();
    assert_eq!(kind(AppConfig::embedded_default_here(in_pod, dir.path())), "localKubectlProxy");
    std::fs::write(dir.path().join("token"), "t").unwrap();
    assert_eq!(kind(AppConfig::embedded_default_here(|_| None, dir.path())), "localKubectlProxy");
    let config = AppConfig::embedded_default_here(in_pod, dir.path());
    assert_eq!(kind(config.clone()), "config");
    let cluster = &config.kubernetes.cluster_locator_methods[0].clusters.as_ref().unwrap()[0];
    assert!(
        matches!(&cluster.value.name, Some(kubeauth_cluster_locator::ConfigString::Literal(n)) if n == "in-cluster")
    );
    assert!(config.unknown_keys.is_empty());
}

#[test]
fn unrelated_top_level_keys_and_empty_files_are_fine() {
    let config = AppConfig::from_yaml_str("backend:\n  baseUrl: http://localhost:7007\ncatalog: {}\n", None).unwrap();
    assert!(config.kubernetes.cluster_locator_methods.is_empty());
    assert!(AppConfig::from_yaml_str("", None).unwrap().kubernetes.cluster_locator_methods.is_empty());
}

#[test]
fn the_committed_json_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == kubeauth_cluster_locator::config_schema_text(),
        "docs/config.schema.json is stale: run `cargo xtask schema`"
    );
}

#[test]
fn the_json_schema_marks_secret_fields() {
    let schema = kubeauth_cluster_locator::config_schema();
    let cluster = &schema["$defs"]["ClusterConfig"]["properties"];
    assert_eq!(cluster["serviceAccountToken"]["writeOnly"], true, "{cluster}");
    assert_eq!(cluster["authMetadata"]["writeOnly"], true);
    assert!(cluster["url"].get("writeOnly").is_none());
}

/// The config method's clusters of `yaml` (the first method), without asking any other method's source.
async fn config_clusters(yaml: &str, ctx: &ResolveContext) -> Vec<ClusterDetails> {
    let config = AppConfig::from_yaml_str(yaml, Some(Path::new("app-config.yaml"))).unwrap();
    let mut only_config = config.clone();
    only_config.kubernetes.cluster_locator_methods.retain(|m| m.kind == "config");
    let located = CombinedLocator::from_config(&only_config, ctx).unwrap().clusters().await;
    located.unwrap().iter().cloned().collect()
}

#[tokio::test]
async fn backstages_full_example_loads_with_its_variables_unset() {
    let yaml = include_str!("fixtures/backstage/configuration-full-example.yaml");
    let clusters = config_clusters(yaml, &env(&[])).await;
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["minikube", "aws-cluster-1"]);
    let minikube = &clusters[0];
    // `${K8S_MINIKUBE_TOKEN}` and `${K8S_CONFIG_CA_DATA}` unset: the keys are absent, as Backstage drops them.
    assert!(minikube.service_account_token.is_none());
    assert!(minikube.ca_data.is_none());
    assert!(minikube.skip_metrics_lookup && !minikube.skip_tls_verify);
    assert_eq!(minikube.dashboard_url.as_deref(), Some("http://127.0.0.1:64713"));
    assert_eq!(minikube.custom_resources.len(), 1);
    // With the variables set, they are read.
    use base64::Engine as _;
    let ca_data = base64::engine::general_purpose::STANDARD.encode(include_str!("fixtures/ca.crt"));
    let ca = ca_data.clone();
    let vars = ResolveContext::new(move |name| match name {
        "K8S_MINIKUBE_TOKEN" => Some("minikube-token".to_owned()),
        "K8S_CONFIG_CA_DATA" => Some(ca.clone()),
        _ => None,
    });
    let set = config_clusters(yaml, &vars).await;
    assert_eq!(
        set[0].service_account_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(),
        Some("minikube-token")
    );
    assert_eq!(set[0].ca_data.as_deref(), Some(ca_data.as_str()));
}

#[tokio::test]
async fn an_empty_ca_file_is_absent_and_a_ca_file_wins_over_ca_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), include_str!("fixtures/ca.crt")).unwrap();
    let entry = |ca_data: &str, ca_file: &str| {
        format!(
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: c\n          url: https://k8s.example.com\n          authProvider: serviceAccount\n          caData: {ca_data}\n          caFile: '{ca_file}'\n"
        )
    };
    use base64::Engine as _;
    let ca_data = base64::engine::general_purpose::STANDARD.encode(include_str!("fixtures/ca.crt"));
    let empty = config_clusters(&entry(&ca_data, ""), &env(&[])).await;
    assert_eq!(empty[0].ca_file, None, "an empty caFile is not the config's folder");
    assert_eq!(empty[0].ca_data.as_deref(), Some(ca_data.as_str()));
    let path = dir.path().join("ca.crt");
    let both = config_clusters(&entry("bm90LXBlbQ==", path.to_str().unwrap()), &env(&[])).await;
    // caData (not a PEM) would fail; the file is read instead, and the cluster is valid.
    assert!(both[0].validate().is_empty(), "{:?}", both[0].validate());
    assert_eq!(both[0].ca_certificates_der().unwrap().map(|c| c.len()), Some(1));
}

/// Whether kubeauth reads the key at `path` (`kubernetes.clusterLocatorMethods[].region`): a config holding only
/// that key has no key kubeauth does not read.
fn is_read(path: &str) -> bool {
    let mut value = serde_json::Value::Null;
    for segment in path.rsplit('.') {
        let (name, array) = segment.strip_suffix("[]").map_or((segment, false), |name| (name, true));
        let inner = if array { serde_json::Value::Array(vec![value]) } else { value };
        value = serde_json::json!({ name: inner });
    }
    kubeauth_cluster_locator::unknown_keys(&value).is_empty()
}

#[test]
fn the_backstage_page_says_which_keys_kubeauth_reads() {
    let page = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/backstage.md")).unwrap();
    let mut checked = 0;
    for line in page.lines().filter(|l| l.starts_with("| `kubernetes.")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (key, support) = (cells[1].trim_matches('`'), cells[2]);
        let read = is_read(key);
        match support {
            "yes" | "partly" => {
                assert!(read, "docs/backstage.md marks `{key}` {support}, but kubeauth does not read it");
            }
            "no" => assert!(!read, "docs/backstage.md marks `{key}` no, but kubeauth reads it"),
            other => panic!("docs/backstage.md: `{key}`: `{other}` is not yes, partly or no"),
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} keys in the table");
}

#[tokio::test]
async fn a_service_account_token_among_the_auth_metadata_is_the_token() {
    let yaml = one_cluster(
        "url: https://x.example.com\nauthProvider: serviceAccount\nserviceAccountToken: older\nauthMetadata:\n  serviceAccountToken: from-metadata",
    );
    let clusters = locate(&yaml, &env(&[])).await.unwrap();
    assert_eq!(
        clusters[0].service_account_token.as_ref().map(|t| t.expose_secret().to_owned()).as_deref(),
        Some("from-metadata")
    );
    assert!(!clusters[0].auth_metadata.contains_key("serviceAccountToken"));
    assert!(!format!("{:?}", clusters[0]).contains("from-metadata"));
}

#[tokio::test]
async fn variables_are_substituted_in_custom_resources_and_dashboard_parameters() {
    let yaml = one_cluster(
        "url: https://x.example.com\nauthProvider: serviceAccount\nserviceAccountToken: t\ndashboardApp: gke\ndashboardParameters:\n  projectId: ${GCP_PROJECT}\n  region: ${GCP_REGION}\n  clusterName: prod\ncustomResources:\n  - group: ${ROLLOUTS_GROUP}\n    apiVersion: v1alpha1\n    plural: rollouts",
    );
    let clusters =
        locate(&yaml, &env(&[("GCP_PROJECT", "shop-prod"), ("ROLLOUTS_GROUP", "argoproj.io")])).await.unwrap();
    assert_eq!(clusters[0].custom_resources[0].group, "argoproj.io");
    // An unset variable leaves its key out, as Backstage's config loader does.
    assert_eq!(
        clusters[0].dashboard_parameters,
        Some(serde_json::json!({"projectId": "shop-prod", "clusterName": "prod"}))
    );
    let err = error_of(&yaml).await;
    assert!(err.contains("customResources[0].group: environment variable `ROLLOUTS_GROUP` is not set"), "{err}");
}

#[tokio::test]
async fn a_name_prefix_keeps_two_methods_clusters_of_one_name_apart() {
    let yaml = r#"
kubernetes:
  clusterLocatorMethods:
    - type: config
      namePrefix: eu-
      clusters:
        - {name: prod, url: https://prod.eu.example.com, authProvider: serviceAccount}
    - type: config
      namePrefix: us-
      clusters:
        - {name: prod, url: https://prod.us.example.com, authProvider: serviceAccount}
"#;
    let clusters = locate(yaml, &env(&[])).await.unwrap();
    let found: Vec<(&str, &str)> = clusters.iter().map(|c| (c.name.as_str(), c.url.as_str())).collect();
    assert_eq!(found, [("eu-prod", "https://prod.eu.example.com"), ("us-prod", "https://prod.us.example.com")]);
}
