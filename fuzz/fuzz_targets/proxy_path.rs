//! The proxy's path rule: what a request means to the API server, and what reaches it.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PREFIX: &str = "/api/kubernetes/proxy";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(uri) = format!("{PREFIX}{text}").parse::<http::Uri>() else { return };
    for method in [http::Method::GET, http::Method::POST, http::Method::DELETE] {
        let Ok(target) = kubeauth_server::upstream_target(&method, &uri) else { return };
        let path = target.uri.path();
        assert!(path.starts_with('/'));
        // The canonical form never climbs out of the cluster URL's path, and means the same when read again:
        // what the API server reads of what is sent is what the guard decided on.
        for segment in path.split('/') {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            assert!(decoded != "." && decoded != "..", "{path}");
        }
        let lower = path.to_ascii_lowercase();
        assert!(!lower.contains("%2f") && !lower.contains("%3f") && !lower.contains("%23"), "{path}");
        let again = kubeauth_server::RequestInfo::parse(&method, &target.uri.to_string()).expect("canonical form parses");
        assert_eq!(again.info, target.info, "{uri}");
        assert_eq!(again.uri, target.uri, "{uri}");
    }
});
