//! The batch system that drives every region's Raft group.
//!
//! # Threads
//!
//! | thread | count | does | talks to |
//! |---|---|---|---|
//! | tonic/tokio workers | tokio default | gRPC edge, router, reads from RocksDB snapshots | peers through mailboxes (crossbeam), answers through oneshots |
//! | `raft-poller-N` | `StoreConfig::pollers` (half the cores) | a poll round: handle a batch of peers' messages (evaluate and propose writes, ReadIndex, ticks), persist every ready peer's entries and hard state in ONE RocksDB write with ONE fsync, advance raft, apply committed entries (one unsynced write), then answer | RocksDB, the sequencer, callbacks |
//! | `store-timer` | 1 | every `tick_interval`, sends a tick to each peer that is awake; idle peers (a single-voter leader with no pending read) are skipped | mailboxes |
//!
//! Lifecycle: [`Store::open`] loads or bootstraps regions, starts the
//! pollers and the timer and asks every region to campaign;
//! [`Store::shutdown`] stops the timer, then the pollers after their round.
//!
//! Apply writes are not synced: the log entries they come from already are,
//! and the applied index is written atomically with the data, so a crash
//! replays them. A later synced write makes them durable too (one WAL).

pub mod batch;
pub mod members;
mod missing;
pub mod msg;
pub mod peer;
mod poller;
mod region_ids;
pub mod remote;
pub mod revisions;
pub mod snap;
pub mod storage;
mod store;
pub mod transport;
pub mod wire;

pub use members::member_id;
pub use store::{bootstrap, PeerHandle, PieceRead, RegionClient, Store, StoreConfig};

use std::time::Duration;

/// Raft timing and log settings shared by every region of a store.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// Length of one raft tick.
    pub tick_interval: Duration,
    /// Ticks without a leader before a follower campaigns (raft-rs
    /// randomizes the timeout in `[election_ticks, 2 * election_ticks)`).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Applied log entries kept before the log is truncated.
    pub log_gc_threshold: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            tick_interval: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            log_gc_threshold: 1024,
        }
    }
}

impl RaftConfig {
    /// How long a quorum's acknowledgement of a heartbeat round lets a
    /// leader serve reads alone, from the round's send time: the minimum
    /// election timeout less two ticks for clock drift and late ticks
    /// (DESIGN invariant 6).
    pub fn lease_duration(&self) -> Duration {
        let election = self.tick_interval * self.election_ticks as u32;
        crate::lease::lease_duration(election, self.tick_interval * 2).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err("election ticks must exceed heartbeat ticks (both > 0)".into());
        }
        if self.election_ticks <= 2 {
            return Err("election ticks must exceed 2 (a lease is 2 ticks shorter than an election)".into());
        }
        if self.tick_interval.is_zero() {
            return Err("tick interval must be positive".into());
        }
        Ok(())
    }
}
