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

use http::{HeaderMap, HeaderValue, Method};
use kubeauth::ClusterDetails;
use kubeauth::locator::{AccessRuleConfig, ImpersonationConfig};

use crate::api_auth::Caller;
use crate::backstage_auth::BackstageCaller;
use crate::error::ServerError;

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

/// What a request asks of a cluster, as the API server's RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; for a path that names
    /// no resource, the lowercase method.
    pub verb: String,
    /// The namespace, for a namespaced resource.
    pub namespace: Option<String>,
    /// `pods`, `pods/exec`, `deployments.apps`, `deployments.apps/scale`; `None` for a non-resource path
    /// (`/version`, `/api`, `/openapi/v2`).
    pub resource: Option<String>,
}

impl Attributes {
    /// The attributes of `method` on `path` (with its `query`), as the API server's request info derives them.
    pub fn of(method: &Method, path: &str, query: Option<&str>) -> Self {
        let mut parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
        let non_resource = Self { verb: method.as_str().to_ascii_lowercase(), namespace: None, resource: None };
        let group = match parts.first() {
            Some(&"api") if parts.len() >= 2 => {
                parts.drain(..2);
                String::new()
            }
            Some(&"apis") if parts.len() >= 3 => {
                let group = parts[1].to_owned();
                parts.drain(..3);
                group
            }
            _ => return non_resource,
        };
        if parts.is_empty() {
            return non_resource;
        }
        // The old `/api/v1/watch/...` paths.
        let mut watch = false;
        if parts[0] == "watch" {
            watch = true;
            parts.remove(0);
        }
        let mut namespace = None;
        if parts.len() > 1 && parts[0] == "namespaces" {
            namespace = Some(parts[1].to_owned());
            // `namespaces/{name}/status` and `/finalize` are the namespace's own subresources.
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts.drain(..2);
            } else {
                namespace = None;
            }
        }
        let (resource, name, subresource) = (parts.first().copied(), parts.get(1).copied(), parts.get(2).copied());
        let Some(resource) = resource else { return non_resource };
        // A namespace object is cluster-scoped: its name is not a namespace the request is in.
        if resource == "namespaces" {
            namespace = None;
        }
        let watch_query = query
            .is_some_and(|q| q.split('&').any(|pair| matches!(pair.split_once('='), Some(("watch", "true" | "1")))));
        let verb = match *method {
            Method::GET | Method::HEAD if watch || watch_query => "watch",
            Method::GET | Method::HEAD if name.is_none() => "list",
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if name.is_none() => "deletecollection",
            Method::DELETE => "delete",
            _ => {
                return Self { verb: method.as_str().to_ascii_lowercase(), namespace, resource: Some(resource.into()) };
            }
        };
        let mut full = if group.is_empty() { resource.to_owned() } else { format!("{resource}.{group}") };
        if let Some(sub) = subresource {
            full = format!("{full}/{sub}");
        }
        Self { verb: verb.into(), namespace, resource: Some(full) }
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
    verbs: Vec<String>,
}

fn any(patterns: &[String], value: &str) -> bool {
    patterns.iter().any(|p| p == "*" || p == value)
}

