//! What a request means to the API server: its path decoded and checked once, then read with the rules of
//! k8s.io/apiserver's `RequestInfoFactory` (`pkg/endpoints/request/requestinfo.go`), so that the guard, the
//! impersonation, the audit log and the metrics all decide on the one request the API server will serve.
//!
//! The rules, in order:
//! 1. **The path is decoded as Go's `net/url` decodes it** (`%XX` escapes; `+` stays `+`), segment by segment.
//!    What the API server would read with another meaning than its text says is refused with a 400 naming the
//!    path: an escape that is not `%` and two hex digits, an escaped `/`, `?` or `#`, a `.` or `..` segment (also
//!    as `%2e`), an empty segment (`//`), a control character, a segment that is not UTF-8.
//! 2. **The canonical form goes upstream**: each decoded segment escaped again with only what must be escaped
//!    (`/api/v1/namespaces/%61/pods` is sent as `/api/v1/namespaces/a/pods`). What the guard decided on is
//!    literally what the API server (and any gateway in front of it) reads. The query is sent as it came.
//! 3. **The query is read as Go's `url.ParseQuery`**: pairs split on `&`, a pair holding `;` or a bad escape is
//!    dropped, `+` is a space, the first value of a key is the one read.
//! 4. **RequestInfo**, as the API server derives it: `/api/{version}/…` and `/apis/{group}/{version}/…` are
//!    resource requests when long enough; `watch` and `proxy` as a path verb; `namespaces/{ns}/{resource}` (but
//!    the namespace's own `status` and `finalize`); resource, name, subresource; a `get` without a name is a
//!    `list`, or a `watch` when the list options say so (`watch` is true unless its first value is `0` or
//!    `false` in any case); a list whose options decode has its `fieldSelector`'s `metadata.name` as its name;
//!    a `delete` without a name is a `deletecollection`. When the list options do not decode (a bad
//!    `labelSelector`, `fieldSelector`, `limit` or `timeoutSeconds`), the API server falls back to reading
//!    `watch` alone (`false` or `0` after lowercasing): so does this.
//! 5. **Discovery** (`GET /api`, `/api/{v}`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`, `/version`, `/openapi/…`) is
//!    what every client reads first; any other non-resource path (`/logs/`, `/metrics`, `/debug/…`,
//!    `/healthz`) needs a rule (`nonResourceURLs`) once rules exist.

use std::fmt::Write as _;

use http::Method;

/// What the API server's `RequestInfo` says of one request: the attributes its authorization and audit read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestInfo {
    /// A request for an API resource (`/api/v1/…`, `/apis/apps/v1/…`), else a non-resource path.
    pub is_resource_request: bool,
    /// The decoded path.
    pub path: String,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, `proxy`); for a non-resource path the lowercase method; empty for a method the API
    /// server gives no verb (`OPTIONS` on a resource).
    pub verb: String,
    /// `api` or `apis`.
    pub api_prefix: String,
    /// The API group (empty for the core group).
    pub api_group: String,
    /// The API version.
    pub api_version: String,
    /// The namespace (empty when cluster-scoped or across namespaces).
    pub namespace: String,
    /// The resource (`pods`).
    pub resource: String,
    /// The subresource (`log`, `exec`, `status`).
    pub subresource: String,
    /// The object's name, from the path (or a list's `fieldSelector=metadata.name=…`).
    pub name: String,
}

/// A request as it goes to the API server: what it means, and the path and query to send.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    /// What the API server will read.
    pub info: RequestInfo,
    /// The canonical path with the caller's query.
    pub uri: http::Uri,
}

/// Why a path is refused (a 400 naming it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The path as sent.
    pub path: String,
    /// Why.
    pub reason: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the path `{}` is refused: {}", self.path, self.reason)
    }
}

