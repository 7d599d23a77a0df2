use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::{Credential, Error};

/// A cache for one credential that refreshes it ahead of its expiry, fetches it once however many callers ask at
/// the same time, and keeps serving the last good credential while it is still valid if a refresh fails.
///
/// The rules, in order, for [`get`](Self::get):
/// 1. a cached credential that is valid for longer than the refresh margin is returned as it is;
/// 2. one that is still valid but inside the margin is refreshed by one caller, while every other caller gets
///    the cached one at once; if the refresh fails, the cached one is returned (and the failure logged);
/// 3. with nothing valid cached, the first caller fetches and every concurrent caller waits for that one fetch.
///
/// A credential without an expiry is reused for the `unexpiring_ttl` given at construction (zero by default:
/// the provider is asked every time, which suits providers that cache themselves, such as a token file watcher).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::{Duration, SystemTime};
/// use kubeauth_core::{Credential, CredentialCache};
///
/// let cache = CredentialCache::new(Duration::from_secs(60));
/// let hour = SystemTime::now() + Duration::from_secs(3600);
/// let first = cache.get(|| async { Ok(Credential::bearer_until("t1", hour)) }).await.unwrap();
/// // Valid for an hour: the second call does not fetch.
/// let second = cache.get(|| async { unreachable!() }).await.unwrap();
/// assert_eq!(first.generation, second.generation);
/// # });
/// ```
pub struct CredentialCache {
    state: RwLock<State>,
    refresh: tokio::sync::Mutex<()>,
    refresh_margin: Duration,
    unexpiring_ttl: Duration,
}

#[derive(Default)]
struct State {
    entry: Option<Entry>,
    generation: u64,
}

#[derive(Clone)]
struct Entry {
    credential: Credential,
    fetched: Instant,
    generation: u64,
}

/// A credential from a [`CredentialCache`], with the generation that identifies this fetch of it.
#[derive(Clone, Debug)]
pub struct CachedCredential {
    /// The credential.
    pub credential: Credential,
    /// Increases with every fetch; pass it to [`CredentialCache::force_refresh`] after the server refused it.
    pub generation: u64,
}

impl CredentialCache {
    /// A cache that refreshes `refresh_margin` before a credential expires.
    pub fn new(refresh_margin: Duration) -> Self {
        Self {
            state: RwLock::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            refresh_margin,
            unexpiring_ttl: Duration::ZERO,
        }
    }

    /// Reuse credentials that carry no expiry for `ttl` (default zero: ask the provider every time).
    pub fn with_unexpiring_ttl(mut self, ttl: Duration) -> Self {
        self.unexpiring_ttl = ttl;
        self
    }

    /// The refresh margin.
    pub fn refresh_margin(&self) -> Duration {
        self.refresh_margin
    }

    /// The cached credential, fetching a new one with `fetch` when the rules above say so.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<CachedCredential, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credential, Error>>,
    {
        let (seen_generation, stale_but_valid) = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match &state.entry {
                Some(entry) if self.is_fresh(entry) => return Ok(entry.into()),
                Some(entry) if self.is_valid(entry) => (state.generation, Some(entry.clone())),
                _ => (state.generation, None),
            }
        };

        if let Some(old) = stale_but_valid {
            // Inside the margin: one caller refreshes, the others keep using the valid credential meanwhile.
            let Ok(_guard) = self.refresh.try_lock() else { return Ok((&old).into()) };
            if let Some(current) = self.changed_since(seen_generation, true) {
                return Ok(current);
            }
            return match fetch().await {
                Ok(credential) => Ok(self.store(credential)),
                Err(error) => {
                    tracing::warn!(error = %crate::report(&error), "credential refresh failed; keeping the current credential while it is valid");
                    Ok((&old).into())
                }
            };
        }

