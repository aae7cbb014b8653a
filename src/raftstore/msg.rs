//! Messages a region's peer FSM receives.

use tokio::sync::oneshot;

use crate::error::Result;
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

pub enum PeerMsg {
    /// One raft tick (sent in bulk by the store timer to awake peers).
    Tick,
    /// Start an election now (a fresh single-voter region leads at once).
    Campaign,
    /// Evaluate and propose a write; `epoch_version` is the region version
    /// the router routed it by.
    Write { req: WriteRequest, epoch_version: u64, cb: WriteCallback },
    /// Confirm leadership through a ReadIndex round and wait until the read
    /// index is applied.
    ReadIndex { cb: DoneCallback },
    /// Physically compact the region's history below `revision`.
    Compact { revision: u64, cb: DoneCallback },
}
