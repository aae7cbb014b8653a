//! The router's read path: every read cuts its spans into region pieces
//! and picks one revision for all. On the leader store ([`ReadAt`]) it is
//! made linearizable where it must be (the leader store's lease, else a
//! ReadIndex round of the meta group) and every piece read from one RocksDB
//! snapshot at that revision; on another store a linearizable Range takes
//! its revision from the leader store and each piece is read by its
//! region's leader (docs/serve-anywhere.md, "Reads at region leaders").

use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::KeyValue;
use crate::raftstore::PieceRead;
use crate::region::eval::{self, range_end, KvView};
use crate::region::mvcc::{MvccReader, ScanOptions};
use crate::region::range::{finish_range, scan_pieces};

use super::retry::Retry;
use super::table::{Piece, RoutingTable};
use super::{fill_inner_headers, Router};

impl Router {
    /// Picks the revision a read is served at and waits until it is
    /// resolved (see [`ReadAt`]). Also whether the read rests on the leader
    /// store's lease.
    async fn read_revision(&self, at: ReadAt) -> Result<(u64, bool)> {
        let sequencer = &self.store.sequencer;
        let term = sequencer.term();
        let revision = match at {
            ReadAt::Resolved => return Ok((sequencer.resolved(), false)),
            ReadAt::ReadPoint => sequencer.read_point(),
            ReadAt::Newest => sequencer.last(),
        };
        let leased = self.store.confirm_sequencer(term).await?;
        tokio::time::timeout(self.request_timeout, sequencer.wait_resolved(revision))
            .await
            .map_err(|_| Error::Timeout)?;
        Ok((revision, leased))
    }

    /// Reads under one RocksDB snapshot; `Ok(None)` if the lease the read
    /// used expired before the snapshot was taken (the read is retried).
    fn with_snapshot<T>(&self, leased: bool, read: impl FnOnce(&MvccReader) -> Result<T>) -> Result<Option<T>> {
        let db = &self.store.engine.db;
        let snapshot = db.snapshot();
        // Check the lease after taking the snapshot: a paused process may
        // wake up past its lease.
        if leased {
            if !self.store.peer(self.store.meta_region)?.shared.lease.is_valid() {
                return Ok(None);
            }
            METRICS.lease_fast_path_reads.inc();
        }
        let reader = MvccReader::new(db, self.store.engine.mvcc(), Some(&snapshot));
        read(&reader).map(Some)
    }

    /// The one read path: cuts `spans` into region pieces, picks the read's
    /// revision (`at`; all but [`ReadAt::Resolved`] linearizable), and runs
    /// `read` on one snapshot with the pieces and that revision. Retried
    /// (bounded) while a lease it used runs out before the snapshot.
    pub(super) async fn snapshot_read<T>(
        &self,
        spans: &[(Vec<u8>, Vec<u8>)],
        at: ReadAt,
        read: impl Fn(&MvccReader, &[Piece], u64) -> Result<T>,
    ) -> Result<(T, u64)> {
        let retry = Retry::within(self.request_timeout);
        loop {
            let attempt = async {
                let pieces = pieces_of(&self.table(), spans)?;
                let (current, leased) = self.read_revision(at).await?;
                Ok::<_, Error>(
                    self.with_snapshot(leased, |reader| read(reader, &pieces, current))?.map(|r| (r, current)),
                )
            };
            match attempt.await {
                Ok(Some(done)) => return Ok(done),
                // A lease ran out before the snapshot: again.
                Ok(None) if retry.expired() => return Err(Error::Timeout),
                Ok(None) => {}
                // A region changed shape (split, merge) or lost its leader
                // under the read: again, on a fresh table.
                Err(e) => retry.after(e).await?,
            }
        }
    }

