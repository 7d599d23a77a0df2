use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// Looks up an environment variable.
type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where `${VAR}`, `$env` and `$file` values come from: the environment and the config file's folder.
///
/// Tests pass a closure instead of the process environment.
#[derive(Clone)]
pub struct ResolveContext {
    env: Arc<EnvLookup>,
    base_dir: PathBuf,
}

impl ResolveContext {
    /// Variables from `env`; `$file` paths relative to the current folder.
    pub fn new(env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self { env: Arc::new(env), base_dir: PathBuf::from(".") }
    }

    /// Variables from the process environment.
    pub fn from_process_env() -> Self {
        Self::new(|name| std::env::var(name).ok())
    }

    /// `$file` paths relative to `dir` (the config file's folder).
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    pub(crate) fn var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// A path from the config: relative ones are relative to the config file's folder.
    pub fn path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() { p.to_owned() } else { self.base_dir.join(p) }
    }
}

impl fmt::Debug for ResolveContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveContext").field("base_dir", &self.base_dir).finish_non_exhaustive()
    }
}

/// A string config value as Backstage's config allows it: a literal with `${VAR}` substitutions (`$${` for a
/// literal `${`, `${VAR:-fallback}` for a default), `{$env: VAR}` for a whole value from the environment, or
/// `{$file: path}` for a file's contents (relative to the config file).
#[derive(Clone, PartialEq, Eq)]
pub enum ConfigString {
    /// A literal, with `${VAR}` substitutions.
    Literal(String),
    /// `$env: VAR`.
    Env(String),
    /// `$file: path`.
    File(String),
}

/// The largest file a `$file` value reads.
pub const MAX_FILE_VALUE: u64 = 1024 * 1024;

/// Why a value could not be resolved.
enum Unresolved {
    /// An environment variable it refers to is not set: the value is absent (as Backstage's config loader has it).
    Unset(String),
    /// Anything else (a malformed reference, an unreadable `$file`).
    Invalid(String),
}

impl ConfigString {
    /// The value, with every substitution made. The error says what is missing, never the value.
    pub fn resolve(&self, ctx: &ResolveContext) -> Result<String, String> {
        self.resolve_inner(ctx).map_err(|e| match e {
            Unresolved::Unset(message) | Unresolved::Invalid(message) => message,
        })
    }

    /// The value of an optional key, as Backstage's config loader reads it: `None` when an environment variable
    /// it refers to (`${VAR}` without a fallback, `$env: VAR`) is not set, which makes the key absent; an error
    /// for anything else that is wrong.
    pub fn resolve_optional(&self, ctx: &ResolveContext) -> Result<Option<String>, String> {
        match self.resolve_inner(ctx) {
            Ok(value) => Ok(Some(value)),
            Err(Unresolved::Unset(_)) => Ok(None),
            Err(Unresolved::Invalid(message)) => Err(message),
        }
    }

    fn resolve_inner(&self, ctx: &ResolveContext) -> Result<String, Unresolved> {
        match self {
            Self::Literal(text) => substitute(text, ctx),
            Self::Env(name) => ctx
                .var(name)
                .ok_or_else(|| Unresolved::Unset(format!("environment variable `{name}` ($env) is not set"))),
            Self::File(path) => {
                use std::io::Read as _;
                let full = ctx.path(path);
                let failed =
                    |e: std::io::Error| Unresolved::Invalid(format!("cannot read $file `{}`: {e}", full.display()));
                // A bounded read: a device or a huge file is an error, not unbounded memory.
                let mut bytes = Vec::new();
                std::fs::File::open(&full)
                    .and_then(|f| f.take(MAX_FILE_VALUE + 1).read_to_end(&mut bytes))
                    .map_err(failed)?;
                if bytes.len() as u64 > MAX_FILE_VALUE {
                    let message = format!("$file `{}` is larger than {MAX_FILE_VALUE} bytes", full.display());
                    return Err(Unresolved::Invalid(message));
                }
                let text = String::from_utf8(bytes)
                    .map_err(|_| Unresolved::Invalid(format!("$file `{}` is not UTF-8 text", full.display())))?;
                Ok(text.trim_end_matches(['\n', '\r']).to_owned())
            }
        }
    }
}

