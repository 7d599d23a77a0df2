use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubeauth_core::{CustomResourceMatcher, LoginName};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::{ConfigBool, ConfigString, LocatorError};

/// An app-config.yaml as kubeauth reads it: the `kubernetes` section; every other top-level key is ignored, so
/// a Backstage app-config can be used as it is.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[schemars(title = "kubeauth configuration (the kubernetes section of a Backstage app-config.yaml)")]
#[non_exhaustive]
pub struct AppConfig {
    /// Backstage's `kubernetes` section.
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    /// kubeauth's own settings (Backstage ignores this section).
    #[serde(default)]
    pub kubeauth: KubeauthConfig,
    /// Backstage's `aws` section (its AWS integration): the `aws` provider's base credentials come from
    /// `aws.mainAccount`, as Backstage's do. The section's other keys are other plugins' and not looked at.
    #[serde(default)]
    pub aws: Option<AwsConfig>,
    /// Where the config came from, for messages (`None` for inline text).
    #[serde(skip)]
    #[schemars(skip)]
    pub origin: Option<PathBuf>,
    /// The keys under `kubernetes` and `kubeauth` that kubeauth does not read: each is logged as a warning when
    /// the config is read, never refused (as Backstage's config loader has it).
    #[serde(skip)]
    #[schemars(skip)]
    pub unknown_keys: Vec<crate::UnknownKey>,
}

/// The `kubernetes` section. Keys that other parts of Backstage read are accepted and ignored here.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KubernetesConfig {
    /// The methods that find clusters, run in order.
    #[serde(default)]
    pub cluster_locator_methods: Vec<LocatorMethodConfig>,
    /// When a method fails: `false` (default) fails the whole lookup; `true` logs it and goes on with the others.
    #[serde(default)]
    pub cluster_locator_continue_on_error: Option<ConfigBool>,
    /// Which clusters an entity's objects are looked for in: `multiTenant` (all, the default), `singleTenant`
    /// (the one its `backstage.io/kubernetes-cluster` annotation names) or `catalogRelation` (those it
    /// `dependsOn` in the catalog).
    #[serde(default)]
    pub service_locator_method: Option<ServiceLocatorMethod>,
    /// A Google service-account key (the JSON as a string) for the googleServiceAccount provider and the gke
    /// locator (secret).
    #[serde(default)]
    #[schemars(extend("writeOnly" = true))]
    pub google_service_account_credentials: Option<ConfigString>,
    /// The object types an entity's objects are fetched as (Backstage's `kubernetes.objectTypes`): some of
    /// `pods`, `services`, `configmaps`, `limitranges`, `resourcequotas`, `deployments`, `replicasets`,
    /// `horizontalpodautoscalers`, `jobs`, `cronjobs`, `ingresses`, `statefulsets`, `daemonsets` and `secrets`
    /// (whose data is masked). Default: all but `secrets`.
    #[serde(default)]
    pub object_types: Option<Vec<String>>,
    /// The API version to ask for an object type instead of the default, e.g. `cronjobs: v1beta1`.
    #[serde(default)]
    pub api_version_overrides: Option<BTreeMap<String, String>>,
    /// Custom resources fetched for every cluster that has no `customResources` of its own.
    #[serde(default)]
    pub custom_resources: Option<Vec<CustomResourceMatcherConfig>>,
}

/// Backstage's `aws` section. Backstage's kubernetes plugin asks its AWS credentials manager for the main
/// account's credentials only (never `accounts` or `accountDefaults`, which pick credentials by an account id
/// the plugin does not pass), and kubeauth does the same.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AwsConfig {
    /// The credentials every `aws` cluster starts from (a role is assumed on top when the cluster names one).
    pub main_account: Option<AwsMainAccountConfig>,
}

/// `aws.mainAccount`: static keys, else a profile of the shared AWS config and credentials files, else the
/// default credential chain (as Backstage's precedence).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AwsMainAccountConfig {
    /// An access key id (with `secretAccessKey`).
    pub access_key_id: Option<ConfigString>,
    /// Its secret access key (secret).
    #[schemars(extend("writeOnly" = true))]
    pub secret_access_key: Option<ConfigString>,
    /// A profile of `~/.aws/config` / `~/.aws/credentials` (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`).
    pub profile: Option<ConfigString>,
    /// The region the profile's own calls (SSO, web identity) go to.
    pub region: Option<ConfigString>,
}

