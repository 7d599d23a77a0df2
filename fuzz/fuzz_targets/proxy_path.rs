//! The proxy's path rule: what part of a request's path reaches the API server.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "/api/kubernetes/proxy";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(uri) = format!("{PREFIX}{text}").parse::<http::Uri>() else { return };
    let Ok(target) = kubeauth_server::upstream_target(&uri) else { return };
    let sent = uri.path_and_query().expect("a path").as_str();
    // What goes upstream is the caller's text after the prefix, byte for byte, and never climbs out of the
    // cluster URL's path.
    assert_eq!(Some(target.to_string().as_str()), sent.strip_prefix(PREFIX));
    let path = target.path();
    assert!(path.starts_with('/'));
    for segment in path.split('/') {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        assert!(decoded != "." && decoded != "..", "{path}");
    }
    let lower = path.to_ascii_lowercase();
    assert!(!lower.contains("%2f") && !lower.contains("%3f") && !lower.contains("%23"), "{path}");
});