        let _guard = self.refresh.lock().await;
        if let Some(current) = self.changed_since(seen_generation, true) {
            return Ok(current);
        }
        match fetch().await {
            Ok(credential) => Ok(self.store(credential)),
            Err(error) => {
                let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
                match &state.entry {
                    Some(entry) if entry.credential.expires_at().is_some() && self.is_valid(entry) => {
                        tracing::warn!(error = %crate::report(&error), "credential refresh failed; keeping the current credential while it is valid");
                        Ok(entry.into())
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// Fetches a new credential because the server refused the one of `refused_generation`. If another caller
    /// already replaced it, that newer one is returned without a fetch.
    pub async fn force_refresh<F, Fut>(&self, refused_generation: u64, fetch: F) -> Result<CachedCredential, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credential, Error>>,
    {
        let _guard = self.refresh.lock().await;
        if let Some(current) = self.changed_since(refused_generation, false) {
            return Ok(current);
        }
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            state.entry = None;
        }
        let credential = fetch().await?;
        Ok(self.store(credential))
    }

    /// Whether a credential valid at `now` is cached (one without an expiry is, within the unexpiring TTL).
    fn holds_valid_at(&self, now: SystemTime) -> bool {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.entry.as_ref().is_some_and(|entry| match entry.credential.expires_at() {
            Some(at) => at > now,
            None => entry.fetched.elapsed() < self.unexpiring_ttl,
        })
    }

    /// Forgets the cached credential.
    pub fn clear(&self) {
        self.state.write().unwrap_or_else(PoisonError::into_inner).entry = None;
    }

    /// The cached credential if another caller fetched it after `generation` (or, with `or_fresh`, if it is
    /// fresh anyway).
    fn changed_since(&self, generation: u64, or_fresh: bool) -> Option<CachedCredential> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match &state.entry {
            Some(entry) if state.generation != generation && self.is_valid(entry) => Some(entry.into()),
            Some(entry) if or_fresh && self.is_fresh(entry) => Some(entry.into()),
            _ => None,
        }
    }

    fn store(&self, credential: Credential) -> CachedCredential {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.generation += 1;
        let entry = Entry { credential, fetched: Instant::now(), generation: state.generation };
        let out = (&entry).into();
        state.entry = Some(entry);
        out
    }

    fn is_fresh(&self, entry: &Entry) -> bool {
        match entry.credential.expires_at() {
            Some(_) => entry.credential.is_fresh_at(SystemTime::now(), self.refresh_margin),
            None => entry.fetched.elapsed() < self.unexpiring_ttl,
        }
    }

    fn is_valid(&self, entry: &Entry) -> bool {
        match entry.credential.expires_at() {
            Some(_) => entry.credential.is_valid_at(SystemTime::now()),
            // An unexpiring credential just fetched by another caller is valid for the callers that waited on it.
            None => true,
        }
    }
}

impl From<&Entry> for CachedCredential {
    fn from(entry: &Entry) -> Self {
        Self { credential: entry.credential.clone(), generation: entry.generation }
    }
}

impl std::fmt::Debug for CredentialCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CredentialCache")
            .field("refresh_margin", &self.refresh_margin)
            .field("generation", &state.generation)
            .field("expires_at", &state.entry.as_ref().and_then(|e| e.credential.expires_at()))
            .finish_non_exhaustive()
    }
}

/// One [`CredentialCache`] per key, e.g. per (cluster, region, role): the shape every provider cache takes.
pub struct KeyedCredentialCache<K> {
    caches: Mutex<HashMap<K, Arc<CredentialCache>>>,
    refresh_margin: Duration,
    unexpiring_ttl: Duration,
}

impl<K: Eq + Hash> KeyedCredentialCache<K> {
    /// Caches that refresh `refresh_margin` before expiry.
    pub fn new(refresh_margin: Duration) -> Self {
        Self { caches: Mutex::new(HashMap::new()), refresh_margin, unexpiring_ttl: Duration::ZERO }
    }

    /// Caches that reuse a credential without an expiry for `ttl` (see [`CredentialCache::with_unexpiring_ttl`]).
    pub fn with_unexpiring_ttl(mut self, ttl: Duration) -> Self {
        self.unexpiring_ttl = ttl;
        self
    }

    /// The cache for `key`, created empty on first use.
    pub fn cache(&self, key: K) -> Arc<CredentialCache> {
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches
            .entry(key)
            .or_insert_with(|| {
                Arc::new(CredentialCache::new(self.refresh_margin).with_unexpiring_ttl(self.unexpiring_ttl))
            })
            .clone()
    }

    /// Forgets the caches that hold no credential valid now and that no caller holds: keys that come and go
    /// (users' tokens) do not pile up.
    pub fn retain_valid(&self) {
        let now = SystemTime::now();
        let mut caches = self.caches.lock().unwrap_or_else(PoisonError::into_inner);
        caches.retain(|_, cache| Arc::strong_count(cache) > 1 || cache.holds_valid_at(now));
    }

