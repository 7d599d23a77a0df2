//! Several config files read as Backstage's config loader reads them: `app-config.yaml`, then
//! `app-config.production.yaml` over it, then `APP_CONFIG_<path>` environment variables over both.
//!
//! - Files are merged in order: a later file's value wins; objects are merged key by key; arrays and scalars are
//!   replaced whole (a later `clusterLocatorMethods` replaces the earlier list).
//! - `$include: <path>[#<key.path>]` as a whole value is replaced by that file's content (YAML, or JSON for
//!   `.json`), relative to the file it is in; `$env` and `$file` stay for the value to read later, as in a single
//!   file, and so does `${VAR}`.
//! - `APP_CONFIG_kubernetes_serviceLocatorMethod_type=singleTenant` sets `kubernetes.serviceLocatorMethod.type`;
//!   a value that is JSON (`true`, `5`, `["a"]`, `{…}`) is taken as such, any other as a string.
//!
//! A single file with no `$include` and no `APP_CONFIG_` variable is read as it is, with the lines of its
//! clusters in messages. A value of a merged config that does not read is named by its full key path, the file
//! that gave it (the last one that sets it) and, for block-style YAML, its line there.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{AppConfig, LocatorError};

/// How many `$include`s deep a config may go.
const MAX_INCLUDE_DEPTH: usize = 8;

impl AppConfig {
    /// The config of `files` merged in order, with `vars` (the process environment) giving `APP_CONFIG_`
    /// overrides. Relative paths in values (`caFile`, `$file`) are relative to the first file's folder.
    pub fn from_files(
        files: &[PathBuf],
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LocatorError> {
        let overrides: Vec<(String, String)> =
            vars.into_iter().filter(|(name, _)| name.starts_with("APP_CONFIG_") && name.len() > 11).collect();
        let first = files.first().ok_or_else(|| LocatorError::Key {
            origin: None,
            key: "--config".into(),
            message: "no config file given".into(),
        })?;
        let texts: Vec<String> = files
            .iter()
            .map(|path| {
                std::fs::read_to_string(path).map_err(|source| LocatorError::ReadConfig { path: path.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        if files.len() == 1 && overrides.is_empty() && !texts[0].contains("$include") {
            return Self::from_yaml_str(&texts[0], Some(first));
        }
        let mut merged = Value::Object(Map::new());
        let mut documents = Vec::with_capacity(files.len());
        for (path, text) in files.iter().zip(&texts) {
            let mut document = parse(text, path)?;
            include(&mut document, path, 0)?;
            merge(&mut merged, document.clone());
            documents.push(document);
        }
        for (name, value) in &overrides {
            set(&mut merged, &name["APP_CONFIG_".len()..], value);
        }
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let described = names.join(" + ");
        let mut config: Self = serde_path_to_error::deserialize(merged.clone()).map_err(|e| {
            let path: Vec<Segment> = e.path().iter().map(Segment::from).collect();
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            // The value came from an APP_CONFIG_ variable, else from the last file that sets it.
            let variable = overrides.iter().rev().find(|(name, _)| {
                let set: Vec<&str> = name["APP_CONFIG_".len()..].split('_').collect();
                path.iter().zip(&set).take_while(|(s, v)| matches!(s, Segment::Key(k) if k == *v)).count() == set.len()
            });
            if let Some((name, _)) = variable {
                return LocatorError::Key { origin: None, key: format!("{key} (from {name})"), message };
            }
            let given = (0..files.len()).rev().find(|&i| sets(&documents[i], &path));
            match given {
                Some(i) => {
                    let line = line_of(&texts[i], &path).map(|l| format!(" (line {l})")).unwrap_or_default();
                    LocatorError::Key { origin: Some(files[i].clone()), key: format!("{key}{line}"), message }
                }
                None => LocatorError::Key { origin: Some(PathBuf::from(&described)), key, message },
            }
        })?;
        config.origin = Some(first.clone());
        config.unknown_keys = crate::unknown::unknown_keys(&merged);
        for unknown in &config.unknown_keys {
            tracing::warn!("{described}: {unknown}");
        }
        Ok(config)
    }
}

/// A file's YAML (JSON is YAML) as a value; an empty file is an empty object.
fn parse(text: &str, path: &Path) -> Result<Value, LocatorError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_saphyr::from_str(text).map_err(|e| LocatorError::from_yaml(e, Some(path)))
}

/// Replaces every `{$include: <path>[#<key.path>]}` in `value` with the content it names.
fn include(value: &mut Value, file: &Path, depth: usize) -> Result<(), LocatorError> {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("$include") => {
            let failed =
                |message: String| LocatorError::Key { origin: Some(file.to_owned()), key: "$include".into(), message };
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(failed(format!("more than {MAX_INCLUDE_DEPTH} includes deep")));
            }
            let target = map["$include"].as_str().ok_or_else(|| failed("takes a path".into()))?;
            let (relative, pointer) = target.split_once('#').unwrap_or((target, ""));
            let path = file.parent().unwrap_or(Path::new("")).join(relative);
            let text = std::fs::read_to_string(&path).map_err(|e| failed(format!("{}: {e}", path.display())))?;
            let mut content = if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text).map_err(|e| failed(format!("{}: {e}", path.display())))?
            } else {
                parse(&text, &path)?
            };
            if !pointer.is_empty() {
                content = pointer
                    .split('.')
                    .try_fold(&content, |v, key| v.get(key))
                    .cloned()
                    .ok_or_else(|| failed(format!("{} has no `{pointer}`", path.display())))?;
            }
            include(&mut content, &path, depth + 1)?;
            *value = content;
            Ok(())
        }
        Value::Object(map) => map.values_mut().try_for_each(|v| include(v, file, depth)),
        Value::Array(items) => items.iter_mut().try_for_each(|v| include(v, file, depth)),
        _ => Ok(()),
    }
}

