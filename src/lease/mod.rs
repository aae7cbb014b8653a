//! The leader lease: until when a region leader may serve linearizable reads
//! from its own state without a ReadIndex round (DESIGN invariants 6 and 7).
//!
//! Not the etcd Lease API (that is the lessor). The lease lives on the
//! monotonic clock, never on raft ticks (raft stays on `ReadOnlyOption::Safe`).
//! A region's peer FSM renews and ends it; readers check it lock-free.
//!
//! - A single-voter region is its own quorum: once it leads and an entry of
//!   its term has applied, its lease lasts while it leads
//!   ([`LeaderLease::hold_while_leader`]).
//! - With several voters a lease is renewed from a quorum's acknowledgements
//!   of a heartbeat round to `send time + duration` ([`LeaderLease::renew`]),
//!   with `duration` from [`lease_duration`].
//! - Stepping down, transferring leadership, split and merge end it at once
//!   ([`LeaderLease::expire`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::metrics::METRICS;

/// No lease.
const NONE: u64 = 0;
/// Valid as long as the peer leads (single voter).
const WHILE_LEADER: u64 = u64::MAX;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds on the monotonic clock since the process's lease epoch;
/// never 0 so that 0 can mean "no lease".
fn nanos(at: Instant) -> u64 {
    (at.saturating_duration_since(epoch()).as_nanos() as u64).max(1)
}

/// The longest safe lease: it must end before any follower could vote for
/// another leader, i.e. below the minimum election timeout, less a margin
/// for clock drift between stores. `None` if no safe lease exists.
pub fn lease_duration(min_election_timeout: Duration, max_drift: Duration) -> Option<Duration> {
    min_election_timeout.checked_sub(max_drift).filter(|d| !d.is_zero())
}

/// One region's leader lease.
#[derive(Debug, Default)]
pub struct LeaderLease {
    until: AtomicU64,
}

impl LeaderLease {
    pub fn new() -> LeaderLease {
        LeaderLease::default()
    }

    /// Whether a read that has already taken its snapshot may be served from
    /// local state now. Check after taking the snapshot: a paused process can
    /// wake past its lease.
    pub fn is_valid(&self) -> bool {
        // Only a timed lease needs the clock.
        match self.until.load(Ordering::Acquire) {
            NONE => false,
            WHILE_LEADER => true,
            _ => self.valid_at(Instant::now()),
        }
    }

    pub fn valid_at(&self, at: Instant) -> bool {
        match self.until.load(Ordering::Acquire) {
            NONE => false,
            WHILE_LEADER => true,
            until => nanos(at) < until,
        }
    }

    /// A single voter leads and has applied an entry of its term.
    pub fn hold_while_leader(&self) {
        if self.until.swap(WHILE_LEADER, Ordering::AcqRel) != WHILE_LEADER {
            METRICS.lease_renewals.inc();
        }
    }

    /// A quorum acknowledged a heartbeat round sent at `sent_at`. Never
    /// shortens the lease. The caller must only renew for the term that sent
    /// the round (a renewal arriving after step-down must be dropped there).
    pub fn renew(&self, sent_at: Instant, duration: Duration) {
        let until = nanos(sent_at + duration);
        self.until.fetch_max(until, Ordering::AcqRel);
        METRICS.lease_renewals.inc();
    }

    /// Ends the lease at once.
    pub fn expire(&self) {
        self.until.store(NONE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_lease_runs_from_send_time() {
        let lease = LeaderLease::new();
        let sent = Instant::now();
        assert!(!lease.valid_at(sent));
        lease.renew(sent, Duration::from_millis(900));
        assert!(lease.valid_at(sent + Duration::from_millis(899)));
        assert!(!lease.valid_at(sent + Duration::from_millis(900)));
        // An older round never shortens it.
        lease.renew(sent - Duration::from_millis(500), Duration::from_millis(900));
        assert!(lease.valid_at(sent + Duration::from_millis(899)));
        lease.expire();
        assert!(!lease.valid_at(sent));
    }

    #[test]
    fn single_voter_lease_lasts_until_expired() {
        let lease = LeaderLease::new();
        lease.hold_while_leader();
        assert!(lease.valid_at(Instant::now() + Duration::from_secs(3600)));
        lease.expire();
        assert!(!lease.is_valid());
    }

    #[test]
    fn duration_stays_below_election_timeout() {
        let d = lease_duration(Duration::from_millis(1000), Duration::from_millis(100)).unwrap();
        assert_eq!(d, Duration::from_millis(900));
        assert_eq!(lease_duration(Duration::from_millis(100), Duration::from_millis(100)), None);
    }
}
