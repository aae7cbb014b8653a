//! Auto-compaction as etcd does it (`--auto-compaction-mode`,
//! `--auto-compaction-retention`; docs/ops.md), run by the leader store:
//! - revision mode, retention N: every 5 minutes, compact at the newest
//!   revision minus N;
//! - periodic mode, retention T (a duration, or a number of hours): the
//!   revision is sampled every min(T, 1 h) / 10, and every min(T, 1 h)
//!   the history is compacted at the revision sampled T ago, once a whole
//!   T has been sampled.
//!
//! A store that stops being the leader store forgets its samples; the new
//! one starts its own window.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::error::Error;
use crate::proto::etcdserverpb::CompactionRequest;

use super::Router;

/// How often revision mode compacts (etcd's).
const REVISION_MODE_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Periodic(Duration),
    Revision(u64),
}

/// The policy etcd's two flags give (`None`: off, a retention of 0), or
/// etcd's complaint about them.
pub fn parse(mode: &str, retention: &str) -> Result<Option<AutoCompaction>, String> {
    let retention = retention.trim();
    match mode {
        "periodic" => {
            let period = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => crate::bench::parse_duration(retention)
                    .map_err(|_| format!("invalid auto-compaction-retention {retention:?}"))?,
            };
            Ok((!period.is_zero()).then_some(AutoCompaction::Periodic(period)))
        }
        "revision" => {
            let n = retention.parse::<u64>().map_err(|_| format!("invalid auto-compaction-retention {retention:?}"))?;
            Ok((n > 0).then_some(AutoCompaction::Revision(n)))
        }
        other => Err(format!("unknown auto-compaction-mode {other:?}")),
    }
}

/// What the compactor decides at each of its ticks (pure; see the module
/// comment).
#[derive(Debug)]
pub struct Schedule {
    policy: AutoCompaction,
    /// Periodic mode: the revisions sampled, oldest first.
    samples: VecDeque<u64>,
    /// Ticks since the last compaction.
    ticks: u64,
}

impl Schedule {
    pub fn new(policy: AutoCompaction) -> Schedule {
        Schedule { policy, samples: VecDeque::new(), ticks: 0 }
    }

    /// The time between ticks.
    pub fn tick(&self) -> Duration {
        match self.policy {
            AutoCompaction::Revision(_) => REVISION_MODE_EVERY,
            AutoCompaction::Periodic(period) => period.min(Duration::from_secs(3600)) / 10,
        }
    }

    /// At a tick, with `newest` the newest revision: the revision to
    /// compact at, if it is time.
    pub fn on_tick(&mut self, newest: u64) -> Option<u64> {
        match self.policy {
            AutoCompaction::Revision(keep) => newest.checked_sub(keep).filter(|r| *r > 0),
            AutoCompaction::Periodic(period) => {
                // Samples one tick apart spanning the retention, both ends.
                let window = (period.as_nanos() / self.tick().as_nanos().max(1)) as usize + 1;
                self.samples.push_back(newest);
                if self.samples.len() > window {
                    self.samples.pop_front();
                }
                self.ticks += 1;
                if self.samples.len() < window || self.ticks < 10 {
                    return None;
                }
                self.ticks = 0;
                self.samples.front().copied().filter(|r| *r > 0)
            }
        }
    }

    /// This store stopped being the leader store: its samples are not the
    /// cluster's any more.
    pub fn reset(&mut self) {
        self.samples.clear();
        self.ticks = 0;
    }
}

impl Router {
    /// Runs `policy` while this store is the leader store.
    pub fn start_auto_compaction(self: &Arc<Self>, policy: AutoCompaction) -> tokio::task::JoinHandle<()> {
        let router: Weak<Router> = Arc::downgrade(self);
        let mut schedule = Schedule::new(policy);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(schedule.tick()).await;
                let Some(router) = router.upgrade() else { return };
                if !router.store.is_serving() {
                    schedule.reset();
                    continue;
                }
                let Some(revision) = schedule.on_tick(router.store.sequencer.last()) else { continue };
                if revision as i64 <= router.store.sequencer.compacted() {
                    continue;
                }
                match router.compact(&CompactionRequest { revision: revision as i64, physical: false }).await {
                    Ok(_) => tracing::info!(revision, ?policy, "auto-compacted"),
                    Err(Error::Compacted) => {}
                    Err(e) => tracing::warn!(revision, "auto-compaction: {e}"),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_etcd_reads_them() {
        assert_eq!(parse("periodic", "1"), Ok(Some(AutoCompaction::Periodic(Duration::from_secs(3600)))));
        assert_eq!(parse("periodic", "30m"), Ok(Some(AutoCompaction::Periodic(Duration::from_secs(1800)))));
        assert_eq!(parse("periodic", "0"), Ok(None));
        assert_eq!(parse("revision", "1000"), Ok(Some(AutoCompaction::Revision(1000))));
        assert!(parse("revision", "1h").is_err());
        assert_eq!(parse("hourly", "1"), Err("unknown auto-compaction-mode \"hourly\"".into()));
    }

    #[test]
    fn revision_mode_keeps_the_newest_n() {
        let mut s = Schedule::new(AutoCompaction::Revision(1000));
        assert_eq!(s.tick(), Duration::from_secs(300));
        assert_eq!(s.on_tick(30_000), Some(29_000));
        assert_eq!(s.on_tick(500), None, "fewer revisions than kept");
    }

    #[test]
    fn periodic_mode_compacts_at_the_revision_a_retention_ago() {
        let mut s = Schedule::new(AutoCompaction::Periodic(Duration::from_secs(10)));
        assert_eq!(s.tick(), Duration::from_secs(1));
        // Revision 100 + 10 per second; nothing until 10 s were sampled.
        let got: Vec<Option<u64>> = (0..25).map(|t| s.on_tick(100 + 10 * t)).collect();
        assert!(got[..10].iter().all(Option::is_none), "{got:?}");
        assert_eq!(got[10], Some(100), "at 10 s: the revision seen 10 s ago");
        assert!(got[11..20].iter().all(Option::is_none), "one compaction per 10 s: {got:?}");
        assert_eq!(got[20], Some(200));
        let mut long = Schedule::new(AutoCompaction::Periodic(Duration::from_secs(72 * 3600)));
        assert_eq!(long.tick(), Duration::from_secs(360), "a tenth of an hour past 1 h");
        assert_eq!(long.on_tick(5), None);
    }
}