impl Rule {
    fn allows(&self, names: &BTreeSet<String>, cluster: &str, attributes: &Attributes) -> bool {
        let resource = attributes.resource.as_deref().unwrap_or_default();
        self.callers.iter().any(|c| c == "*" || names.contains(c))
            && any(&self.clusters, cluster)
            && any(&self.verbs, &attributes.verb)
            && any(&self.resources, resource)
            // A cluster-scoped request (or a list across namespaces) needs every namespace.
            && match &attributes.namespace {
                Some(namespace) => any(&self.namespaces, namespace),
                None => self.namespaces.iter().any(|n| n == "*"),
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
    pub fn check(&self, caller: &Caller, cluster: &str, attributes: &Attributes) -> Result<(), ServerError> {
        let Some(rules) = &self.rules else { return Ok(()) };
        // A path that names no resource (discovery, `/version`) is read by every client; only reading it.
        if attributes.resource.is_none() && attributes.verb == "get" {
            return Ok(());
        }
        let names = Self::names(caller);
        if let Some(rule) = rules.iter().find(|r| r.allows(&names, cluster, attributes)) {
            tracing::debug!(%caller, cluster, rule = %rule.name, "allowed");
            return Ok(());
        }
        Err(ServerError::Forbidden(format!(
            "kubeauth.server.permissions: {caller} may not {} {}{} in cluster '{cluster}' (no rule allows it)",
            attributes.verb,
            attributes.resource.as_deref().unwrap_or("this path"),
            attributes.namespace.as_deref().map(|ns| format!(" in namespace '{ns}'")).unwrap_or_default(),
        )))
    }

    /// What of the list of `resource` across namespaces (`list` on `cluster`) `caller` may have.
    pub fn list_scope(&self, caller: &Caller, cluster: &str, resource: &str, namespace: Option<&str>) -> Scope {
        let Some(rules) = &self.rules else { return Scope::All };
        let names = Self::names(caller);
        let asked = Attributes {
            verb: "list".into(),
            namespace: namespace.map(str::to_owned),
            resource: Some(resource.into()),
        };
        if rules.iter().any(|r| r.allows(&names, cluster, &asked)) {
            return Scope::All;
        }
        if namespace.is_some() {
            return Scope::Nothing;
        }
        let namespaces: BTreeSet<String> = rules
            .iter()
            .filter(|r| {
                r.callers.iter().any(|c| c == "*" || names.contains(c))
                    && any(&r.clusters, cluster)
                    && any(&r.verbs, "list")
                    && any(&r.resources, resource)
            })
            .flat_map(|r| r.namespaces.iter().cloned())
            .collect();
        if namespaces.is_empty() { Scope::Nothing } else { Scope::Namespaces(namespaces) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(method: Method, path: &str) -> (String, Option<String>, Option<String>) {
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
        let a = Attributes::of(&method, path, query);
        (a.verb, a.namespace, a.resource)
    }

    fn a(verb: &str, ns: Option<&str>, resource: Option<&str>) -> (String, Option<String>, Option<String>) {
        (verb.into(), ns.map(Into::into), resource.map(Into::into))
    }

    #[test]
    fn attributes_are_derived_as_the_api_server_derives_them() {
        assert_eq!(attributes(Method::GET, "/api/v1/pods"), a("list", None, Some("pods")));
        assert_eq!(attributes(Method::GET, "/api/v1/namespaces/t/pods?watch=1"), a("watch", Some("t"), Some("pods")));
        assert_eq!(attributes(Method::GET, "/api/v1/watch/namespaces/t/pods/p"), a("watch", Some("t"), Some("pods")));
        assert_eq!(attributes(Method::GET, "/api/v1/namespaces/t/pods/p/log"), a("get", Some("t"), Some("pods/log")));
        assert_eq!(
            attributes(Method::POST, "/api/v1/namespaces/t/pods/p/exec?command=sh"),
            a("create", Some("t"), Some("pods/exec"))
        );
        assert_eq!(
            attributes(Method::GET, "/api/v1/namespaces/t/pods/p/portforward"),
            a("get", Some("t"), Some("pods/portforward"))
        );
        assert_eq!(
            attributes(Method::PATCH, "/apis/apps/v1/namespaces/t/deployments/d/scale"),
            a("patch", Some("t"), Some("deployments.apps/scale"))
        );
        assert_eq!(
            attributes(Method::DELETE, "/api/v1/namespaces/t/secrets"),
            a("deletecollection", Some("t"), Some("secrets"))
        );
        assert_eq!(attributes(Method::GET, "/api/v1/namespaces/t"), a("get", None, Some("namespaces")));
        assert_eq!(
            attributes(Method::PUT, "/api/v1/namespaces/t/finalize"),
            a("update", None, Some("namespaces/finalize"))
        );
        assert_eq!(attributes(Method::GET, "/version"), a("get", None, None));
        assert_eq!(attributes(Method::GET, "/apis/apps/v1"), a("get", None, None));
    }

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
            "- name: team-a-reads\n  callers: [group:default/team-a]\n  clusters: [prod]\n  namespaces: [team-a]\n  resources: [pods, pods/log, deployments.apps]\n  verbs: [get, list, watch]\n- callers: ['bearerTokens[0]']\n  resources: ['*']\n  verbs: ['*']\n",
        );
        let alice = user("user:default/alice", &["user:default/alice", "group:default/team-a"]);
        let get = |path: &str| Attributes::of(&Method::GET, path, None);
        rules.check(&alice, "prod", &get("/api/v1/namespaces/team-a/pods")).unwrap();
        rules.check(&alice, "prod", &get("/apis/apps/v1/namespaces/team-a/deployments/web")).unwrap();
        let refused = |caller: &Caller, cluster: &str, attributes: &Attributes| {
            rules.check(caller, cluster, attributes).unwrap_err().to_string()
        };
        assert_eq!(
            refused(&alice, "prod", &Attributes::of(&Method::POST, "/api/v1/namespaces/team-a/pods/p/exec", None)),
            "kubeauth.server.permissions: user:default/alice may not create pods/exec in namespace 'team-a' in cluster 'prod' (no rule allows it)"
        );
        refused(&alice, "prod", &get("/api/v1/namespaces/team-b/pods"));
        refused(&alice, "prod", &get("/api/v1/pods"));
        refused(&alice, "staging", &get("/api/v1/namespaces/team-a/pods"));
        refused(&alice, "prod", &get("/api/v1/namespaces/team-a/secrets"));
        refused(&Caller::Local, "prod", &get("/api/v1/namespaces/team-a/pods"));
        rules
            .check(&Caller::ApiToken(0), "staging", &Attributes::of(&Method::DELETE, "/api/v1/nodes/n", None))
            .unwrap();
        rules.check(&alice, "prod", &get("/version")).unwrap();

        assert_eq!(
            rules.list_scope(&alice, "prod", "pods", None),
            Scope::Namespaces(BTreeSet::from(["team-a".into()]))
        );
        assert_eq!(rules.list_scope(&alice, "prod", "pods", Some("team-a")), Scope::All);
        assert_eq!(rules.list_scope(&alice, "prod", "secrets", None), Scope::Nothing);
        assert_eq!(rules.list_scope(&Caller::ApiToken(0), "prod", "secrets", None), Scope::All);
        assert_eq!(Permissions::default().list_scope(&alice, "prod", "secrets", None), Scope::All);
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