impl RequestInfo {
    /// The request `method` on `path_and_query` (a path under the cluster's URL, as sent), read as the API
    /// server reads it, and the canonical form to send it in.
    pub fn parse(method: &Method, path_and_query: &str) -> Result<ApiRequest, Refused> {
        let (raw_path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let refuse = |reason| Refused { path: raw_path.to_owned(), reason };
        if !raw_path.starts_with('/') {
            return Err(refuse("it does not start with `/`"));
        }
        let raw_segments: Vec<&str> = raw_path[1..].split('/').collect();
        let mut segments = Vec::with_capacity(raw_segments.len());
        for (i, raw) in raw_segments.iter().enumerate() {
            let last = i + 1 == raw_segments.len();
            if raw.is_empty() {
                // `/` itself, and one trailing `/`, are what the API server trims; `//` is not.
                if last {
                    segments.push(String::new());
                    continue;
                }
                return Err(refuse("an empty segment (`//`)"));
            }
            segments.push(decode_segment(raw).map_err(refuse)?);
        }
        let decoded = format!("/{}", segments.join("/"));
        let mut canonical = String::with_capacity(raw_path.len() + 8);
        canonical.push('/');
        for (i, segment) in segments.iter().enumerate() {
            if i > 0 {
                canonical.push('/');
            }
            escape_segment(segment, &mut canonical);
        }
        if let Some(query) = query {
            canonical.push('?');
            canonical.push_str(query);
        }
        let uri = canonical.parse().map_err(|_| refuse("not a valid request target"))?;
        let query = parse_query(query.unwrap_or(""));
        let info = Self::derive(method, decoded, &query).map_err(refuse)?;
        Ok(ApiRequest { info, uri })
    }

    /// An already canonical path the server builds itself (the objects endpoints' list requests).
    pub fn of_path(method: &Method, path: &str, query: &str) -> Self {
        Self::derive(method, path.to_owned(), &parse_query(query)).unwrap_or_else(|_| Self {
            path: path.to_owned(),
            verb: method.as_str().to_ascii_lowercase(),
            ..Self::default()
        })
    }

    /// `NewRequestInfo` of requestinfo.go, on the decoded path and the parsed query.
    fn derive(method: &Method, path: String, query: &Query) -> Result<Self, &'static str> {
        let mut info = Self { path, verb: method.as_str().to_ascii_lowercase(), ..Self::default() };
        let trimmed = info.path.trim_matches('/');
        let mut parts: Vec<String> =
            if trimmed.is_empty() { Vec::new() } else { trimmed.split('/').map(str::to_owned).collect() };
        if parts.len() < 3 || !matches!(parts[0].as_str(), "api" | "apis") {
            return Ok(info);
        }
        info.api_prefix = parts.remove(0);
        if info.api_prefix == "apis" {
            if parts.len() < 3 {
                return Ok(info);
            }
            info.api_group = parts.remove(0);
        }
        info.is_resource_request = true;
        info.api_version = parts.remove(0);

        if matches!(parts[0].as_str(), "proxy" | "watch") {
            if parts.len() < 2 {
                return Err("a `watch` or `proxy` path names no resource");
            }
            info.verb = parts.remove(0);
        } else {
            info.verb = match *method {
                Method::POST => "create",
                Method::GET | Method::HEAD => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "",
            }
            .to_owned();
        }

        if parts[0] == "namespaces" && parts.len() > 1 {
            info.namespace = parts[1].clone();
            if parts.len() > 2 && !matches!(parts[2].as_str(), "status" | "finalize") {
                parts.drain(..2);
            }
        }
        let proxy = info.verb == "proxy";
        if parts.len() >= 3 && !proxy {
            info.subresource = parts[2].clone();
        }
        if parts.len() >= 2 {
            info.name = parts[1].clone();
        }
        if !parts.is_empty() {
            info.resource = parts[0].clone();
        }

        if info.name.is_empty() && info.verb == "get" {
            let (watch, name) = match query.list_options() {
                Some(options) => (options.watch, options.name),
                // The API server's fallback when the options do not decode.
                None => {
                    (query.first("watch").is_some_and(|v| !matches!(v.to_lowercase().as_str(), "false" | "0")), None)
                }
            };
            info.verb = if watch { "watch" } else { "list" }.to_owned();
            if let Some(name) = name.filter(|n| is_path_segment_name(n)) {
                info.name = name;
            }
        }
        if info.name.is_empty() && info.verb == "delete" {
            info.verb = "deletecollection".to_owned();
        }
        Ok(info)
    }

    /// A resource request asked about directly (`kubeauth can-i`): `verb` on `resource` of `group` (its
    /// `subresource`), in `namespace` when given.
    pub fn resource_request(verb: &str, group: &str, resource: &str, subresource: &str, namespace: &str) -> Self {
        Self {
            is_resource_request: true,
            verb: verb.to_owned(),
            api_prefix: if group.is_empty() { "api" } else { "apis" }.to_owned(),
            api_group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            namespace: namespace.to_owned(),
            ..Self::default()
        }
    }