/// `over` merged into `base`: objects key by key, anything else replaced.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// One step of a key path.
#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl From<&serde_path_to_error::Segment> for Segment {
    fn from(segment: &serde_path_to_error::Segment) -> Self {
        match segment {
            serde_path_to_error::Segment::Seq { index } => Self::Index(*index),
            serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => {
                Self::Key(key.clone())
            }
            serde_path_to_error::Segment::Unknown => Self::Key(String::new()),
        }
    }
}

/// Whether `document` gives the value at `path`: it has the value, or replaces an array or scalar on the way.
fn sets(document: &Value, path: &[Segment]) -> bool {
    let mut node = document;
    for segment in path {
        node = match (segment, node) {
            (Segment::Key(key), Value::Object(map)) => match map.get(key) {
                Some(next) => next,
                None => return false,
            },
            // Arrays are replaced whole: the file that has the array gave all of it.
            (Segment::Index(_), Value::Array(_)) => return true,
            _ => return false,
        };
    }
    true
}

/// The 1-based line of `path` in a block-style YAML `text` (the nearest line found on the way, when a step is
/// in flow style or not found).
fn line_of(text: &str, path: &[Segment]) -> Option<usize> {
    /// A line's steps: `    - name: b` is an item at column 4, then `name: b` at column 6.
    fn tokens(line: &str) -> Vec<(usize, &str)> {
        let mut column = line.len() - line.trim_start_matches(' ').len();
        let mut rest = &line[column..];
        let mut out = Vec::new();
        if rest.is_empty() || rest.starts_with('#') {
            return out;
        }
        while rest == "-" || rest.starts_with("- ") {
            out.push((column, "-"));
            let after = rest[1..].trim_start_matches(' ');
            column += rest.len() - after.len();
            rest = after;
        }
        if !rest.is_empty() {
            out.push((column, rest));
        }
        out
    }
    let lines: Vec<Vec<(usize, &str)>> = text.lines().map(tokens).collect();
    let (mut from, mut parent, mut found, mut after_item) = (0usize, None::<usize>, None, false);
    for segment in path {
        let (mut child, mut count, mut hit) = (None, 0, None);
        for (i, line) in lines.iter().enumerate().skip(from) {
            // On an item's own line, the dash that opened the item is not part of its content.
            let first = if i == from && after_item { line.get(1) } else { line.first() };
            let Some(&(column, token)) = first else { continue };
            match segment {
                Segment::Key(key) => {
                    if parent.is_some_and(|p| column <= p) {
                        break;
                    }
                    let at = *child.get_or_insert(column);
                    if column < at {
                        break;
                    }
                    if column == at && token.strip_prefix(key.as_str()).is_some_and(|r| r.starts_with(':')) {
                        hit = Some((i, column));
                        break;
                    }
                }
                Segment::Index(index) => {
                    // An item's dash may stand at its parent key's column.
                    if parent.is_some_and(|p| column < p) {
                        break;
                    }
                    let at = *child.get_or_insert(column);
                    if column < at || (column == at && token != "-") {
                        break;
                    }
                    if column == at {
                        if count == *index {
                            hit = Some((i, column));
                            break;
                        }
                        count += 1;
                    }
                }
            }
        }
        let Some((i, column)) = hit else { return found };
        found = Some(i + 1);
        parent = Some(column);
        after_item = matches!(segment, Segment::Index(_));
        from = if after_item { i } else { i + 1 };
    }
    found
}

