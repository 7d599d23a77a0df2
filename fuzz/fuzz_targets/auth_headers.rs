//! The Backstage auth headers of the proxy (`Backstage-Kubernetes-Authorization-<provider>[-<sub>]`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let mut full = b"backstage-kubernetes-authorization-".to_vec();
        full.extend_from_slice(name);
        for candidate in [name, full.as_slice()] {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(candidate), http::HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
    }
    let auth = kubeauth_server::request_auth_from_headers(&headers);
    // Whatever the headers, the result serialises as Backstage's KubernetesRequestAuth.
    let _ = serde_json::to_string(&auth).expect("serialisable");
});
