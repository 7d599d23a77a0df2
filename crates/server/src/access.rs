//! Per-caller access through the server's one identity: impersonation of the verified caller, and declarative
//! permission rules evaluated before anything is sent upstream.
//!
//! - **Impersonation** (`kubeauth.server.impersonation`): requests to a server-side cluster made for a
//!   verified Backstage user carry `Impersonate-User: <userPrefix><user entity ref>` and one
//!   `Impersonate-Group: <groupPrefix><ref>` per ownership ref of the user's token, so that the cluster's own
//!   RBAC decides; the server identity then needs only the `impersonate` verb. A plugin token on behalf of a
//!   user impersonates that user. Other callers (the open mode's local caller, static API tokens, a plugin on
//!   its own) are impersonated as `unverified` says, or refused.
//! - **Permission rules** (`kubeauth.server.permissions`): allow rules matching the caller against cluster,
//!   namespace, resource and verb (derived from the method and path as the API server derives them). Once one
//!   rule exists, what no rule allows is refused with a Kubernetes `Status` 403, and the objects endpoints
//!   leave out what the caller may not list.

use std::collections::BTreeSet;

use http::{HeaderMap, HeaderValue};
use kubeauth::ClusterDetails;
use kubeauth::locator::{AccessRuleConfig, ImpersonationConfig};

use crate::api_auth::Caller;
use crate::backstage_auth::BackstageCaller;
use crate::error::ServerError;
use crate::request_info::RequestInfo;

/// Who a request is made as, when impersonated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impersonated {
    /// `Impersonate-User`.
    pub user: String,
    /// `Impersonate-Group`, one header each.
    pub groups: Vec<String>,
}

impl Impersonated {
    /// The `Impersonate-*` headers.
    pub fn headers(&self) -> Result<HeaderMap, ServerError> {
        let value = |text: &str| {
            HeaderValue::from_str(text)
                .map_err(|_| ServerError::Forbidden(format!("cannot impersonate `{text}`: not a header value")))
        };
        let mut headers = HeaderMap::new();
        headers.insert("impersonate-user", value(&self.user)?);
        for group in &self.groups {
            headers.append("impersonate-group", value(group)?);
        }
        Ok(headers)
    }
}

/// `kubeauth.server.impersonation`, read.
#[derive(Clone, Debug)]
pub struct Impersonation {
    clusters: Option<Vec<String>>,
    user_prefix: String,
    group_prefix: String,
    unverified: Option<Impersonated>,
}

impl Impersonation {
    /// The settings of `kubeauth.server.impersonation`.
    pub fn from_config(config: &ImpersonationConfig) -> Self {
        Self {
            clusters: config.clusters.clone(),
            user_prefix: config.user_prefix.clone().unwrap_or_default(),
            group_prefix: config.group_prefix.clone().unwrap_or_else(|| "backstage:".into()),
            unverified: config
                .unverified
                .as_ref()
                .map(|u| Impersonated { user: u.user.clone(), groups: u.groups.clone() }),
        }
    }

    /// Whether requests to `cluster` impersonate their caller: its provider is a server-side one (a user's own
    /// token is already the user) and it is one of `clusters` (all, when not given).
    pub fn applies_to(&self, cluster: &ClusterDetails, server_side: bool) -> bool {
        server_side && self.clusters.as_ref().is_none_or(|names| names.iter().any(|n| n == &cluster.name))
    }

    /// Who requests to `cluster` made for `caller` impersonate: `None` when impersonation does not apply to
    /// the cluster (see [`applies_to`](Self::applies_to); its provider is looked up in `registry`).
    pub fn identity_for(
        &self,
        registry: &kubeauth::Registry,
        cluster: &ClusterDetails,
        caller: &Caller,
    ) -> Result<Option<Impersonated>, ServerError> {
        let server_side =
            registry.provider_for(cluster).is_ok_and(|(_, provider)| provider.side() == kubeauth::ProviderSide::Server);
        if !self.applies_to(cluster, server_side) {
            return Ok(None);
        }
        self.identity(caller).map(Some)
    }

    /// Who `caller` is impersonated as.
    pub fn identity(&self, caller: &Caller) -> Result<Impersonated, ServerError> {
        match caller {
            Caller::Backstage(BackstageCaller::User { entity_ref, ownership }) => Ok(Impersonated {
                user: format!("{}{entity_ref}", self.user_prefix),
                groups: ownership.iter().map(|g| format!("{}{g}", self.group_prefix)).collect(),
            }),
            Caller::Backstage(BackstageCaller::Plugin { on_behalf_of: Some(user), .. }) => {
                Ok(Impersonated { user: format!("{}{user}", self.user_prefix), groups: Vec::new() })
            }
            other => self.unverified.clone().ok_or_else(|| {
                ServerError::Forbidden(format!(
                    "kubeauth.server.impersonation: the caller {other} is not a verified user, and \
                     kubeauth.server.impersonation.unverified says nothing for it"
                ))
            }),
        }
    }
}