/// Sets the value at `path` (`kubernetes_serviceLocatorMethod_type`), creating objects on the way.
fn set(root: &mut Value, path: &str, raw: &str) {
    let value = serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
    let mut node = root;
    let keys: Vec<&str> = path.split('_').collect();
    for (i, key) in keys.iter().enumerate() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        if i + 1 == keys.len() {
            map.insert((*key).to_owned(), value);
            return;
        }
        node = map.entry((*key).to_owned()).or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn files_merge_in_order_and_app_config_variables_win() {
        let dir = tempfile::tempdir().unwrap();
        let base = write(
            dir.path(),
            "app-config.yaml",
            "kubernetes:\n  serviceLocatorMethod: {type: multiTenant}\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - {name: dev, url: https://dev.example.com, authProvider: serviceAccount}\nkubeauth:\n  catalog: {baseUrl: https://backstage.dev.example.com, token: t}\n",
        );
        let production = write(
            dir.path(),
            "app-config.production.yaml",
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - {name: prod, url: https://prod.example.com, authProvider: aws}\nkubeauth:\n  catalog: {baseUrl: https://backstage.example.com}\n",
        );
        let vars = [
            ("APP_CONFIG_kubernetes_serviceLocatorMethod_type".to_owned(), "singleTenant".to_owned()),
            ("APP_CONFIG_kubernetes_objectTypes".to_owned(), r#"["pods"]"#.to_owned()),
            ("HOME".to_owned(), "/home/x".to_owned()),
        ];
        let config = AppConfig::from_files(&[base.clone(), production], vars).unwrap();
        // Arrays are replaced whole: only the production cluster.
        let clusters = config.kubernetes.cluster_locator_methods[0].clusters.as_ref().unwrap();
        assert_eq!(clusters.len(), 1);
        // Objects merge key by key: the production baseUrl, the base token.
        let catalog = config.kubeauth.catalog.as_ref().unwrap();
        assert!(
            matches!(catalog.base_url.as_ref(), Some(crate::ConfigString::Literal(u)) if u == "https://backstage.example.com")
        );
        assert!(catalog.token.is_some());
        assert_eq!(config.kubernetes.service_locator_method.as_ref().unwrap().kind, "singleTenant");
        assert_eq!(config.kubernetes.object_types.as_deref(), Some(&["pods".to_owned()][..]));
        assert_eq!(config.origin.as_deref(), Some(base.as_path()));
    }

    #[test]
    fn a_value_that_does_not_read_names_its_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let base = write(
            dir.path(),
            "app-config.yaml",
            "kubernetes:\n  serviceLocatorMethod:\n    type: multiTenant\n  clusterLocatorMethods:\n    - type: config\n      clusters: []\n",
        );
        let local = write(
            dir.path(),
            "app-config.local.yaml",
            "kubernetes:\n  clusterLocatorMethods:\n    - type: config\n      clusters:\n        - name: a\n          url: https://a.example.com\n          authProvider: serviceAccount\n        - name: b\n          url: https://b.example.com\n          authMetadata:\n            x: y\n          authProvider: [serviceAccount]\n",
        );
        let err = AppConfig::from_files(&[base.clone(), local], []).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: kubernetes.clusterLocatorMethods[0].clusters[1].authProvider (line 12): ",
                dir.path().join("app-config.local.yaml").display()
            )),
            "{err}"
        );
        let vars = [("APP_CONFIG_kubernetes_serviceLocatorMethod".to_owned(), "5".to_owned())];
        let err = AppConfig::from_files(&[base], vars).unwrap_err().to_string();
        assert!(
            err.starts_with("kubernetes.serviceLocatorMethod (from APP_CONFIG_kubernetes_serviceLocatorMethod): "),
            "{err}"
        );
    }

    #[test]
    fn lines_of_block_yaml_key_paths() {
        let text = "kubernetes:\n  # a comment\n  clusterLocatorMethods:\n  - type: config\n    clusters:\n      - name: a\n      -\n        name: b\n        url: x\nkubeauth: {}\n";
        let key = |k: &str| Segment::Key(k.into());
        let path = [key("kubernetes"), key("clusterLocatorMethods"), Segment::Index(0), key("clusters")];
        assert_eq!(line_of(text, &path), Some(5));
        let path = [
            key("kubernetes"),
            key("clusterLocatorMethods"),
            Segment::Index(0),
            key("clusters"),
            Segment::Index(1),
            key("url"),
        ];
        assert_eq!(line_of(text, &path), Some(9));
        assert_eq!(line_of(text, &[key("kubeauth"), key("server")]), Some(10), "flow style: the nearest line");
        assert_eq!(line_of(text, &[key("nothing")]), None);
    }

    #[test]
    fn includes_are_read_relative_to_their_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("k8s")).unwrap();
        write(
            dir.path(),
            "k8s/clusters.yaml",
            "shared:\n  clusters:\n    - {name: a, url: https://a.example.com, authProvider: serviceAccount}\n",
        );
        write(dir.path(), "k8s/types.json", r#"["pods", "services"]"#);
        let main = write(
            dir.path(),
            "app-config.yaml",
            "kubernetes:\n  objectTypes: {$include: k8s/types.json}\n  clusterLocatorMethods:\n    - type: config\n      clusters: {$include: 'k8s/clusters.yaml#shared.clusters'}\n",
        );
        let config = AppConfig::from_files(&[main], []).unwrap();
        assert_eq!(config.kubernetes.cluster_locator_methods[0].clusters.as_ref().unwrap().len(), 1);
        assert_eq!(config.kubernetes.object_types.as_ref().unwrap().len(), 2);
        let looping = write(dir.path(), "loop.yaml", "kubernetes: {$include: loop.yaml#kubernetes}\n");
        let err = AppConfig::from_files(&[looping], []).unwrap_err().to_string();
        assert!(err.contains("$include: more than 8 includes deep"), "{err}");
    }
}