/// The `kubeauth` section: settings of kubeauth beyond Backstage's.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KubeauthConfig {
    /// How `kubeauth login` signs the user in, for clusters with a client-side provider (oidc, google, aks, and
    /// custom ones).
    #[serde(default)]
    pub login: LoginConfig,
    /// `kubeauth serve`: protection of its API.
    #[serde(default)]
    pub server: ServerConfig,
    /// How kubeauth reaches the Backstage catalog (the `catalog` locator, and the entity lookups of the
    /// workloads and custom-resource queries).
    pub catalog: Option<CatalogConfig>,
}

/// `kubeauth.server`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerConfig {
    /// Callers of the API must authenticate (off by default on a loopback address; required elsewhere).
    pub auth: Option<ServerAuthConfig>,
    /// Browser apps (a Backstage frontend) allowed to call the API from their origin: they get CORS answers,
    /// and a request from any other origin is refused (as Backstage's `backend.cors`).
    pub cors: Option<CorsConfig>,
    /// Host names an open API (no `auth`) answers to besides the loopback ones (`localhost`, `127.0.0.1`,
    /// `[::1]`): any other `Host` is refused, so that no web page reaches it by DNS rebinding.
    pub allowed_hosts: Option<Vec<String>>,
    /// Bounds on what callers may take.
    pub limits: Option<LimitsConfig>,
    /// Requests to server-side clusters made for a verified caller impersonate it (`Impersonate-User`,
    /// `Impersonate-Group`), so that each cluster's RBAC decides per user.
    pub impersonation: Option<ImpersonationConfig>,
    /// Allow rules for the proxy and the objects endpoints: once one is set, what no rule allows is refused.
    pub permissions: Option<Vec<AccessRuleConfig>>,
    /// kubeauth's own audit log: one JSON line per API request (off by default).
    pub audit: Option<AuditConfig>,
}

/// `kubeauth.server.audit`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AuditConfig {
    /// Where lines go: `-` for standard output, else a file they are appended to (created with mode 0600).
    pub path: Option<String>,
}

/// `kubeauth.server.impersonation`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImpersonationConfig {
    /// The clusters whose requests impersonate their caller (default: every cluster with a server-side provider).
    pub clusters: Option<Vec<String>>,
    /// Put before the user's entity ref in `Impersonate-User` (default: nothing, `user:default/alice`).
    pub user_prefix: Option<String>,
    /// Put before each ownership ref of the user's token in `Impersonate-Group` (default `backstage:`).
    pub group_prefix: Option<String>,
    /// Who callers that are not verified users (the open API's local caller, static API tokens, a plugin on its
    /// own) are impersonated as; without it they are refused.
    pub unverified: Option<ImpersonatedConfig>,
}

/// `kubeauth.server.impersonation.unverified`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImpersonatedConfig {
    /// `Impersonate-User`.
    pub user: String,
    /// `Impersonate-Group`s.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One allow rule of `kubeauth.server.permissions`. Each list matches any of its entries; `*` matches all.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AccessRuleConfig {
    /// A name for logs (default `kubeauth.server.permissions[N]`).
    pub name: Option<String>,
    /// Who: `user:default/alice`, an ownership ref such as `group:default/team-a`, `plugin:<id>`,
    /// `bearerTokens[N]`, `local`, or `*`.
    pub callers: Vec<String>,
    /// Cluster names (default `*`).
    pub clusters: Option<Vec<String>>,
    /// Namespaces (default `*`); a cluster-scoped request, or a list across namespaces, needs `*`.
    pub namespaces: Option<Vec<String>>,
    /// Resources as `pods`, `pods/exec`, `deployments.apps`, `deployments.apps/scale`, or `*`.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Paths that name no resource (`/healthz`, `/logs/*`: a trailing `*` matches a prefix), as RBAC's
    /// `nonResourceURLs`. Discovery (`/api`, `/apis/…`, `/version`, `/openapi/…`) needs none.
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Option<Vec<String>>,
    /// Verbs as the API server names them: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or `*`.
    pub verbs: Vec<String>,
}

/// `kubeauth.server.cors`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CorsConfig {
    /// The allowed origins, `scheme://host[:port]` (one, or a list), e.g. `http://localhost:3000`.
    #[serde(default, deserialize_with = "one_or_many")]
    #[schemars(with = "Option<Vec<String>>")]
    pub origin: Vec<String>,
}

