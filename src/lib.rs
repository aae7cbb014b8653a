//! tessera: an etcd v3 compatible key-value store whose keyspace is split
//! into regions, each its own Raft group.
//!
//! # Layering
//!
//! Read from the bottom up; each layer only uses the ones below it.
//!
//! - [`proto`]: generated wire types (etcd's contract and our own).
//! - [`region`]: per-region state — metadata, the MVCC encoding, the
//!   evaluation of etcd writes into effects and their application. Knows
//!   nothing of threads or Raft.
//! - [`sequencer`]: hands out the one global revision and tracks which
//!   revisions are still in flight (the *resolved revision*).
//! - [`lease`]: the per-region leader lease tracker.
//! - [`lessor`]: etcd's leases (the Lease API): replicated grants and
//!   revokes, the lease -> keys index, remaining time.
//! - [`raftstore`]: the batch system — poller threads drive every region's
//!   raft-rs `RawNode`, persist all ready regions in one fsynced RocksDB
//!   write, apply, and answer proposals.
//! - [`router`]: key -> region addressing; splits multi-region requests at
//!   region boundaries and merges their results; retries routing errors.
//! - [`tls`]: TLS on the client and peer ports, and how tessera dials.
//! - [`server`]: the thin gRPC/HTTP edge — validates, routes, maps errors.
//! - [`bench`]: a load generator for any etcd endpoint (a client, not a layer).
//!
//! See docs/design.md for the invariants and how each is kept.

pub mod admin_cli;
pub mod bench;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod faults;
pub mod lease;
pub mod lessor;
pub mod metrics;
pub mod proto;
pub mod raftstore;
pub mod region;
pub mod router;
pub mod sequencer;
pub mod server;
pub mod snapshot;
pub mod tls;

pub use error::{Error, Result};
