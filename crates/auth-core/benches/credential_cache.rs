//! The cached-credential path: what every request through the credential layer pays once a credential is
//! cached (a read lock and a clone), and the keyed cache's lookup.
#![allow(missing_docs)]

use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use kubeauth_core::{Credential, CredentialCache, KeyedCredentialCache};

fn cached_credential(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let cache = CredentialCache::new(Duration::from_secs(60));
    let fresh = || async { Ok(Credential::bearer_until("token", SystemTime::now() + Duration::from_secs(3600))) };
    runtime.block_on(cache.get(fresh)).expect("first fetch");
    c.bench_function("CredentialCache::get, cached", |b| {
        b.to_async(&runtime).iter(|| async { cache.get(fresh).await.expect("cached") });
    });

    let keyed: KeyedCredentialCache<String> = KeyedCredentialCache::new(Duration::from_secs(60));
    for i in 0..50 {
        runtime.block_on(keyed.cache(format!("cluster-{i}")).get(fresh)).expect("first fetch");
    }
    let key = "cluster-25".to_owned();
    c.bench_function("KeyedCredentialCache::get, cached, 50 keys", |b| {
        b.to_async(&runtime).iter(|| async { keyed.cache(key.clone()).get(fresh).await.expect("cached") });
    });
}

criterion_group!(benches, cached_credential);
criterion_main!(benches);
