//! The catalog locator's entity → cluster mapping (every URL allow-listed, so that no name is resolved).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use kubeauth::locator::catalog::{CatalogClient, CatalogLocator, CatalogRules};
use libfuzzer_sys::fuzz_target;

fn locator() -> &'static (tokio::runtime::Runtime, CatalogLocator) {
    static LOCATOR: OnceLock<(tokio::runtime::Runtime, CatalogLocator)> = OnceLock::new();
    LOCATOR.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = CatalogClient::new("http://127.0.0.1:9", None, None).expect("client");
        let mut rules = CatalogRules::default();
        rules.allowed_urls = vec!["*".into()];
        (runtime, CatalogLocator::new(client, rules, Duration::from_secs(60), "fuzz"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(entity) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let (runtime, locator) = locator();
    let _ = runtime.block_on(locator.cluster(&entity));
});
