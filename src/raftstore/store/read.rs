//! Reads this store serves for routers (docs/serve-anywhere.md, "Reads at
//! region leaders"): a region leader's piece of a linearizable read at a
//! revision, and, on the leader store, the read point such a read takes.

use super::Store;
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::proto::etcdserverpb::RangeRequest;
use crate::proto::mvccpb::KeyValue;
use crate::proto::tesserapb::Span;
use crate::raftstore::msg::PeerMsg;
use crate::region::eval::range_end;
use crate::region::mvcc::MvccReader;
use crate::region::range::scan_pieces;

/// A piece of a read in one region: from `start` to `end` (none: to the
/// end of the keyspace, or the key alone for a one-key read).
pub struct PieceRead<'a> {
    pub region: u64,
    pub epoch_version: u64,
    pub revision: u64,
    pub req: &'a RangeRequest,
    pub start: &'a [u8],
    pub end: Option<&'a [u8]>,
}

impl PieceRead<'_> {
    /// The span the piece covers (what a txn lock on it would overlap).
    fn span(&self) -> Span {
        let end = match self.end {
            Some(end) => end.to_vec(),
            None if range_end(&self.req.key, &self.req.range_end).is_none() => {
                let mut next = self.start.to_vec();
                next.push(0);
                next
            }
            None => Vec::new(),
        };
        Span { start: self.start.to_vec(), end }
    }
}

impl Store {
    /// Reads `piece` as its region's leader here: under the region's lease
    /// (else after a ReadIndex round), once nothing of the region at or
    /// below the piece's revision can still appear. The key-values in key
    /// order and their count, before etcd's post-processing.
    pub async fn read_here(&self, piece: &PieceRead<'_>) -> Result<(Vec<KeyValue>, usize)> {
        let region = piece.region;
        let shared = self.peer(region)?.shared;
        for _ in 0..2 {
            let leased = shared.lease.is_valid();
            if !leased {
                self.read_index(region).await?;
            }
            let (revision, epoch_version, span) = (piece.revision, piece.epoch_version, piece.span());
            self.ask(region, |cb| PeerMsg::ReadAt { revision, epoch_version, span, cb }).await?;
            let db = &self.engine.db;
            let snapshot = db.snapshot();
            // Checked after the snapshot: a paused process may wake up past
            // its lease. Then again, with a ReadIndex round.
            if leased && !shared.lease.is_valid() {
                continue;
            }
            if leased {
                METRICS.region_lease_reads.inc();
            } else {
                METRICS.read_index_reads.inc();
            }
            let reader = MvccReader::new(db, self.engine.mvcc(), Some(&snapshot));
            return scan_pieces(&reader, piece.req, [(piece.start, piece.end)], revision);
        }
        Err(Error::NotLeader { region })
    }

    /// On the leader store, the revision a linearizable read starting now
    /// is served at: at or above every revision acknowledged so far,
    /// confirmed to come from the current sequencer. With the compacted
    /// revision.
    pub async fn read_point(&self) -> Result<(u64, i64)> {
        let term = self.sequencer.term();
        let revision = self.sequencer.read_point();
        if !self.is_serving() {
            return Err(Error::NotLeader { region: self.meta_region });
        }
        self.confirm_sequencer(term).await?;
        METRICS.read_points.inc();
        Ok((revision, self.sequencer.compacted()))
    }

    /// Confirms that this store's sequencer, in `term`, still hands out
    /// the newest revisions: a read point a deposed leader store took, or
    /// one taken before this store became the leader store again, may be
    /// below a write acknowledged elsewhere. The meta group's lease shows
    /// it (then `true`: a caller reading a snapshot checks the lease again
    /// after taking it); else a ReadIndex round of the meta group does.
    pub async fn confirm_sequencer(&self, term: u64) -> Result<bool> {
        let meta = self.meta_region;
        let current = || self.is_evaluating() && self.sequencer.term() == term;
        if !current() {
            return Err(Error::NotLeader { region: meta });
        }
        if self.peer(meta)?.shared.lease.is_valid() {
            return Ok(true);
        }
        self.read_index(meta).await?;
        METRICS.read_index_reads.inc();
        if !current() {
            return Err(Error::NotLeader { region: meta });
        }
        Ok(false)
    }
}
