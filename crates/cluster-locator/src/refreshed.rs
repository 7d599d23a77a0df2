//! A located list that is fetched again after an interval, keeping the last good one when a refresh fails:
//! what the gke and catalog methods share.
//!
//! Only the first fetch is waited for. Once a list is stored, a refresh runs in the request that finds it old
//! while the other requests keep getting the stored list: no request waits on a slow catalog, on name
//! resolution or on the refresh of another.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use kubeauth_core::ClusterDetails;

use crate::LocatorError;

/// The last fetched list and when it was fetched.
#[derive(Default)]
pub(crate) struct RefreshedList {
    last: Mutex<Option<(Instant, crate::Located)>>,
    /// Held by the one request that fetches.
    fetching: tokio::sync::Mutex<()>,
}

impl RefreshedList {
    /// The list: the stored one while younger than `interval`, else `fetch`'s — unless another request is
    /// fetching already, when the stored one is handed out meanwhile. When the fetch fails: the stored one (the
    /// failure logged as `what` not refreshed), or, with none stored, the failure, as method `source`'s.
    pub(crate) async fn get<F, Fut>(
        &self,
        interval: Duration,
        source: &str,
        what: &str,
        fetch: F,
    ) -> Result<crate::Located, LocatorError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<ClusterDetails>, String>>,
    {
        let stored = self.stored();
        if let Some((at, clusters)) = &stored
            && at.elapsed() < interval
        {
            return Ok(clusters.clone());
        }
        let _fetching = match (self.fetching.try_lock(), &stored) {
            (Ok(turn), _) => turn,
            // Another request refreshes: the stored list meanwhile.
            (Err(_), Some((_, clusters))) => return Ok(clusters.clone()),
            // The first list: wait for the request fetching it, then take it if it came.
            (Err(_), None) => {
                let turn = self.fetching.lock().await;
                if let Some((_, clusters)) = self.stored() {
                    return Ok(clusters);
                }
                turn
            }
        };
        // A refresh that ended while this request waited for its turn.
        if let Some((at, clusters)) = self.stored()
            && at.elapsed() < interval
        {
            return Ok(clusters);
        }
        match fetch().await {
            Ok(clusters) => {
                let clusters: crate::Located = clusters.into();
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), clusters.clone()));
                Ok(clusters)
            }
            Err(message) => match self.stored() {
                Some((_, clusters)) => {
                    tracing::warn!(locator = %source, error = %message, "{what} not refreshed; keeping the last good one");
                    Ok(clusters)
                }
                None => Err(LocatorError::Locator { method: source.to_owned(), source: message.into() }),
            },
        }
    }

    fn stored(&self) -> Option<(Instant, crate::Located)> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_slow_refresh_holds_up_no_other_request() {
        let list = Arc::new(RefreshedList::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let first = list
            .get(Duration::ZERO, "catalog #0", "list", || async { Ok(vec![ClusterDetails::new("a", "https://a")]) })
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        // A refresh that takes long, and a request while it runs: the stored list at once.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = tokio::spawn({
            let (list, fetches) = (list.clone(), fetches.clone());
            async move {
                list.get(Duration::ZERO, "catalog #0", "list", || async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    released.await.unwrap();
                    Ok(vec![ClusterDetails::new("a", "https://a"), ClusterDetails::new("b", "https://b")])
                })
                .await
            }
        });
        while fetches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let meanwhile = tokio::time::timeout(
            Duration::from_secs(1),
            list.get(Duration::ZERO, "catalog #0", "list", || async { unreachable!("one fetch at a time") }),
        )
        .await
        .expect("not held up by the refresh")
        .unwrap();
        assert!(Arc::ptr_eq(&meanwhile, &first));
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap().len(), 2);
    }
}
