//! Keys kubeauth does not read, found by walking a config's `kubernetes` and `kubeauth` sections against its own
//! JSON Schema ([`crate::config_schema`]).
//!
//! As Backstage's config loader, kubeauth does not refuse a config for a key it does not know (one written for a
//! newer Backstage, or carrying a community plugin's keys): each is a warning that names the key's full path and,
//! when it looks like a typo, the nearest key there is. `kubeauth doctor --strict` turns them into failures.

use std::sync::OnceLock;

use serde_json::Value;

/// A key of the config that kubeauth does not read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownKey {
    /// Its full path from the root (`kubernetes.clusterLocatorMethods[0].clusters[1].skipTlsVerify`).
    pub path: String,
    /// A known key at the same place it looks like (`skipTLSVerify`).
    pub nearest: Option<String>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: not a key kubeauth reads; ignored", self.path)?;
        if let Some(nearest) = &self.nearest {
            write!(f, " (did you mean `{nearest}`?)")?;
        }
        Ok(())
    }
}

fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(crate::config_schema)
}

/// The keys of `document` (a whole app-config, as JSON) under `kubernetes` and `kubeauth` that kubeauth does not
/// read. The other top-level sections are Backstage's and other plugins' own, and are not looked at.
pub fn unknown_keys(document: &Value) -> Vec<UnknownKey> {
    let schema = schema();
    let mut found = Findings::default();
    for section in ["kubernetes", "kubeauth"] {
        if let (Some(value), Some(node)) = (document.get(section), schema["properties"].get(section)) {
            walk(schema, value, node, section, &mut found);
        }
    }
    let mut unknown = found.unknown;
    unknown.sort_by(|a, b| a.path.cmp(&b.path));
    unknown
}

/// What a walk found: the unknown keys, and how many values were not of the type the schema says (which only
/// tells apart the shapes a value may have; the typed parse reports them).
#[derive(Default)]
struct Findings {
    unknown: Vec<UnknownKey>,
    mismatched: usize,
}

/// Whether `value` is of one of the JSON types `node` allows (any, when it says none).
fn fits(value: &Value, node: &Value) -> bool {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allows = |t: &Value| t == kind || (t == "number" && kind == "integer");
    match node.get("type") {
        None => true,
        Some(Value::Array(types)) => types.iter().any(allows),
        Some(t) => allows(t),
    }
}

/// `node` with its `$ref`s followed.
fn resolve<'a>(schema: &'a Value, mut node: &'a Value) -> &'a Value {
    while let Some(reference) = node.get("$ref").and_then(Value::as_str) {
        node = &schema["$defs"][reference.trim_start_matches("#/$defs/")];
    }
    node
}

fn walk(schema: &Value, value: &Value, node: &Value, path: &str, found: &mut Findings) {
    let node = resolve(schema, node);
    // One of several shapes (an optional value, a login or a map of logins): the one that fits best, first the
    // one that takes every key at this level, then the one with the fewest unknown keys below.
    if let Some(branches) = node.get("anyOf").and_then(Value::as_array) {
        let at_this_level = |u: &UnknownKey| !u.path[path.len() + 1..].contains(['.', '[']);
        let best = branches
            .iter()
            .filter(|b| resolve(schema, b)["type"] != "null")
            .map(|branch| {
                let mut findings = Findings::default();
                walk(schema, value, branch, path, &mut findings);
                findings
            })
            .min_by_key(|f| (f.mismatched, f.unknown.iter().any(at_this_level), f.unknown.len()));
        if let Some(best) = best {
            found.unknown.extend(best.unknown);
            found.mismatched += best.mismatched;
        }
        return;
    }
    if !fits(value, node) {
        found.mismatched += 1;
        return;
    }
    match value {
        Value::Object(entries) => {
            let properties = node.get("properties").and_then(Value::as_object);
            let additional = node.get("additionalProperties").filter(|a| a.is_object());
            if properties.is_none() && additional.is_none() {
                return;
            }
            for (key, child) in entries {
                let child_path = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_node), _) | (None, Some(child_node)) => {
                        walk(schema, child, child_node, &child_path, found);
                    }
                    (None, None) => found.unknown.push(UnknownKey {
                        path: child_path,
                        nearest: properties.and_then(|p| nearest(key, p.keys().map(String::as_str))),
                    }),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_node) = node.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(schema, item, item_node, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

/// The known key `key` looks like: the same but for case, or at most two edits away (one for short keys).
fn nearest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    let known: Vec<&str> = known.collect();
    if let Some(same) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        return Some((*same).to_owned());
    }
    let limit = if key.len() <= 5 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (edit_distance(&key.to_ascii_lowercase(), &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_owned())
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(yaml: &str) -> Vec<String> {
        let document: Value = serde_saphyr::from_str(yaml).unwrap();
        unknown_keys(&document).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unknown_keys_are_named_with_the_key_they_look_like() {
        let found = unknown(
            "kubernetes:
  clusterLocatorMethods:
    - type: config
      clusters:
        - name: a
          url: https://a.example.com
          authProvider: serviceAccount
          skipTlsVerify: true
          someCommunityPluginKey: 1
          authMetadata: {kubernetes.io/anything: x}
kubeauth:
  server:
    limits: {maxConnection: 10}
  login:
    oidc:
      okta: {issuer: https://a, clientId: b, clientSecre: c}
app:
  title: not ours
",
        );
        assert_eq!(
            found,
            [
                "kubeauth.login.oidc.okta.clientSecre: not a key kubeauth reads; ignored (did you mean `clientSecret`?)",
                "kubeauth.server.limits.maxConnection: not a key kubeauth reads; ignored (did you mean `maxConnections`?)",
                "kubernetes.clusterLocatorMethods[0].clusters[0].skipTlsVerify: not a key kubeauth reads; ignored (did you mean `skipTLSVerify`?)",
                "kubernetes.clusterLocatorMethods[0].clusters[0].someCommunityPluginKey: not a key kubeauth reads; ignored",
            ]
        );
    }

    #[test]
    fn a_config_of_known_keys_has_no_warning() {
        assert!(unknown(crate::EMBEDDED_DEFAULT_CONFIG).is_empty());
        assert!(
            unknown(
                "kubernetes:\n  serviceLocatorMethod: {type: multiTenant}\n  clusterLocatorMethods:\n    - type: gke\n      projectId: p\n      matchingResourceLabels: [{key: a, value: b}]\nkubeauth:\n  login:\n    google: {clientId: a, clientSecret: {$env: SECRET}}\n"
            )
            .is_empty()
        );
    }
}