/// `kubeauth.server.limits`: every one has a default.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Open connections at most (1024); beyond, a connection gets a prompt 503, probes still answer.
    pub max_connections: Option<usize>,
    /// Requests being answered at once at most (512); beyond, a prompt 503 with `Retry-After`.
    pub max_requests_in_flight: Option<usize>,
    /// Seconds a client has to send a request's headers, and an idle connection stays open (10).
    pub header_read_timeout_seconds: Option<u64>,
    /// Entity queries (the objects endpoints) answered at once (32); others wait their turn.
    pub max_queries_in_flight: Option<usize>,
    /// Entity queries that may wait for their turn (256), each at most `queueTimeoutSeconds`; beyond, 503.
    pub max_queued_queries: Option<usize>,
    /// Seconds a query may wait for its turn (30).
    pub queue_timeout_seconds: Option<u64>,
    /// List requests of the objects endpoints to one cluster at once (16).
    pub requests_per_cluster: Option<usize>,
    /// `customResources` entries of one query (32, after duplicates are dropped).
    pub max_custom_resources: Option<usize>,
    /// Seconds a client has to send a request's whole body (30); beyond, 408 and its slot is free.
    pub body_read_timeout_seconds: Option<u64>,
    /// Seconds an answer may wait for the caller to take the next part of it (60); beyond, the answer and its
    /// request upstream are cut, so that a caller who stops reading holds nothing of the cluster's connection.
    pub write_timeout_seconds: Option<u64>,
}

/// `kubeauth.server.auth`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ServerAuthConfig {
    /// Callers send one of these in `Authorization: Bearer <token>` (secret). `/healthz` and `/readyz` stay open.
    #[schemars(extend("writeOnly" = true))]
    #[serde(default)]
    pub bearer_tokens: Vec<ConfigString>,
    /// Callers send a Backstage token of this Backstage: a signed-in user's (from its frontend), or a backend
    /// plugin's service token.
    pub backstage: Option<BackstageAuthConfig>,
}

/// `kubeauth.server.auth.backstage`: which Backstage's tokens are accepted.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BackstageAuthConfig {
    /// The Backstage backend's base URL: user tokens are checked against the keys at
    /// `<baseUrl>/api/auth/.well-known/jwks.json`, plugin tokens against `<baseUrl>/api/<plugin>/.backstage/auth/v1/jwks.json` (required).
    pub base_url: Option<ConfigString>,
    /// The backend plugins whose service tokens are accepted (none by default).
    #[serde(default)]
    pub plugins: Vec<String>,
    /// The plugin id kubeauth stands for: plugin tokens must be addressed to it (default `kubernetes`).
    pub plugin_id: Option<String>,
    /// A PEM file of CA certificates trusted for the backend besides the system's.
    pub ca_file: Option<ConfigString>,
    /// Seconds of clock difference allowed when checking expiry (30, at most 300).
    pub clock_skew_seconds: Option<u64>,
}

/// A value that is one string or a list of them.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// `kubeauth.catalog`: the Backstage catalog's HTTP API.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CatalogConfig {
    /// The Backstage backend's base URL; the catalog is at `<baseUrl>/api/catalog` (required).
    pub base_url: Option<ConfigString>,
    /// A token the catalog accepts (a Backstage static external-access token) (secret).
    #[schemars(extend("writeOnly" = true))]
    pub token: Option<ConfigString>,
    /// A PEM file of CA certificates trusted for the catalog besides the system's.
    pub ca_file: Option<ConfigString>,
}

/// `kubeauth.login`: how `kubeauth login` and `kubeauth token` sign the user in for clusters of a client-side
/// provider, one entry per login: `kubeauth.login.<key>` (`google`, `aks`) or `kubeauth.login.<key>.<name>`
/// (`oidc.okta`, one per `oidcTokenProvider`); a custom client-side provider's logins go here too.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct LoginConfig(pub BTreeMap<String, LoginEntry>);

/// One key of `kubeauth.login`: the settings of one login, or several logins by name (`oidc: {okta: …}`).
#[derive(Clone, Debug)]
pub enum LoginEntry {
    /// `kubeauth.login.<key>`: one login.
    Single(LoginProviderConfig),
    /// `kubeauth.login.<key>.<name>`: one login per name.
    Named(BTreeMap<String, LoginProviderConfig>),
}