/// A kube client for `cluster` over `connector`'s connections, impersonating `identity` when given.
pub async fn kube_client(
    connector: &kubeauth::Connector,
    cluster: &ClusterDetails,
    auth: &kubeauth::RequestAuth,
    identity: Option<&Impersonated>,
) -> Result<kube::Client, ServerError> {
    match identity {
        None => Ok(connector.kube_client(cluster, auth).await?),
        Some(identity) => {
            let headers = identity.headers()?;
            Ok(connector.http_client(cluster, auth).await?.with_headers(headers).kube_client())
        }
    }
}

/// One allow rule of `kubeauth.server.permissions`.
#[derive(Clone, Debug)]
struct Rule {
    name: String,
    callers: Vec<String>,
    clusters: Vec<String>,
    namespaces: Vec<String>,
    resources: Vec<String>,
    non_resource_urls: Vec<String>,
    verbs: Vec<String>,
}

fn any(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| p == "*" || p == value)
}

impl Rule {
    /// Whether the rule allows `info` on `cluster` to a caller known by `names`; `resource` is
    /// [`RequestInfo::rule_resource`].
    fn allows(&self, names: &BTreeSet<String>, cluster: &str, info: &RequestInfo, resource: Option<&str>) -> bool {
        self.applies_to(names, cluster, &info.verb)
            && match resource {
                Some(resource) => {
                    any(&self.resources, resource)
                    // A cluster-scoped request (or a list across namespaces) needs every namespace.
                    && match info.namespace() {
                        Some(namespace) => any(&self.namespaces, namespace),
                        None => self.namespaces.iter().any(|n| n == "*"),
                    }
                }
                // As RBAC's nonResourceURLs: the path itself, or a prefix ending in `*`.
                None => self.non_resource_urls.iter().any(|url| match url.strip_suffix('*') {
                    Some(prefix) => info.path.starts_with(prefix),
                    None => *url == info.path,
                }),
            }
    }

    /// Whether the rule speaks of a caller known by `names`, on `cluster`, doing `verb`.
    fn applies_to(&self, names: &BTreeSet<String>, cluster: &str, verb: &str) -> bool {
        self.callers.iter().any(|c| c == "*" || names.contains(c))
            && any(&self.clusters, cluster)
            && any(&self.verbs, verb)
    }
}

/// Why a request was allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// No rule is configured: everything is.
    NoRules,
    /// A read of the API's discovery, which every client needs.
    Discovery,
    /// The rule of this name.
    Rule(String),
}

impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoRules => f.write_str("no rules"),
            Self::Discovery => f.write_str("discovery"),
            Self::Rule(name) => f.write_str(name),
        }
    }
}

/// `kubeauth.server.permissions`, read: deny by default once one rule exists.
#[derive(Clone, Debug, Default)]
pub struct Permissions {
    rules: Option<Vec<Rule>>,
}

/// What the rules leave of a list across namespaces.
#[derive(Debug, PartialEq, Eq)]
pub enum Scope {
    /// All of it.
    All,
    /// The items of these namespaces.
    Namespaces(BTreeSet<String>),
    /// Nothing: not asked for at all.
    Nothing,
}

impl Permissions {
    /// The rules of `kubeauth.server.permissions` (`None`: no rule, everything allowed).
    pub fn from_config(rules: Option<&[AccessRuleConfig]>) -> Self {
        let rules = rules.map(|rules| {
            rules
                .iter()
                .enumerate()
                .map(|(i, r)| Rule {
                    name: r.name.clone().unwrap_or_else(|| format!("kubeauth.server.permissions[{i}]")),
                    callers: r.callers.clone(),
                    clusters: r.clusters.clone().unwrap_or_else(|| vec!["*".into()]),
                    namespaces: r.namespaces.clone().unwrap_or_else(|| vec!["*".into()]),
                    resources: r.resources.clone(),
                    non_resource_urls: r.non_resource_urls.clone().unwrap_or_default(),
                    verbs: r.verbs.clone(),
                })
                .collect()
        });
        Self { rules }
    }

