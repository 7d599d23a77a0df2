//! A located list that is fetched again after an interval, keeping the last good one when a refresh fails:
//! what the gke and catalog methods share.

use std::future::Future;
use std::time::{Duration, Instant};

use kubeauth_core::ClusterDetails;

use crate::LocatorError;

/// The last fetched list and when it was fetched.
#[derive(Default)]
pub(crate) struct RefreshedList {
    last: tokio::sync::Mutex<Option<(Instant, crate::Located)>>,
}

impl RefreshedList {
    /// The list: the stored one while younger than `interval`, else `fetch`'s; when that fails, the stored one
    /// (the failure logged as `what` not refreshed), or — with none stored — the failure, as method `source`'s.
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
        let mut last = self.last.lock().await;
        if let Some((at, clusters)) = last.as_ref()
            && at.elapsed() < interval
        {
            return Ok(clusters.clone());
        }
        match fetch().await {
            Ok(clusters) => {
                let clusters: crate::Located = clusters.into();
                *last = Some((Instant::now(), clusters.clone()));
                Ok(clusters)
            }
            Err(message) => match last.as_ref() {
                Some((_, clusters)) => {
                    tracing::warn!(locator = %source, error = %message, "{what} not refreshed; keeping the last good one");
                    Ok(clusters.clone())
                }
                None => Err(LocatorError::Locator { method: source.to_owned(), source: message.into() }),
            },
        }
    }
}