impl LoginConfig {
    /// The entry of `login`: `kubeauth.login.<key>` or `kubeauth.login.<key>.<sub>`.
    pub fn entry(&self, login: &LoginName) -> Option<&LoginProviderConfig> {
        match (self.0.get(login.key())?, login.sub()) {
            (LoginEntry::Single(entry), None) => Some(entry),
            (LoginEntry::Named(entries), Some(sub)) => entries.get(sub),
            _ => None,
        }
    }

    /// The name of every configured login, in order.
    pub fn names(&self) -> Vec<LoginName> {
        self.0
            .iter()
            .flat_map(|(key, entry)| match entry {
                LoginEntry::Single(_) => vec![LoginName::new(key.clone())],
                LoginEntry::Named(entries) => {
                    entries.keys().map(|sub| LoginName::with_sub(key.clone(), sub.clone())).collect()
                }
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for LoginEntry {
    /// A map whose keys are settings (`issuer`, `clientId`, …) is one login; any other map names several.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, IntoDeserializer as _, MapAccess, value::MapAccessDeserializer};

        /// A map whose first key was read already, to decide which shape the map has.
        struct Replay<A> {
            first: Option<String>,
            rest: A,
        }
        impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<A> {
            type Error = A::Error;
            fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
                match self.first.take() {
                    Some(first) => seed.deserialize(first.into_deserializer()).map(Some),
                    None => self.rest.next_key_seed(seed),
                }
            }
            fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
                self.rest.next_value_seed(seed)
            }
        }

        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = LoginEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a login's settings (issuer, clientId, …) or logins by name")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LoginEntry, A::Error> {
                let Some(first) = map.next_key::<String>()? else { return Ok(LoginEntry::Named(BTreeMap::new())) };
                let single = LoginProviderConfig::FIELDS.contains(&first.as_str());
                let replay = MapAccessDeserializer::new(Replay { first: Some(first), rest: map });
                if single {
                    LoginProviderConfig::deserialize(replay).map(LoginEntry::Single)
                } else {
                    BTreeMap::deserialize(replay).map(LoginEntry::Named)
                }
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl JsonSchema for LoginEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LoginEntry".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let single = generator.subschema_for::<LoginProviderConfig>();
        let named = generator.subschema_for::<BTreeMap<String, LoginProviderConfig>>();
        schemars::json_schema!({
            "description": "One login's settings, or several logins by name (kubeauth.login.oidc.<name>).",
            "anyOf": [single, named]
        })
    }
}

/// One login of `kubeauth.login`: the identity provider and the client registered at it. What is left out comes
/// from the client-side provider's defaults (Google's issuer, Entra ID's scopes, …).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LoginProviderConfig {
    /// The issuer URL (required for oidc; google: `https://accounts.google.com`; aks: from `tenantId`).
    pub issuer: Option<ConfigString>,
    /// For aks: the Entra ID tenant (required unless `issuer` is given).
    pub tenant_id: Option<ConfigString>,
    /// The client (application) id registered at the issuer (required).
    pub client_id: Option<ConfigString>,
    /// The client secret, where the issuer requires one for installed applications (Google does) (secret).
    #[schemars(extend("writeOnly" = true))]
    pub client_secret: Option<ConfigString>,
    /// Scopes besides `openid` (oidc default: `offline_access email`; google: `email` and cloud-platform; aks:
    /// `offline_access` and the AKS `user.read` scope). Replaces the default when given.
    pub scopes: Option<Vec<ConfigString>>,
    /// The loopback port of the redirect URI `http://127.0.0.1:<port>/callback` registered at the issuer;
    /// 0 (default) for any free port, for issuers that accept any loopback port (RFC 8252).
    pub redirect_port: Option<u16>,
    /// Which token is sent to the cluster: `idToken` (oidc default) or `accessToken` (google and aks).
    pub token: Option<ConfigString>,
    /// A PEM file of CA certificates trusted for the issuer besides the system's.
    pub ca_file: Option<ConfigString>,
}

impl LoginProviderConfig {
    /// The keys of a login's settings, as written in the config.
    pub const FIELDS: &'static [&'static str] =
        &["issuer", "tenantId", "clientId", "clientSecret", "scopes", "redirectPort", "token", "caFile"];
}