    /// A Range: on the leader store from its own replica of every region;
    /// on another store, a linearizable one at the regions' leaders
    /// ([`Self::range_at_leaders`]), a serializable one on the leader store.
    pub async fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        if !self.store.is_serving() {
            if req.serializable {
                return Err(Error::NeedsLeaderStore);
            }
            return self.range_at_leaders(req).await;
        }
        let spans = [(req.key.clone(), req.range_end.clone())];
        let (mut resp, current) = self
            .snapshot_read(&spans, ReadAt::of(req.serializable), |reader, pieces, current| {
                let at = self.store.sequencer.check_read(req.revision, current)?;
                read_pieces(reader, req, pieces, at)
            })
            .await?;
        resp.header = Some(self.header(current));
        Ok(resp)
    }

    /// A linearizable Range served by the leaders of the regions it
    /// touches (docs/serve-anywhere.md, "Reads at region leaders"): at the
    /// read point X from the leader store, every piece by its region's
    /// leader at X under the region's lease, merged in key order. Every
    /// piece is at X, so the whole is the state at X (DESIGN 2).
    async fn range_at_leaders(&self, req: &RangeRequest) -> Result<RangeResponse> {
        // An attempt is bounded too: a piece waits at its leader until the
        // region's state at the read point is complete.
        let bounded = || async {
            tokio::time::timeout(self.request_timeout, self.range_at_leaders_once(req))
                .await
                .map_err(|_| Error::Timeout)?
        };
        self.retrying(bounded).await
    }

    /// The read point of a linearizable read starting now (from the
    /// leader store).
    pub async fn read_point(&self) -> Result<super::read_point::ReadPoint> {
        self.read_points.get().await
    }

    /// One attempt at [`Self::range_at_leaders`].
    async fn range_at_leaders_once(&self, req: &RangeRequest) -> Result<RangeResponse> {
        let (current, compacted) = self.read_points.get().await?;
        let revision = crate::sequencer::check_read(req.revision, current, compacted)?;
        let pieces = pieces_for(&self.table(), &req.key, &req.range_end)?;
        let (mut kvs, mut count) = (Vec::new(), 0);
        if let [one] = &pieces[..] {
            (kvs, count) = self.client.read(&piece_read(one, revision, req)).await?;
        } else {
            // In parallel; answers taken in key order.
            let sent: Vec<_> = pieces
                .into_iter()
                .map(|p| {
                    let (client, req) = (self.client.clone(), req.clone());
                    tokio::spawn(async move { client.read(&piece_read(&p, revision, &req)).await })
                })
                .collect();
            for answer in sent {
                let (piece_kvs, piece_count) = answer.await.map_err(|_| Error::Stopped)??;
                kvs.extend(piece_kvs);
                count += piece_count;
            }
        }
        let mut resp = finish_range(req, kvs, count);
        resp.header = Some(self.header(current));
        Ok(resp)
    }

    /// A txn without puts or deletes is a read: served at one snapshot,
    /// whatever regions it touches.
    pub(super) async fn read_txn(&self, req: &TxnRequest, spans: &[(Vec<u8>, Vec<u8>)]) -> Result<TxnResponse> {
        let (mut resp, current) = self
            .snapshot_read(spans, ReadAt::ReadPoint, |reader, _pieces, current| {
                eval::evaluate_read_txn(req, &self.snapshot_view(reader, current))
            })
            .await?;
        fill_inner_headers(&mut resp, current as i64);
        resp.header = Some(self.header(current));
        Ok(resp)
    }

    pub(super) fn snapshot_view<'a>(&'a self, reader: &'a MvccReader<'a>, revision: u64) -> SnapshotView<'a> {
        SnapshotView { reader, revision, sequencer: &self.store.sequencer, lessor: &self.store.lessor }
    }
}

/// Piece `p` of `req`, read at `revision`.
fn piece_read<'a>(p: &'a Piece, revision: u64, req: &'a RangeRequest) -> PieceRead<'a> {
    PieceRead {
        region: p.region,
        epoch_version: p.epoch_version,
        revision,
        req,
        start: &p.start,
        end: p.end.as_deref(),
    }
}

/// The pieces of an etcd (key, range_end) pair.
fn pieces_for(table: &RoutingTable, key: &[u8], end: &[u8]) -> Result<Vec<Piece>> {
    match range_end(key, end) {
        None => table.point(key).map(|p| vec![p]),
        Some(end) => table.split(key, end.as_deref()),
    }
    .ok_or(Error::RegionNotFound)
}

/// The pieces of several etcd (key, range_end) pairs.
fn pieces_of(table: &RoutingTable, spans: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    for (key, end) in spans {
        pieces.extend(pieces_for(table, key, end)?);
    }
    Ok(pieces)
}

/// Scans every piece at `at` in key order and applies etcd's post-processing.
fn read_pieces(reader: &MvccReader, req: &RangeRequest, pieces: &[Piece], at: u64) -> Result<RangeResponse> {
    let (kvs, count) = scan_pieces(reader, req, pieces.iter().map(|p| (&p.start[..], p.end.as_deref())), at)?;
    Ok(finish_range(req, kvs, count))
}

/// The revision a read is served at.
#[derive(Clone, Copy)]
pub(super) enum ReadAt {
    /// The resolved revision, confirming nothing (`serializable` reads).
    Resolved,
    /// The read point: at or above every write acknowledged so far
    /// (linearizable reads).
    ReadPoint,
    /// The newest revision handed out: also at or above every write in
    /// flight (writes that changed nothing; they may have read such writes).
    Newest,
}

impl ReadAt {
    fn of(serializable: bool) -> ReadAt {
        if serializable {
            ReadAt::Resolved
        } else {
            ReadAt::ReadPoint
        }
    }
}

/// A read-only view of all regions at one revision of one snapshot.
pub(super) struct SnapshotView<'a> {
    pub(super) reader: &'a MvccReader<'a>,
    pub(super) revision: u64,
    pub(super) sequencer: &'a crate::sequencer::Sequencer,
    pub(super) lessor: &'a crate::lessor::Lessor,
}

impl KvView for SnapshotView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.reader.get(key, self.revision)
    }
    fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<KeyValue>> {
        Ok(self.reader.scan(start, end, self.revision, ScanOptions::default())?.kvs)
    }
    fn range_at(&self, key: &[u8], end: Option<Option<Vec<u8>>>, revision: i64) -> Result<Vec<KeyValue>> {
        let at = self.sequencer.check_read(revision, self.revision)?;
        self.reader.read_at(key, end, at)
    }

    fn lease_exists(&self, id: i64) -> bool {
        self.lessor.exists(id)
    }
}