/// Replaces `${VAR}` and `${VAR:-fallback}`; `$${` stands for a literal `${`.
fn substitute(text: &str, ctx: &ResolveContext) -> Result<String, Unresolved> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| Unresolved::Invalid(format!("unclosed `${{` in `{}`", truncate(text))))?;
            let expr = &after[..end];
            let (name, fallback) = match expr.split_once(":-") {
                Some((n, f)) => (n.trim(), Some(f)),
                None => (expr.trim(), None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Unresolved::Invalid(format!(
                    "`${{{expr}}}` is not a valid environment variable reference"
                )));
            }
            match (ctx.var(name), fallback) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(f)) => out.push_str(f),
                (None, None) => return Err(Unresolved::Unset(format!("environment variable `{name}` is not set"))),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn truncate(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(40) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

impl fmt::Debug for ConfigString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (serviceAccountToken); their source is enough to debug a config.
        match self {
            Self::Literal(s) => write!(f, "Literal(<{} characters>)", s.len()),
            Self::Env(name) => write!(f, "Env({name})"),
            Self::File(path) => write!(f, "File({path})"),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfigString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, {$env: VAR} or {$file: path}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConfigString::Literal(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(ConfigString::Literal(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ConfigString::Literal(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigString::Literal(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ConfigString::Literal(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ConfigString::Literal(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let key: String = map.next_key()?.ok_or_else(|| de::Error::custom("expected $env or $file"))?;
                let value: String = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a $env or $file value takes exactly one key"));
                }
                match key.as_str() {
                    "$env" => Ok(ConfigString::Env(value)),
                    "$file" => Ok(ConfigString::File(value)),
                    other => Err(de::Error::custom(format!("unknown key `{other}`: expected $env or $file"))),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for ConfigString {
    fn schema_name() -> Cow<'static, str> {
        "ConfigString".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string, with ${VAR} substitutions; or {$env: VAR}; or {$file: path}.",
            "anyOf": [
                { "type": "string" },
                { "type": "object", "properties": { "$env": { "type": "string" } }, "required": ["$env"], "additionalProperties": false },
                { "type": "object", "properties": { "$file": { "type": "string" } }, "required": ["$file"], "additionalProperties": false }
            ]
        })
    }
}

/// A boolean config value: `true`/`false`, or a string that resolves to one (`${SKIP_TLS}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigBool {
    /// A YAML boolean.
    Value(bool),
    /// A string to resolve, then read as `true` or `false`.
    Text(ConfigString),
}

impl ConfigBool {
    /// The value, with substitutions made.
    pub fn resolve(&self, ctx: &ResolveContext) -> Result<bool, String> {
        match self {
            Self::Value(b) => Ok(*b),
            Self::Text(s) => Self::parse(&s.resolve(ctx)?),
        }
    }

    /// The value of an optional key: `None` when a variable it refers to is not set (the key is absent, as
    /// Backstage's config loader has it).
    pub fn resolve_optional(&self, ctx: &ResolveContext) -> Result<Option<bool>, String> {
        match self {
            Self::Value(b) => Ok(Some(*b)),
            Self::Text(s) => s.resolve_optional(ctx)?.map(|text| Self::parse(&text)).transpose(),
        }
    }

    fn parse(text: &str) -> Result<bool, String> {
        match text.trim() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            other => Err(format!("`{other}` is not true or false")),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ConfigBool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false, or a string that resolves to one")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ConfigBool::Value(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ConfigBool::Text(ConfigString::Literal(v.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ConfigString::deserialize(de::value::MapAccessDeserializer::new(map)).map(ConfigBool::Text)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl JsonSchema for ConfigBool {
    fn schema_name() -> Cow<'static, str> {
        "ConfigBool".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let string = generator.subschema_for::<ConfigString>();
        json_schema!({ "anyOf": [ { "type": "boolean" }, string ] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ResolveContext {
        ResolveContext::new(|name| match name {
            "HOST" => Some("10.0.0.1".into()),
            "PORT" => Some("6443".into()),
            _ => None,
        })
    }

    #[test]
    fn substitutes_variables_fallbacks_and_escapes() {
        let s = ConfigString::Literal("https://${HOST}:${PORT}/${MISSING:-x}/$${HOST}/$5".into());
        assert_eq!(s.resolve(&ctx()).unwrap(), "https://10.0.0.1:6443/x/${HOST}/$5");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = ConfigString::Literal("${AZURE_CLUSTER_API_SERVER_ADDRESS}".into()).resolve(&ctx()).unwrap_err();
        assert!(err.contains("AZURE_CLUSTER_API_SERVER_ADDRESS"), "{err}");
        let err = ConfigString::Env("NOPE".into()).resolve(&ctx()).unwrap_err();
        assert!(err.contains("`NOPE`"), "{err}");
        let err = ConfigString::Literal("${HOST".into()).resolve(&ctx()).unwrap_err();
        assert!(err.contains("unclosed"), "{err}");
    }

    #[test]
    fn file_values_are_read_relative_to_the_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "file-token\n").unwrap();
        let ctx = ctx().with_base_dir(dir.path());
        assert_eq!(ConfigString::File("token".into()).resolve(&ctx).unwrap(), "file-token");
        let err = ConfigString::File("absent".into()).resolve(&ctx).unwrap_err();
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn booleans_resolve_from_strings() {
        let ctx = ResolveContext::new(|n| (n == "SKIP").then(|| "true".into()));
        assert!(ConfigBool::Text(ConfigString::Literal("${SKIP}".into())).resolve(&ctx).unwrap());
        assert!(ConfigBool::Text(ConfigString::Literal("yes".into())).resolve(&ctx).is_err());
    }

    #[test]
    fn debug_does_not_show_literal_values() {
        assert!(!format!("{:?}", ConfigString::Literal("s3cret".into())).contains("s3cret"));
    }
}

#[cfg(test)]
mod bounded_file_tests {
    use super::*;

    #[test]
    fn a_file_value_is_read_with_a_bound() {
        let ctx = ResolveContext::new(|_| None);
        let err = ConfigString::File("/dev/zero".into()).resolve(&ctx).unwrap_err();
        assert_eq!(err, format!("$file `/dev/zero` is larger than {MAX_FILE_VALUE} bytes"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        let err = ConfigString::File("bin".into()).resolve(&ctx.with_base_dir(dir.path())).unwrap_err();
        assert!(err.ends_with("is not UTF-8 text"), "{err}");
    }
}