    /// The resource as kubeauth's rules name it: `pods`, `pods/log`, `deployments.apps`,
    /// `deployments.apps/scale`; `None` for a non-resource path.
    pub fn rule_resource(&self) -> Option<String> {
        if !self.is_resource_request {
            return None;
        }
        let mut full = self.resource.clone();
        if !self.api_group.is_empty() {
            full.push('.');
            full.push_str(&self.api_group);
        }
        if !self.subresource.is_empty() {
            full.push('/');
            full.push_str(&self.subresource);
        }
        Some(full)
    }

    /// The namespace, if the request is in one.
    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }

    /// A read of the API's discovery (`/api`, `/apis/…` short of a resource, `/version`, `/openapi/…`), which
    /// every client makes before anything else.
    pub fn is_discovery(&self) -> bool {
        if self.is_resource_request || !matches!(self.verb.as_str(), "get" | "head") {
            return false;
        }
        let trimmed = self.path.trim_end_matches('/');
        let parts: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
        matches!(
            parts.as_slice(),
            ["api" | "apis" | "version"] | ["api" | "apis", _] | ["apis", _, _] | ["openapi", ..]
        )
    }
}

/// Go's path unescape of one segment, with what the API server would read differently refused.
fn decode_segment(raw: &str) -> Result<String, &'static str> {
    let out = go_unescape(raw, false).ok_or("a `%` that is not followed by two hex digits")?;
    // A raw segment holds no `/`, and a path no `?`: any of these came from an escape.
    if out.iter().any(|b| matches!(b, b'/' | b'?' | b'#')) {
        return Err("a percent-encoded `/`, `?` or `#`");
    }
    if out.iter().any(|b| *b < 0x20 || *b == 0x7f) {
        return Err("a control character");
    }
    let decoded = String::from_utf8(out).map_err(|_| "a segment that is not UTF-8")?;
    if decoded == "." || decoded == ".." {
        return Err("a `.` or `..` segment");
    }
    Ok(decoded)
}

