//! `KUBERNETES_EXEC_INFO` as kubectl hands it to `kubeauth token`.
#![no_main]

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/cli/src/exec_credential.rs"]
mod exec_credential;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = exec_credential::parse_exec_info(Some(text), false);
});