    /// The names a caller is matched by: its own (`user:default/alice`, `plugin:catalog`, `bearerTokens[0]`,
    /// `local`) and its ownership refs (`group:default/team-a`).
    fn names(caller: &Caller) -> BTreeSet<String> {
        let mut names = BTreeSet::from([caller.to_string()]);
        match caller {
            Caller::Backstage(BackstageCaller::User { ownership, .. }) => names.extend(ownership.iter().cloned()),
            Caller::Backstage(BackstageCaller::Plugin { plugin, on_behalf_of }) => {
                names.insert(format!("plugin:{plugin}"));
                names.extend(on_behalf_of.iter().cloned());
            }
            _ => {}
        }
        names
    }

    /// Refuses what no rule allows `caller` on `cluster`: the 403 names the attributes and the rule set.
    pub fn check(&self, caller: &Caller, cluster: &str, info: &RequestInfo) -> Result<Allowed, ServerError> {
        let Some(rules) = &self.rules else { return Ok(Allowed::NoRules) };
        if info.is_discovery() {
            return Ok(Allowed::Discovery);
        }
        let names = Self::names(caller);
        let resource = info.rule_resource();
        if let Some(rule) = rules.iter().find(|r| r.allows(&names, cluster, info, resource.as_deref())) {
            tracing::debug!(%caller, cluster, rule = %rule.name, "allowed");
            return Ok(Allowed::Rule(rule.name.clone()));
        }
        let what = match &resource {
            Some(resource) => resource.clone(),
            None => format!("the path {}", info.path),
        };
        Err(ServerError::Forbidden(format!(
            "kubeauth.server.permissions: {caller} may not {} {what}{} in cluster '{cluster}' (no rule allows it)",
            if info.verb.is_empty() { "use" } else { &info.verb },
            info.namespace().map(|ns| format!(" in namespace '{ns}'")).unwrap_or_default(),
        )))
    }