/// Go's `url.PathUnescape` (`plus_is_space` false) or `url.QueryUnescape` (true): `%XX` escapes; `None` for a
/// `%` not followed by two hex digits.
fn go_unescape(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else { return None };
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Escapes what a path segment may not hold as it is (RFC 3986 `pchar` stays).
fn escape_segment(segment: &str, out: &mut String) {
    for byte in segment.bytes() {
        let plain = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte);
        if plain {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// A query as Go's `url.ParseQuery` reads it: the values of each key, in order.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

fn parse_query(query: &str) -> Query {
    let mut pairs = Vec::new();
    for pair in query.split('&') {
        if pair.contains(';') || pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(key), Some(value)) = (query_unescape(key), query_unescape(value)) {
            pairs.push((key, value));
        }
    }
    Query(pairs)
}

/// Go's `url.QueryUnescape`. Bytes that are not UTF-8 are kept as U+FFFD (which is how the API server's JSON
/// writes them too).
fn query_unescape(text: &str) -> Option<String> {
    go_unescape(text, true).map(|out| String::from_utf8_lossy(&out).into_owned())
}

/// The list options the API server decodes (metainternalversion.ListOptions), as far as they decide the verb
/// and the name.
struct ListOptions {
    watch: bool,
    name: Option<String>,
}

impl Query {
    fn first(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The options, or `None` when the API server would fail to decode them.
    fn list_options(&self) -> Option<ListOptions> {
        for key in ["timeoutSeconds", "limit"] {
            if let Some(value) = self.first(key) {
                go_parse_int(value)?;
            }
        }
        if let Some(selector) = self.first("labelSelector") {
            labels::parse(selector).ok()?;
        }
        let name = match self.first("fieldSelector") {
            Some(selector) => fields::exact_match(selector, "metadata.name")?,
            None => None,
        };
        // `Convert_Slice_string_To_bool`: false for `0` and for `false` in any case (Unicode folding).
        let watch = self.first("watch").is_some_and(|v| v != "0" && !equal_fold_false(v));
        Some(ListOptions { watch, name })
    }
}

/// Go's `strings.EqualFold(value, "false")`: `ſ` (U+017F) folds to `s`.
fn equal_fold_false(value: &str) -> bool {
    let mut chars = value.chars();
    let mut next = || chars.next().map(|c| if c == '\u{17f}' { 's' } else { c.to_ascii_lowercase() });
    let folded: [Option<char>; 6] = [next(), next(), next(), next(), next(), next()];
    folded == [Some('f'), Some('a'), Some('l'), Some('s'), Some('e'), None]
}

/// Go's `strconv.ParseInt(value, 10, 64)`.
fn go_parse_int(value: &str) -> Option<i64> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// `IsPathSegmentName`: not `.` or `..`, no `/` or `%`.
fn is_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains(['/', '%'])
}

/// `fields.ParseSelector` and `RequiresExactMatch`, of k8s.io/apimachinery/pkg/fields.
mod fields {
    /// The value `field` must equal (`Some(None)` when no term says), or `None` when the selector does not parse.
    pub(super) fn exact_match(selector: &str, field: &str) -> Option<Option<String>> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut found = None;
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let (lhs, op, rhs) = split_term(term)?;
            let value = unescape(rhs)?;
            if found.is_none() && op != "!=" && lhs == field {
                found = Some(value);
            }
        }
        Some(found)
    }

    fn split_terms(selector: &str) -> Vec<&str> {
        if selector.is_empty() {
            return Vec::new();
        }
        let (mut terms, mut start, mut in_slash) = (Vec::new(), 0, false);
        for (i, c) in selector.char_indices() {
            if in_slash {
                in_slash = false;
            } else if c == '\\' {
                in_slash = true;
            } else if c == ',' {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
        }
        terms.push(&selector[start..]);
        terms
    }

    fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
        for i in 0..term.len() {
            for op in ["!=", "==", "="] {
                if term.as_bytes()[i..].starts_with(op.as_bytes()) {
                    return Some((&term[..i], op, &term[i + op.len()..]));
                }
            }
        }
        None
    }

    fn unescape(value: &str) -> Option<String> {
        if !value.contains(['\\', ',', '=']) {
            return Some(value.to_owned());
        }
        let (mut out, mut in_slash) = (String::with_capacity(value.len()), false);
        for c in value.chars() {
            if in_slash {
                if !matches!(c, '\\' | ',' | '=') {
                    return None;
                }
                out.push(c);
                in_slash = false;
                continue;
            }
            match c {
                '\\' => in_slash = true,
                ',' | '=' => return None,
                c => out.push(c),
            }
        }
        (!in_slash).then_some(out)
    }
}

/// `labels.Parse` of k8s.io/apimachinery/pkg/labels: its lexer, parser and requirement checks, for whether a
/// selector parses.
mod labels {
    use std::collections::BTreeSet;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Token {
        Error,
        End,
        ClosedPar,
        Comma,
        DoesNotExist,
        DoubleEquals,
        Equals,
        GreaterThan,
        Identifier,
        In,
        LessThan,
        NotEquals,
        NotIn,
        OpenPar,
    }

    fn keyword(text: &[u8]) -> Option<Token> {
        Some(match text {
            b")" => Token::ClosedPar,
            b"," => Token::Comma,
            b"!" => Token::DoesNotExist,
            b"==" => Token::DoubleEquals,
            b"=" => Token::Equals,
            b">" => Token::GreaterThan,
            b"in" => Token::In,
            b"<" => Token::LessThan,
            b"!=" => Token::NotEquals,
            b"notin" => Token::NotIn,
            b"(" => Token::OpenPar,
            _ => return None,
        })
    }

    fn is_whitespace(b: u8) -> bool {
        matches!(b, b' ' | b'\t' | b'\r' | b'\n')
    }

    fn is_special(b: u8) -> bool {
        matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
    }

