//! Config text: YAML parsing, `${VAR}`/`$env`/`$file` substitution, and the cluster entries of every locator
//! method (the locators are built, which resolves and validates every value).
#![no_main]

use kubeauth::{AppConfig, CombinedLocator, ResolveContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = AppConfig::from_yaml_str(text, None) else { return };
    // Variables exist for names starting with A; `$file` paths are relative to an empty folder.
    let ctx = ResolveContext::new(|name| name.starts_with('A').then(|| format!("value-of-{name}")))
        .with_base_dir(std::env::temp_dir().join("kubeauth-fuzz-empty"));
    let _ = CombinedLocator::from_config(&config, &ctx);
});