    /// How many keys have a cache.
    pub fn len(&self) -> usize {
        self.caches.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no key has a cache yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K> std::fmt::Debug for KeyedCredentialCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedCredentialCache").field("refresh_margin", &self.refresh_margin).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret;

    use super::*;

    fn token(c: &CachedCredential) -> String {
        match &c.credential {
            Credential::BearerToken { token, .. } => token.expose_secret().to_owned(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn failing() -> Error {
        Error::Provider { cluster: "c".into(), provider: "test".into(), source: "identity endpoint down".into() }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_thousand_concurrent_callers_on_a_cold_cache_fetch_once() {
        let cache = Arc::new(CredentialCache::new(Duration::from_secs(60)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (cache, fetches, mut released) = (cache.clone(), fetches.clone(), released.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|| async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        // Hold the fetch open until every caller has queued behind it.
                        let _ = released.wait_for(|r| *r).await;
                        Ok(Credential::bearer_until("shared", SystemTime::now() + Duration::from_secs(3600)))
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        release.send_replace(true);
        for task in tasks {
            assert_eq!(token(&task.await.unwrap().unwrap()), "shared");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn single_flight_also_holds_for_credentials_without_expiry() {
        let cache = Arc::new(CredentialCache::new(Duration::from_secs(60)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, fetches, mut released) = (cache.clone(), fetches.clone(), released.clone());
                tokio::spawn(async move {
                    cache
                        .get(|| async move {
                            fetches.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|r| *r).await;
                            Ok(Credential::bearer("no-expiry"))
                        })
                        .await
                })
            })
            .collect();
        tokio::task::yield_now().await;
        release.send_replace(true);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Later calls ask the provider again: the default TTL for unexpiring credentials is zero.
        cache.get(|| async { Ok(Credential::bearer("again")) }).await.unwrap();
        assert_eq!(token(&cache.get(|| async { Ok(Credential::bearer("third")) }).await.unwrap()), "third");
    }

    #[tokio::test]
    async fn refreshes_ahead_of_expiry() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        let soon = SystemTime::now() + Duration::from_secs(30);
        let first = cache.get(|| async move { Ok(Credential::bearer_until("old", soon)) }).await.unwrap();
        // Valid for 30 s more, but inside the 60 s margin: the next call refreshes.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let second = cache.get(|| async move { Ok(Credential::bearer_until("new", later)) }).await.unwrap();
        assert_eq!(token(&first), "old");
        assert_eq!(token(&second), "new");
        assert!(second.generation > first.generation);
        // Now fresh: no fetch.
        let third = cache.get(|| async { Err(failing()) }).await.unwrap();
        assert_eq!(token(&third), "new");
    }

    #[tokio::test]
    async fn keeps_the_last_good_credential_while_it_is_valid() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        let soon = SystemTime::now() + Duration::from_secs(30);
        cache.get(|| async move { Ok(Credential::bearer_until("last-good", soon)) }).await.unwrap();
        let kept = cache.get(|| async { Err(failing()) }).await.unwrap();
        assert_eq!(token(&kept), "last-good");
    }

    #[tokio::test]
    async fn an_expired_credential_is_never_served() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        let past = SystemTime::now() - Duration::from_secs(1);
        cache.get(|| async move { Ok(Credential::bearer_until("expired", past)) }).await.unwrap();
        let err = cache.get(|| async { Err(failing()) }).await.unwrap_err();
        assert!(err.to_string().contains("cluster 'c'"), "{err}");
    }

    #[tokio::test]
    async fn force_refresh_fetches_once_per_refused_generation() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        let hour = SystemTime::now() + Duration::from_secs(3600);
        let first = cache.get(|| async move { Ok(Credential::bearer_until("refused", hour)) }).await.unwrap();
        let second = cache
            .force_refresh(first.generation, || async move { Ok(Credential::bearer_until("new", hour)) })
            .await
            .unwrap();
        assert_eq!(token(&second), "new");
        // A second caller that saw the same refused generation gets the new one without a fetch.
        let third = cache.force_refresh(first.generation, || async { Err(failing()) }).await.unwrap();
        assert_eq!(token(&third), "new");
    }

    #[tokio::test]
    async fn keyed_caches_are_separate() {
        let caches = KeyedCredentialCache::new(Duration::from_secs(60));
        let hour = SystemTime::now() + Duration::from_secs(3600);
        caches.cache(("a", "us-east-1")).get(|| async move { Ok(Credential::bearer_until("a", hour)) }).await.unwrap();
        let b = caches.cache(("b", "us-east-1")).get(|| async move { Ok(Credential::bearer_until("b", hour)) }).await;
        assert_eq!(token(&b.unwrap()), "b");
        assert_eq!(caches.len(), 2);
    }
}
