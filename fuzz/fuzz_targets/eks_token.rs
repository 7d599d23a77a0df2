//! The EKS token checks of the test environment's verifier (aws-iam-authenticator's rules and SigV4).
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use kubeauth_testkit::aws::EksTokenVerifier;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let verifier = EksTokenVerifier {
        cluster_id: "fuzz".into(),
        sts_addr: "127.0.0.1:9".into(),
        secrets: HashMap::from([("AKIAFUZZ".to_owned(), "secret".to_owned())]),
        users: HashMap::new(),
    };
    let _ = verifier.check(token, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    // The same with the prefix, so that the base64 and URL checks are reached more often.
    let _ = verifier.check(&format!("k8s-aws-v1.{token}"), UNIX_EPOCH + Duration::from_secs(1_800_000_000));
});
