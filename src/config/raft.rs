//! etcd's `--heartbeat-interval` and `--election-timeout` (milliseconds)
//! as raft ticks, the way etcd maps them: one tick is a heartbeat
//! interval, and the election timeout is a whole number of them (rounded
//! down). The leader lease follows from the ticks
//! (`RaftConfig::lease_duration`: the election timeout less two ticks),
//! so it stays shorter than any election timeout raft-rs draws
//! (`[election, 2 * election)` ticks) whatever the values (DESIGN
//! invariant 6). Every member must be given the same values: a leader's
//! lease is only as safe as the shortest election timeout among the
//! members that may vote without it.

use std::time::Duration;

/// etcd's defaults, used for the one of the two flags not given.
pub const ETCD_HEARTBEAT_MS: u64 = 100;
pub const ETCD_ELECTION_MS: u64 = 1000;
/// etcd's `maxElectionMs`.
pub const MAX_ELECTION_MS: u64 = 50_000;

/// The raft timing the flags ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    /// Length of one tick: the heartbeat interval.
    pub tick: Duration,
    /// Ticks between heartbeats: always 1, as etcd.
    pub heartbeat_ticks: usize,
    /// Ticks without a leader before a follower campaigns: at least 5.
    pub election_ticks: usize,
}

/// The timing for the flags given; None when neither is (tessera keeps
/// its own defaults: 100 ms ticks, a heartbeat every 2, an election
/// timeout of 10). Refuses what etcd refuses, with etcd's messages.
pub fn timing(heartbeat_ms: Option<u64>, election_ms: Option<u64>) -> Result<Option<RaftTiming>, String> {
    if heartbeat_ms.is_none() && election_ms.is_none() {
        return Ok(None);
    }
    let heartbeat = heartbeat_ms.unwrap_or(ETCD_HEARTBEAT_MS);
    let election = election_ms.unwrap_or(ETCD_ELECTION_MS);
    if heartbeat == 0 {
        return Err(format!("--heartbeat-interval must be >0 (set to {heartbeat}ms)"));
    }
    if election == 0 {
        return Err(format!("--election-timeout must be >0 (set to {election}ms)"));
    }
    if 5 * heartbeat > election {
        return Err(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat}ms]"
        ));
    }
    if election > MAX_ELECTION_MS {
        return Err(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
        ));
    }
    Ok(Some(RaftTiming {
        tick: Duration::from_millis(heartbeat),
        heartbeat_ticks: 1,
        election_ticks: (election / heartbeat) as usize,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcds_values_become_ticks_of_one_heartbeat() {
        let t = timing(Some(100), Some(1000)).unwrap().unwrap();
        assert_eq!(t, RaftTiming { tick: Duration::from_millis(100), heartbeat_ticks: 1, election_ticks: 10 });
        let t = timing(Some(300), Some(1600)).unwrap().unwrap();
        assert_eq!((t.tick, t.election_ticks), (Duration::from_millis(300), 5), "rounded down");
        let t = timing(None, Some(3000)).unwrap().unwrap();
        assert_eq!((t.tick, t.election_ticks), (Duration::from_millis(100), 30), "etcd's default heartbeat");
        assert_eq!(timing(None, None), Ok(None));
    }

    #[test]
    fn refuses_what_etcd_refuses_with_its_messages() {
        assert_eq!(
            timing(Some(100), Some(400)).unwrap_err(),
            "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"
        );
        assert_eq!(timing(Some(0), None).unwrap_err(), "--heartbeat-interval must be >0 (set to 0ms)");
        assert_eq!(timing(None, Some(0)).unwrap_err(), "--election-timeout must be >0 (set to 0ms)");
        assert_eq!(
            timing(Some(100), Some(60_000)).unwrap_err(),
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms"
        );
    }

    #[test]
    fn the_lease_stays_shorter_than_the_shortest_election() {
        for (hb, el) in [(100, 500), (100, 1000), (250, 5000), (1000, 50_000)] {
            let t = timing(Some(hb), Some(el)).unwrap().unwrap();
            let raft = tessera::raftstore::RaftConfig {
                tick_interval: t.tick,
                election_ticks: t.election_ticks,
                heartbeat_ticks: t.heartbeat_ticks,
                ..Default::default()
            };
            raft.validate().unwrap();
            let lease = raft.lease_duration();
            assert!(!lease.is_zero() && lease + t.tick * 2 <= Duration::from_millis(el), "{hb}/{el}: {lease:?}");
        }
    }
}