    /// What of the list `info` (a `list` on `cluster`, across namespaces or in one) `caller` may have.
    pub fn list_scope(&self, caller: &Caller, cluster: &str, info: &RequestInfo) -> Scope {
        let Some(rules) = &self.rules else { return Scope::All };
        let names = Self::names(caller);
        let resource = info.rule_resource().unwrap_or_default();
        if rules.iter().any(|r| r.allows(&names, cluster, info, Some(&resource))) {
            return Scope::All;
        }
        if info.namespace().is_some() {
            return Scope::Nothing;
        }
        let namespaces: BTreeSet<String> = rules
            .iter()
            .filter(|r| r.applies_to(&names, cluster, "list") && any(&r.resources, &resource))
            .flat_map(|r| r.namespaces.iter().cloned())
            .collect();
        if namespaces.is_empty() { Scope::Nothing } else { Scope::Namespaces(namespaces) }
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;

    fn permissions(yaml: &str) -> Permissions {
        let rules: Vec<AccessRuleConfig> = serde_saphyr::from_str(yaml).unwrap();
        Permissions::from_config(Some(&rules))
    }

    fn user(entity_ref: &str, ownership: &[&str]) -> Caller {
        Caller::Backstage(BackstageCaller::User {
            entity_ref: entity_ref.into(),
            ownership: ownership.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn rules_allow_by_caller_group_cluster_namespace_resource_and_verb() {
        let rules = permissions(
            "- name: team-a-reads\n  callers: [group:default/team-a]\n  clusters: [prod]\n  namespaces: [team-a]\n  resources: [pods, pods/log, deployments.apps]\n  verbs: [get, list, watch]\n- callers: ['bearerTokens[0]']\n  resources: ['*']\n  verbs: ['*']\n- name: probes\n  callers: [local]\n  nonResourceURLs: [/healthz, /readyz/*]\n  verbs: [get]\n",
        );
        let alice = user("user:default/alice", &["user:default/alice", "group:default/team-a"]);
        let get = |path: &str| RequestInfo::of_path(&Method::GET, path, "");
        rules.check(&alice, "prod", &get("/api/v1/namespaces/team-a/pods")).unwrap();
        rules.check(&alice, "prod", &get("/apis/apps/v1/namespaces/team-a/deployments/web")).unwrap();
        let refused = |caller: &Caller, cluster: &str, info: &RequestInfo| {
            rules.check(caller, cluster, info).unwrap_err().to_string()
        };
        assert_eq!(
            refused(&alice, "prod", &RequestInfo::of_path(&Method::POST, "/api/v1/namespaces/team-a/pods/p/exec", "")),
            "kubeauth.server.permissions: user:default/alice may not create pods/exec in namespace 'team-a' in cluster 'prod' (no rule allows it)"
        );
        refused(&alice, "prod", &get("/api/v1/namespaces/team-b/pods"));
        refused(&alice, "prod", &get("/api/v1/pods"));
        refused(&alice, "staging", &get("/api/v1/namespaces/team-a/pods"));
        refused(&alice, "prod", &get("/api/v1/namespaces/team-a/secrets"));
        refused(&Caller::Local, "prod", &get("/api/v1/namespaces/team-a/pods"));
        rules
            .check(&Caller::ApiToken(0), "staging", &RequestInfo::of_path(&Method::DELETE, "/api/v1/nodes/n", ""))
            .unwrap();
        // Discovery is every client's; another path that names no resource needs a rule naming it.
        assert_eq!(rules.check(&alice, "prod", &get("/version")).unwrap(), Allowed::Discovery);
        assert_eq!(rules.check(&alice, "prod", &get("/apis/apps/v1")).unwrap(), Allowed::Discovery);
        assert_eq!(
            refused(&alice, "prod", &get("/logs/")),
            "kubeauth.server.permissions: user:default/alice may not get the path /logs/ in cluster 'prod' (no rule allows it)"
        );
        refused(&Caller::ApiToken(0), "prod", &get("/logs/"));
        refused(&alice, "prod", &RequestInfo::of_path(&Method::POST, "/version", ""));
        assert_eq!(rules.check(&Caller::Local, "prod", &get("/healthz")).unwrap(), Allowed::Rule("probes".into()));
        assert_eq!(rules.check(&Caller::Local, "prod", &get("/readyz/etcd")).unwrap(), Allowed::Rule("probes".into()));
        refused(&Caller::Local, "prod", &get("/healthzx"));

        assert_eq!(
            rules.list_scope(&alice, "prod", &get("/api/v1/pods")),
            Scope::Namespaces(BTreeSet::from(["team-a".into()]))
        );
        assert_eq!(rules.list_scope(&alice, "prod", &get("/api/v1/namespaces/team-a/pods")), Scope::All);
        assert_eq!(rules.list_scope(&alice, "prod", &get("/api/v1/secrets")), Scope::Nothing);
        assert_eq!(rules.list_scope(&Caller::ApiToken(0), "prod", &get("/api/v1/secrets")), Scope::All);
        assert_eq!(Permissions::default().list_scope(&alice, "prod", &get("/api/v1/secrets")), Scope::All);
    }

    #[test]
    fn verified_users_are_impersonated_and_others_as_configured_or_refused() {
        let config: ImpersonationConfig = serde_saphyr::from_str("clusters: [prod]\n").unwrap();
        let impersonation = Impersonation::from_config(&config);
        let alice = user("user:default/alice", &["user:default/alice", "group:default/team-a"]);
        assert_eq!(
            impersonation.identity(&alice).unwrap(),
            Impersonated {
                user: "user:default/alice".into(),
                groups: vec!["backstage:user:default/alice".into(), "backstage:group:default/team-a".into()]
            }
        );
        let on_behalf = Caller::Backstage(BackstageCaller::Plugin {
            plugin: "catalog".into(),
            on_behalf_of: Some("user:default/bob".into()),
        });
        assert_eq!(impersonation.identity(&on_behalf).unwrap().user, "user:default/bob");
        let refused = impersonation.identity(&Caller::ApiToken(1)).unwrap_err().to_string();
        assert!(refused.contains("bearerTokens[1] is not a verified user"), "{refused}");
        let mut prod = ClusterDetails::new("prod", "https://prod");
        assert!(impersonation.applies_to(&prod, true));
        assert!(!impersonation.applies_to(&prod, false), "a user's own token is the user already");
        prod.name = "dev".into();
        assert!(!impersonation.applies_to(&prod, true));

        let config: ImpersonationConfig = serde_saphyr::from_str(
            "userPrefix: 'portal:'\nunverified:\n  user: portal-automation\n  groups: [portal:bots]\n",
        )
        .unwrap();
        let impersonation = Impersonation::from_config(&config);
        assert_eq!(impersonation.identity(&alice).unwrap().user, "portal:user:default/alice");
        assert_eq!(
            impersonation.identity(&Caller::Local).unwrap(),
            Impersonated { user: "portal-automation".into(), groups: vec!["portal:bots".into()] }
        );
        let headers = impersonation.identity(&alice).unwrap().headers().unwrap();
        assert_eq!(headers.get_all("impersonate-group").iter().count(), 2);
    }
}