/// `kubernetes.serviceLocatorMethod`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct ServiceLocatorMethod {
    /// `multiTenant`, `singleTenant` or `catalogRelation`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// One entry of `clusterLocatorMethods`: `type` and the keys of that type.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LocatorMethodConfig {
    /// `config`, `localKubectlProxy`, `gke`, `catalog` (kubeauth) or `kubeconfig` (kubeauth).
    #[serde(rename = "type")]
    pub kind: String,
    /// For `type: config`: the clusters.
    #[serde(default)]
    #[schemars(with = "Option<Vec<ClusterConfig>>")]
    pub clusters: Option<Vec<Spanned<ClusterConfig>>>,
    /// For `type: gke`: the Google Cloud project (required).
    pub project_id: Option<ConfigString>,
    /// For `type: gke`: the location to list, or `-` for all (default).
    pub region: Option<ConfigString>,
    /// For `type: gke`: `google` (the user's token, default) or `googleServiceAccount`.
    pub auth_provider: Option<ConfigString>,
    /// For `type: gke`: skip verifying the API servers' certificates (the cluster CA is used otherwise).
    #[serde(rename = "skipTLSVerify")]
    pub skip_tls_verify: Option<ConfigBool>,
    /// For `type: gke`: do not fetch pod metrics.
    pub skip_metrics_lookup: Option<ConfigBool>,
    /// For `type: gke`: link each cluster to its page in the Google Cloud console.
    pub expose_dashboard: Option<ConfigBool>,
    /// For `type: gke`: keep only clusters with all these resource labels.
    pub matching_resource_labels: Option<Vec<ResourceLabel>>,
    /// For `type: gke` and `type: catalog` (kubeauth): how often the list is fetched again, in minutes
    /// (default 60 for gke, 5 for catalog).
    pub refresh_interval_minutes: Option<u64>,
    /// For `type: catalog`: API server URL patterns (`*` wildcards, matched against `https://host:port`)
    /// allowed even at non-public addresses.
    pub dangerously_allow_cluster_urls: Option<Vec<String>>,
    /// For `type: catalog`: honour `kubernetes.io/skip-tls-verify: 'true'` on entities (default false).
    #[serde(rename = "dangerouslyAllowSkipTLSVerify")]
    pub dangerously_allow_skip_tls_verify: Option<ConfigBool>,
    /// For `type: catalog` (kubeauth): API server URL patterns (`*` wildcards, matched against
    /// `https://host:port`) whose entities may use a server-side provider (`aws`, `azure`,
    /// `googleServiceAccount`, `serviceAccount`, or one of your own): the server's own credential goes to them.
    /// Entities elsewhere naming a server-side provider are skipped.
    pub dangerously_allow_server_side_providers: Option<Vec<String>>,
    /// For `type: catalog` (kubeauth): `kubernetes.io/` annotations of entities that become auth metadata
    /// beside `kubernetes.io/auth-provider` and `kubernetes.io/oidc-token-provider`, e.g.
    /// `kubernetes.io/aws-assume-role`: the others (which would shape the server's credential) are ignored.
    pub dangerously_allow_auth_metadata: Option<Vec<String>>,
    /// For `type: gke` (kubeauth): the GKE API's base URL (default `https://container.googleapis.com`).
    pub api_base_url: Option<ConfigString>,
    /// For `type: kubeconfig` (kubeauth): the kubeconfig file (default: the files of `KUBECONFIG`, else
    /// `~/.kube/config`, as kubectl reads them).
    pub path: Option<ConfigString>,
    /// For `type: kubeconfig` (kubeauth): the contexts to serve (default: every context).
    pub contexts: Option<Vec<String>>,
    /// (kubeauth) A prefix for the names of this method's clusters, e.g. `eu-`: two GKE projects (or catalogs)
    /// that both have a `prod` cluster give `eu-prod` and `us-prod` instead of one `prod` and a warning.
    pub name_prefix: Option<ConfigString>,
}

/// A `{key, value}` resource label to match.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[non_exhaustive]
pub struct ResourceLabel {
    /// The label's key.
    pub key: String,
    /// The label's value.
    pub value: String,
}

