//! Backstage tokens presented to the API (`kubeauth.server.auth.backstage`), against the key sets of a stand-in
//! backend on loopback: whatever the bytes, a token not signed by one of its keys never verifies.
#![no_main]

use std::sync::OnceLock;

use kubeauth::locator::catalog::BackstageBackend;
use kubeauth_server::{BackstageTokenSettings, BackstageTokens};
use kubeauth_testkit::backstage_auth::FakeBackstageAuth;
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static (tokio::runtime::Runtime, FakeBackstageAuth, BackstageTokens) {
    static VERIFIER: OnceLock<(tokio::runtime::Runtime, FakeBackstageAuth, BackstageTokens)> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let backstage = FakeBackstageAuth::start(&["catalog"]);
        let backend = BackstageBackend::new(backstage.url(), None).expect("a backend");
        let mut settings = BackstageTokenSettings::default();
        settings.plugins = vec!["catalog".into()];
        let tokens = BackstageTokens::new(backend, settings);
        (runtime, backstage, tokens)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let (runtime, _backstage, tokens) = verifier();
    if let Ok(caller) = runtime.block_on(tokens.verify(token)) {
        panic!("a token made of fuzz input verified: {caller:?}");
    }
});
