//! Messages a region's peer FSM receives.

use tokio::sync::oneshot;

use crate::error::Result;
use crate::proto::tesserapb::RaftCommand;
use crate::region::eval::{WriteRequest, WriteResponse};

/// What a write returns once applied.
#[derive(Debug)]
pub struct WriteOutcome {
    /// The revision it took; `None` when it changed nothing.
    pub revision: Option<u64>,
    pub response: WriteResponse,
}

pub type WriteCallback = oneshot::Sender<Result<WriteOutcome>>;
pub type DoneCallback = oneshot::Sender<Result<()>>;
/// Answers a proposed command: whether it took effect (a lock taken, a
/// commit or rollback that found its lock, a lease granted or revoked; see
/// [`PeerMsg::Command`]).
pub type CommandCallback = oneshot::Sender<Result<bool>>;

pub enum PeerMsg {
    /// One raft tick (sent in bulk by the store timer to awake peers).
    Tick,
    /// Start an election now (a fresh single-voter region leads at once).
    Campaign,
    /// Evaluate and propose a write; `epoch_version` is the region version
    /// the router routed it by; `router` is the store whose router sent it.
    Write { req: WriteRequest, epoch_version: u64, router: u64, cb: WriteCallback },
    /// The leader store's answer to this leader's ask `seq` (in `term`)
    /// for revisions: a contiguous range and the leader store's term.
    Revision { term: u64, seq: u64, result: Result<crate::raftstore::revisions::Grant> },
    /// Confirm leadership through a ReadIndex round and wait until the read
    /// index is applied.
    ReadIndex { cb: DoneCallback },
    /// Answered once nothing of the region's `span` at or below `revision`
    /// can still appear (a leader's read at that revision; see
    /// `peer/read.rs`); `epoch_version` is the region version the router
    /// routed it by.
    ReadAt { revision: u64, epoch_version: u64, span: crate::proto::tesserapb::Span, cb: DoneCallback },
    /// Propose a command as it is: a step of a cross-region txn (`cmd.txn`)
    /// or a lease change (`cmd.lease`, meta group). The peer fills in its
    /// region and epoch. A lock is refused with `Locked` when it overlaps
    /// another txn's lock.
    Command { cmd: RaftCommand, epoch_version: u64, cb: CommandCallback },
    /// Physically compact the region's history below `revision`.
    Compact { revision: u64, cb: DoneCallback },
    /// Hand leadership to the peer on store `to` (its lease ends now).
    TransferLeader { to: u64 },
    /// Whether every other voter has applied all this leader has applied
    /// (a merge's source, before the target may commit the merge).
    CaughtUp { cb: CommandCallback },
    /// Propose a single-step conf change (add or remove a voter; for the
    /// meta group its context is the new member set); answered with
    /// whether it applied.
    ChangePeer { cc: raft::prelude::ConfChange, epoch_version: u64, cb: CommandCallback },
    /// A raft message from this region's peer on another store.
    Raft(Box<raft::prelude::Message>),
    /// The transport finished sending a snapshot of this region to store
    /// `to` (`ok`), or gave up.
    SnapshotSent { to: u64, ok: bool },
    /// The region was merged away: stop, and answer everything with
    /// `RegionNotFound` (the router retries on its new table).
    Destroy,
}

impl PeerMsg {
    /// Answers the message's callback, if it has one, with `err`.
    pub fn fail(self, err: crate::error::Error) {
        match self {
            PeerMsg::Write { cb, .. } => drop(cb.send(Err(err))),
            PeerMsg::Command { cb, .. } | PeerMsg::CaughtUp { cb } | PeerMsg::ChangePeer { cb, .. } => {
                drop(cb.send(Err(err)))
            }
            PeerMsg::ReadIndex { cb } | PeerMsg::ReadAt { cb, .. } | PeerMsg::Compact { cb, .. } => {
                drop(cb.send(Err(err)))
            }
            PeerMsg::Tick
            | PeerMsg::Campaign
            | PeerMsg::Destroy
            | PeerMsg::Raft(_)
            | PeerMsg::SnapshotSent { .. }
            | PeerMsg::Revision { .. }
            | PeerMsg::TransferLeader { .. } => {}
        }
    }
}
