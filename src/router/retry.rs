//! One retry policy for the router's call sites: which errors are tried
//! again, how long to pause between attempts, and until when. Routing
//! errors (no leader yet, a stale epoch, a dropped proposal, keys locked
//! by a txn in progress) are retried here; clients never see them.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The pause after a routing error.
pub(super) const BACKOFF: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
pub(super) struct Retry {
    /// `None`: until the step is decided (a txn's commit or rollback).
    deadline: Option<Instant>,
    pause: Duration,
    /// "region busy" is retried too (an admin step waits for a region's
    /// txn locks to go).
    busy: bool,
}

impl Retry {
    /// Until `timeout` from now.
    pub fn within(timeout: Duration) -> Retry {
        Retry::until(Instant::now() + timeout)
    }

    pub fn until(deadline: Instant) -> Retry {
        Retry { deadline: Some(deadline), pause: BACKOFF, busy: false }
    }

    /// For as long as the errors are retryable.
    pub fn forever() -> Retry {
        Retry { deadline: None, pause: BACKOFF, busy: false }
    }

    pub fn pausing(self, pause: Duration) -> Retry {
        Retry { pause, ..self }
    }

    pub fn on_busy(self) -> Retry {
        Retry { busy: true, ..self }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// After an attempt failed with `e`: `Ok` once it is time for the next
    /// attempt; `e` itself if it is final; "request timed out" for a
    /// retryable error past the deadline.
    pub async fn after(&self, e: Error) -> Result<()> {
        let busy = self.busy && matches!(e, Error::RegionBusy { .. });
        if !e.is_retryable() && !busy {
            return Err(e);
        }
        if self.expired() {
            tracing::warn!("giving up after retries: {e}");
            return Err(if e.is_retryable() { Error::Timeout } else { e });
        }
        tokio::time::sleep(self.pause_for(&e)).await;
        Ok(())
    }

    /// Runs `attempt` until it succeeds or fails for good.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        loop {
            match attempt().await {
                Err(e) => self.after(e).await?,
                done => return done,
            }
        }
    }

    fn pause_for(&self, e: &Error) -> Duration {
        match e {
            // Contending txns back off by different amounts, so that one
            // of them wins the next round.
            Error::Locked { .. } | Error::TxnAborted => {
                Duration::from_micros(rand::random_range(200..=self.pause.as_micros().max(200) as u64))
            }
            _ => self.pause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_final_error_is_returned_at_once() {
        let r = Retry::forever().after(Error::LeaseNotFound).await;
        assert!(matches!(r, Err(Error::LeaseNotFound)));
    }

    #[tokio::test]
    async fn a_retryable_error_past_the_deadline_times_out() {
        let r = Retry::until(Instant::now()).after(Error::NotLeader { region: 1 }).await;
        assert!(matches!(r, Err(Error::Timeout)));
    }

    #[tokio::test]
    async fn busy_is_retried_only_when_asked_and_returned_as_is_past_the_deadline() {
        let busy = || Error::RegionBusy { region: 1 };
        assert!(matches!(Retry::forever().after(busy()).await, Err(Error::RegionBusy { .. })));
        assert!(Retry::forever().on_busy().after(busy()).await.is_ok());
        let late = Retry::until(Instant::now()).on_busy().after(busy()).await;
        assert!(matches!(late, Err(Error::RegionBusy { .. })));
    }

    #[tokio::test]
    async fn run_retries_until_the_attempt_succeeds() {
        let mut left = 3;
        let r = Retry::within(Duration::from_secs(5))
            .run(|| {
                left -= 1;
                let result = if left > 0 { Err(Error::NotLeader { region: 1 }) } else { Ok(left) };
                async move { result }
            })
            .await;
        assert_eq!(r.unwrap(), 0);
    }
}