/// A cluster entry of the `config` method, with Backstage's keys.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Unique name of the cluster (required).
    pub name: Option<ConfigString>,
    /// URL of the API server (required).
    pub url: Option<ConfigString>,
    /// Display name.
    pub title: Option<ConfigString>,
    /// The key of the authentication provider: serviceAccount, localKubectlProxy, aws, azure,
    /// googleServiceAccount, google, oidc, aks, or a custom provider's key (required).
    pub auth_provider: Option<ConfigString>,
    /// Provider settings, merged over the keys above (secret: values may be credentials).
    #[schemars(extend("writeOnly" = true))]
    pub auth_metadata: Option<BTreeMap<String, ConfigString>>,
    /// Bearer token for the serviceAccount provider (secret).
    #[schemars(extend("writeOnly" = true))]
    pub service_account_token: Option<ConfigString>,
    /// For authProvider oidc: which OIDC provider's ID token to send.
    pub oidc_token_provider: Option<ConfigString>,
    /// Legacy: IAM role to assume (kubernetes.io/aws-assume-role).
    pub assume_role: Option<ConfigString>,
    /// Legacy: external id for assumeRole (kubernetes.io/aws-external-id).
    pub external_id: Option<ConfigString>,
    /// Do not verify the API server's certificate.
    #[serde(rename = "skipTLSVerify")]
    pub skip_tls_verify: Option<ConfigBool>,
    /// Do not fetch pod metrics.
    pub skip_metrics_lookup: Option<ConfigBool>,
    /// kubeauth: an HTTP proxy to reach the API server through (CONNECT), `http://[user:password@]host:port`;
    /// default: `HTTPS_PROXY`/`HTTP_PROXY` and `NO_PROXY` of the environment (secret when it holds a password).
    pub proxy_url: Option<ConfigString>,
    /// kubeauth: the name the API server's certificate is checked against (and sent in SNI) instead of the
    /// URL's host, as kubeconfig's `tls-server-name`.
    #[serde(rename = "tlsServerName")]
    pub tls_server_name: Option<ConfigString>,
    /// Base64 of the PEM CA bundle of the API server.
    pub ca_data: Option<ConfigString>,
    /// Path of a PEM CA bundle.
    pub ca_file: Option<ConfigString>,
    /// Link to the cluster's dashboard.
    pub dashboard_url: Option<ConfigString>,
    /// Dashboard formatter: standard, rancher, openshift, gke, aks, eks, headlamp.
    pub dashboard_app: Option<ConfigString>,
    /// Parameters of the dashboard formatter.
    pub dashboard_parameters: Option<serde_json::Value>,
    /// Custom resources to fetch for this cluster.
    pub custom_resources: Option<Vec<CustomResourceMatcherConfig>>,
}

/// `{group, apiVersion, plural}` of a custom resource; `${VAR}` is substituted in each, as anywhere else.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CustomResourceMatcherConfig {
    /// API group (empty for the core group).
    pub group: ConfigString,
    /// API version.
    pub api_version: ConfigString,
    /// Plural resource name.
    pub plural: ConfigString,
}

impl CustomResourceMatcherConfig {
    /// The matcher, each value resolved; the error is the field's name and what is wrong with it.
    pub fn resolve(&self, ctx: &crate::ResolveContext) -> Result<CustomResourceMatcher, (&'static str, String)> {
        let field = |name: &'static str, value: &ConfigString| value.resolve(ctx).map_err(|m| (name, m));
        Ok(CustomResourceMatcher {
            group: field("group", &self.group)?,
            api_version: field("apiVersion", &self.api_version)?,
            plural: field("plural", &self.plural)?,
        })
    }
}

/// `value` (a free-form setting such as `dashboardParameters`) with `${VAR}` substituted in every string, as
/// Backstage's config loader substitutes it; a string whose variable is unset is left out with its key.
pub(crate) fn substitute_strings(
    value: &serde_json::Value,
    ctx: &crate::ResolveContext,
) -> Result<Option<serde_json::Value>, String> {
    use serde_json::Value;
    Ok(match value {
        Value::String(text) => ConfigString::Literal(text.clone()).resolve_optional(ctx)?.map(Value::String),
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|v| substitute_strings(v, ctx))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
        )),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, v) in map {
                if let Some(v) = substitute_strings(v, ctx).map_err(|m| format!("{key}: {m}"))? {
                    out.insert(key.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    })
}