    struct Lexer<'a> {
        s: &'a [u8],
        pos: usize,
    }

    impl Lexer<'_> {
        /// The next byte, 0 at the end (a NUL byte reads as 0 too, as in Go).
        fn read(&mut self) -> u8 {
            match self.s.get(self.pos) {
                Some(b) => {
                    self.pos += 1;
                    *b
                }
                None => 0,
            }
        }

        fn unread(&mut self) {
            self.pos -= 1;
        }

        fn lex(&mut self) -> (Token, Vec<u8>) {
            let mut ch = self.read();
            while is_whitespace(ch) {
                ch = self.read();
            }
            if ch == 0 {
                return (Token::End, Vec::new());
            }
            self.unread();
            if is_special(ch) { self.special() } else { self.identifier() }
        }

        fn identifier(&mut self) -> (Token, Vec<u8>) {
            let mut buffer = Vec::new();
            loop {
                let ch = self.read();
                if ch == 0 {
                    break;
                }
                if is_special(ch) || is_whitespace(ch) {
                    self.unread();
                    break;
                }
                buffer.push(ch);
            }
            (keyword(&buffer).unwrap_or(Token::Identifier), buffer)
        }

        fn special(&mut self) -> (Token, Vec<u8>) {
            let mut buffer = Vec::new();
            let mut last: Option<(Token, Vec<u8>)> = None;
            loop {
                let ch = self.read();
                if ch == 0 {
                    break;
                }
                if !is_special(ch) {
                    self.unread();
                    break;
                }
                buffer.push(ch);
                if let Some(token) = keyword(&buffer) {
                    last = Some((token, buffer.clone()));
                } else if last.is_some() {
                    self.unread();
                    break;
                }
            }
            last.unwrap_or((Token::Error, Vec::new()))
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Operator {
        Exists,
        DoesNotExist,
        In,
        NotIn,
        Equals,
        GreaterThan,
    }

    struct Parser {
        items: Vec<(Token, Vec<u8>)>,
        position: usize,
    }

    impl Parser {
        /// In a values context, `in` and `notin` are identifiers.
        fn as_value(token: Token) -> Token {
            if matches!(token, Token::In | Token::NotIn) { Token::Identifier } else { token }
        }

        fn lookahead(&self, values: bool) -> Token {
            let token = self.items[self.position].0;
            if values { Self::as_value(token) } else { token }
        }

        fn consume(&mut self, values: bool) -> (Token, Vec<u8>) {
            self.position += 1;
            let (token, literal) = self.items[self.position - 1].clone();
            (if values { Self::as_value(token) } else { token }, literal)
        }

        fn parse(&mut self) -> Result<(), ()> {
            loop {
                match self.lookahead(true) {
                    Token::Identifier | Token::DoesNotExist => {
                        self.requirement()?;
                        match self.consume(true).0 {
                            Token::End => return Ok(()),
                            Token::Comma => {
                                if !matches!(self.lookahead(true), Token::Identifier | Token::DoesNotExist) {
                                    return Err(());
                                }
                            }
                            _ => return Err(()),
                        }
                    }
                    Token::End => return Ok(()),
                    _ => return Err(()),
                }
            }
        }

        fn requirement(&mut self) -> Result<(), ()> {
            let mut operator = None;
            let (mut token, mut key) = self.consume(true);
            if token == Token::DoesNotExist {
                operator = Some(Operator::DoesNotExist);
                (token, key) = self.consume(true);
            }
            if token != Token::Identifier || !is_label_key(&key) {
                return Err(());
            }
            if matches!(self.lookahead(true), Token::End | Token::Comma) && operator.is_none() {
                operator = Some(Operator::Exists);
            }
            if operator.is_some() {
                return Ok(());
            }
            let operator = match self.consume(false).0 {
                Token::In => Operator::In,
                Token::NotIn => Operator::NotIn,
                Token::Equals | Token::DoubleEquals | Token::NotEquals => Operator::Equals,
                Token::GreaterThan | Token::LessThan => Operator::GreaterThan,
                _ => return Err(()),
            };
            let values = match operator {
                Operator::In | Operator::NotIn => self.values()?,
                _ => self.exact_value()?,
            };
            if operator == Operator::GreaterThan && !values.iter().all(|v| super::go_parse_int(v).is_some()) {
                return Err(());
            }
            if values.iter().all(|v| is_label_value(v.as_bytes())) { Ok(()) } else { Err(()) }
        }

        fn values(&mut self) -> Result<BTreeSet<String>, ()> {
            if self.consume(true).0 != Token::OpenPar {
                return Err(());
            }
            match self.lookahead(true) {
                Token::Identifier | Token::Comma => {
                    let set = self.identifiers()?;
                    if self.consume(true).0 != Token::ClosedPar {
                        return Err(());
                    }
                    Ok(set)
                }
                Token::ClosedPar => {
                    self.consume(true);
                    Ok(BTreeSet::from([String::new()]))
                }
                _ => Err(()),
            }
        }

        fn identifiers(&mut self) -> Result<BTreeSet<String>, ()> {
            let mut set = BTreeSet::new();
            loop {
                let (token, literal) = self.consume(true);
                match token {
                    Token::Identifier => {
                        set.insert(String::from_utf8_lossy(&literal).into_owned());
                        match self.lookahead(true) {
                            Token::Comma => {}
                            Token::ClosedPar => return Ok(set),
                            _ => return Err(()),
                        }
                    }
                    Token::Comma => {
                        if set.is_empty() {
                            set.insert(String::new());
                        }
                        match self.lookahead(true) {
                            Token::ClosedPar => {
                                set.insert(String::new());
                                return Ok(set);
                            }
                            Token::Comma => {
                                set.insert(String::new());
                            }
                            _ => {}
                        }
                    }
                    _ => return Err(()),
                }
            }
        }

        fn exact_value(&mut self) -> Result<BTreeSet<String>, ()> {
            if matches!(self.lookahead(true), Token::End | Token::Comma) {
                return Ok(BTreeSet::from([String::new()]));
            }
            match self.consume(true) {
                (Token::Identifier, literal) => Ok(BTreeSet::from([String::from_utf8_lossy(&literal).into_owned()])),
                _ => Err(()),
            }
        }
    }

    /// Whether `selector` parses as a label selector.
    pub(super) fn parse(selector: &str) -> Result<(), ()> {
        let mut lexer = Lexer { s: selector.as_bytes(), pos: 0 };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let end = item.0 == Token::End;
            items.push(item);
            if end {
                break;
            }
        }
        Parser { items, position: 0 }.parse()
    }

    /// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 bytes (empty allowed when `empty_ok`).
    fn is_label_name(name: &[u8], empty_ok: bool) -> bool {
        if name.is_empty() {
            return empty_ok;
        }
        name.len() <= 63
            && name[0].is_ascii_alphanumeric()
            && name[name.len() - 1].is_ascii_alphanumeric()
            && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    fn is_label_value(value: &[u8]) -> bool {
        is_label_name(value, true)
    }

    /// A DNS-1123 subdomain: labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?` joined by `.`, at most 253 bytes.
    fn is_dns1123_subdomain(value: &[u8]) -> bool {
        value.len() <= 253
            && value.split(|b| *b == b'.').all(|label| {
                !label.is_empty()
                    && label.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                    && label[0] != b'-'
                    && label[label.len() - 1] != b'-'
            })
    }

    /// `IsLabelKey`: `[prefix/]name`.
    fn is_label_key(key: &[u8]) -> bool {
        let parts: Vec<&[u8]> = key.split(|b| *b == b'/').collect();
        match parts.as_slice() {
            [name] => is_label_name(name, false),
            [prefix, name] => !prefix.is_empty() && is_dns1123_subdomain(prefix) && is_label_name(name, false),
            _ => false,
        }
    }

    #[cfg(test)]
    #[test]
    fn selectors_parse_as_the_api_server_parses_them() {
        for good in [
            "",
            "app",
            "!app",
            "app=web",
            "app==web",
            "app!=web",
            "app in (a,b)",
            "app notin (a)",
            "app in ()",
            "app in (,a)",
            "tier in (in, notin)",
            "example.com/app=web, x",
            "a=",
            "a>5",
            "a<10",
            "  a  =  b  ",
        ] {
            assert!(parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "=",
            "app=web,",
            "app in a",
            "app in (a",
            "-app",
            "app=-x",
            "a>b",
            "a>-5",
            "Example.com/app",
            "a/b/c",
            "app=web=x",
            "!app=web",
            "a b",
            ",a",
            "a=(",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse("app=").is_ok(), "an empty value is a value");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(method: Method, target: &str) -> Result<RequestInfo, String> {
        RequestInfo::parse(&method, target).map(|r| r.info).map_err(|e| e.to_string())
    }

    fn short(i: &RequestInfo) -> String {
        format!(
            "{} {}/{} {}/{}/{}/{}",
            i.verb, i.api_group, i.api_version, i.namespace, i.resource, i.subresource, i.name
        )
    }

    #[test]
    fn resource_requests_are_read_as_requestinfo_reads_them() {
        let cases = [
            (Method::GET, "/api/v1/pods", "list /v1 /pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?watch=1", "watch /v1 t/pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?watch=yes", "watch /v1 t/pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?watch=FALSE", "list /v1 t/pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?watch=fal%C5%BFe", "list /v1 t/pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?watch=fal%C5%BFe&limit=x", "watch /v1 t/pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?watch=0&watch=1", "list /v1 t/pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?w%61tch=true", "watch /v1 t/pods//"),
            (Method::GET, "/api/v1/namespaces/t/pods?watch=true;x=1", "list /v1 t/pods//"),
            (Method::GET, "/api/v1/watch/namespaces/t/pods/p", "watch /v1 t/pods//p"),
            (Method::GET, "/api/v1/namespaces/t/pods/p/log", "get /v1 t/pods/log/p"),
            (Method::POST, "/api/v1/namespaces/t/pods/p/exec?command=sh", "create /v1 t/pods/exec/p"),
            (Method::PATCH, "/apis/apps/v1/namespaces/t/deployments/d/scale", "patch apps/v1 t/deployments/scale/d"),
            (Method::DELETE, "/api/v1/namespaces/t/secrets", "deletecollection /v1 t/secrets//"),
            (Method::GET, "/api/v1/namespaces/t", "get /v1 t/namespaces//t"),
            (Method::PUT, "/api/v1/namespaces/t/finalize", "update /v1 t/namespaces/finalize/t"),
            (Method::GET, "/api/v1/namespaces/t/pods?fieldSelector=metadata.name%3Dweb", "list /v1 t/pods//web"),
            (
                Method::GET,
                "/api/v1/namespaces/t/pods?fieldSelector=metadata.name%3Dweb&labelSelector=%3D",
                "list /v1 t/pods//",
            ),
            (Method::GET, "/api/v1/proxy/namespaces/t/pods/p/x/y", "proxy /v1 t/pods//p"),
            (Method::OPTIONS, "/api/v1/pods", " /v1 /pods//"),
            (Method::GET, "/api/v1/namespaces/t/p%6Fds", "list /v1 t/pods//"),
            (Method::GET, "/%61pi/v1/namespaces/team-b/secrets", "list /v1 team-b/secrets//"),
            (Method::GET, "/api/v1/namespaces/a%20b/pods/", "list /v1 a b/pods//"),
        ];
        for (method, target, expected) in cases {
            assert_eq!(short(&info(method.clone(), target).unwrap()), expected, "{method} {target}");
        }
        let discovery = info(Method::GET, "/apis/apps/v1").unwrap();
        assert!(!discovery.is_resource_request && discovery.is_discovery());
        assert!(info(Method::GET, "/openapi/v2").unwrap().is_discovery());
        assert!(!info(Method::GET, "/logs/").unwrap().is_discovery());
        assert!(!info(Method::GET, "/healthz").unwrap().is_discovery());
        assert!(!info(Method::POST, "/api").unwrap().is_discovery());
    }

    #[test]
    fn the_canonical_path_goes_upstream_and_ambiguous_ones_are_refused() {
        let sent = |target: &str| RequestInfo::parse(&Method::GET, target).map(|r| r.uri.to_string());
        assert_eq!(sent("/%61pi/v1/namespaces/a%20b/pods?watch=1").unwrap(), "/api/v1/namespaces/a%20b/pods?watch=1");
        assert_eq!(sent("/api/v1/namespaces/x..y/pods").unwrap(), "/api/v1/namespaces/x..y/pods");
        assert_eq!(sent("/version").unwrap(), "/version");
        assert_eq!(sent("/").unwrap(), "/");
        for bad in [
            "/api/v1/../../admin",
            "/api/v1/%2e%2e/secrets",
            "/api/v1/.%2E/secrets",
            "/api/v1/./pods",
            "/api/v1/namespaces%2Fkube-system/secrets",
            "/api/v1/pods%3Fwatch=1",
            "/api/v1/pods%23fragment",
            "/api//v1/pods",
            "/api/v1/pods%zz",
            "/api/v1/pods%0a",
            "/api/v1/pods%ff",
            "/api/v1/watch",
        ] {
            assert!(sent(bad).is_err(), "{bad}");
        }
    }
}