impl AppConfig {
    /// Parses an app-config.yaml's text. `origin` names the file in messages.
    pub fn from_yaml_str(text: &str, origin: Option<&Path>) -> Result<Self, LocatorError> {
        // An empty document is an empty config.
        if text.trim().is_empty() {
            return Ok(Self { origin: origin.map(Path::to_owned), ..Self::default() });
        }
        let mut config: Self = serde_saphyr::from_str(text).map_err(|e| LocatorError::from_yaml(e, origin))?;
        config.origin = origin.map(Path::to_owned);
        if let Ok(document) = serde_saphyr::from_str::<serde_json::Value>(text) {
            config.unknown_keys = crate::unknown::unknown_keys(&document);
        }
        let file = origin.map(|o| o.display().to_string()).unwrap_or_else(|| "config".into());
        for unknown in &config.unknown_keys {
            tracing::warn!("{file}: {unknown}");
        }
        Ok(config)
    }

    /// Reads and parses an app-config.yaml.
    pub fn from_file(path: &Path) -> Result<Self, LocatorError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| LocatorError::ReadConfig { path: path.to_owned(), source })?;
        Self::from_yaml_str(&text, Some(path))
    }

    /// `ctx`, with `$file` paths relative to this config's file (when it came from one).
    pub fn resolve_context(&self, ctx: &crate::ResolveContext) -> crate::ResolveContext {
        match self.origin.as_deref().and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => ctx.clone().with_base_dir(dir),
            _ => ctx.clone(),
        }
    }

    /// The embedded default: the `localKubectlProxy` locator.
    pub fn embedded_default() -> Self {
        Self::from_yaml_str(crate::EMBEDDED_DEFAULT_CONFIG, None).unwrap_or_default()
    }

    /// The embedded default for where this process runs: inside a Kubernetes pod (`KUBERNETES_SERVICE_HOST`
    /// set, read through `env`, and the pod's token in `service_account_dir`, normally
    /// [`IN_CLUSTER_DIR`](kubeauth_core::IN_CLUSTER_DIR)) the pod's own cluster
    /// ([`EMBEDDED_IN_CLUSTER_CONFIG`](crate::EMBEDDED_IN_CLUSTER_CONFIG)); elsewhere the `localKubectlProxy`
    /// locator.
    pub fn embedded_default_here(env: impl Fn(&str) -> Option<String>, service_account_dir: &Path) -> Self {
        let in_pod = env("KUBERNETES_SERVICE_HOST").is_some_and(|h| !h.is_empty())
            && service_account_dir.join("token").is_file();
        if in_pod {
            Self::from_yaml_str(crate::EMBEDDED_IN_CLUSTER_CONFIG, None).unwrap_or_default()
        } else {
            Self::embedded_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_read_by_name_whatever_their_provider() {
        let config = AppConfig::from_yaml_str(
            r#"
kubeauth:
  login:
    google: { clientId: g-client, clientSecret: g-secret }
    oidc:
      okta: { issuer: "https://okta.example", clientId: o-client }
      dex: { issuer: "https://dex.example", clientId: d-client }
    gateway: { issuer: "https://sso.example", clientId: gw }
"#,
            None,
        )
        .unwrap();
        let login = &config.kubeauth.login;
        let names: Vec<String> = login.names().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["gateway", "google", "oidc.dex", "oidc.okta"]);
        assert!(login.entry(&"oidc.okta".parse().unwrap()).is_some());
        assert!(login.entry(&"gateway".parse().unwrap()).is_some());
        assert!(login.entry(&"oidc".parse().unwrap()).is_none(), "oidc needs a name");
        assert!(login.entry(&"google.x".parse().unwrap()).is_none());
    }

    #[test]
    fn a_wrong_key_in_a_login_is_a_warning_naming_it() {
        let config = AppConfig::from_yaml_str(
            "kubeauth:\n  login:\n    google:\n      clientId: x\n      clientSecrt: y\n",
            None,
        )
        .unwrap();
        let unknown: Vec<String> = config.unknown_keys.iter().map(ToString::to_string).collect();
        assert_eq!(
            unknown,
            ["kubeauth.login.google.clientSecrt: not a key kubeauth reads; ignored (did you mean `clientSecret`?)"]
        );
    }

    #[test]
    fn the_settings_keys_are_the_fields() {
        let schema = serde_json::to_value(schemars::schema_for!(LoginProviderConfig)).unwrap();
        let mut keys: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut fields = LoginProviderConfig::FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }
}
