//! The router: key -> region addressing for every etcd KV request.
//!
//! A read is cut at region boundaries ([`table::RoutingTable::split`]),
//! made linearizable per region (leader lease fast path, else ReadIndex),
//! read at one revision from one RocksDB snapshot, and merged in key order
//! with etcd's limit/sort/count applied once over the whole result.
//! A write goes to the one region that owns all its keys in one round; a
//! write spanning regions commits through two-phase commit ([`txn`]).
//! Routing errors (no leader yet, stale epoch, dropped proposal, keys locked
//! by a txn in progress) are retried here until the request deadline;
//! clients never see them.

pub mod admin;
pub mod alarm;
pub mod auto_compact;
pub mod auto_split;
mod balance;
pub mod bulk_split;
mod cluster;
pub mod feed;
mod lease;
mod members;
mod read;
mod read_point;
mod retry;
pub mod table;
mod txn;

pub use cluster::HIGH_MARK_WINDOW;
pub use lease::LeaseTtl;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::*;
use crate::raftstore::msg::WriteOutcome;
use crate::raftstore::{RegionClient, Store};
use crate::region::eval::{self, WriteRequest, WriteResponse};
use crate::region::span;
use read::{ReadAt, SnapshotView};
use retry::Retry;
use table::RoutingTable;

pub struct Router {
    store: Arc<Store>,
    /// Reaches region leaders wherever they are.
    client: RegionClient,
    /// The history the server streams and hashes.
    feed: feed::Feed,
    /// Where linearizable reads take their revision.
    read_points: Arc<read_point::ReadPoints>,
    /// The routing table and the store's regions version it was built at.
    table: RwLock<(u64, Arc<RoutingTable>)>,
    member_id: u64,
    /// How long a request may spend retrying routing errors.
    pub request_timeout: Duration,
    compact_lock: tokio::sync::Mutex<()>,
    /// Held by a split, a merge or a membership change: one at a time.
    admin_lock: tokio::sync::Mutex<()>,
    /// When the leader store last looked for unfinished membership changes.
    reconciled: parking_lot::Mutex<Instant>,
    /// When the leader store last looked at where region leaders are.
    balanced: parking_lot::Mutex<Instant>,
    /// The next cross-region txn id.
    txn_ids: AtomicU64,
    pub alarms: alarm::Alarms,
}

/// Whether `every` has passed since `last` (then `last` becomes now): a
/// periodic step of the leader store that runs at most that often.
fn due(last: &parking_lot::Mutex<Instant>, every: Duration) -> bool {
    let mut last = last.lock();
    if last.elapsed() < every {
        return false;
    }
    *last = Instant::now();
    true
}

impl Router {
    pub fn new(store: Arc<Store>) -> Result<Router> {
        let member_id = store.member_id_of(store.store_id);
        let table = (store.regions_version(), Arc::new(RoutingTable::from_shared(store.shared_regions())));
        let alarms = alarm::Alarms::load(store.clone())?;
        Ok(Router {
            client: RegionClient::new(store.clone()),
            feed: feed::Feed::new(store.clone()),
            read_points: read_point::ReadPoints::new(store.clone()),
            store,
            table: RwLock::new(table),
            member_id,
            request_timeout: Duration::from_secs(10),
            compact_lock: tokio::sync::Mutex::new(()),
            admin_lock: tokio::sync::Mutex::new(()),
            reconciled: parking_lot::Mutex::new(Instant::now()),
            balanced: parking_lot::Mutex::new(Instant::now()),
            // Unlikely to repeat an id of an earlier run (txn ids only need to
            // be unique among txns in progress and those a crash left behind).
            txn_ids: AtomicU64::new(unique_id()),
            alarms,
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn feed(&self) -> &feed::Feed {
        &self.feed
    }

    /// The routing table, rebuilt first if a region changed shape since.
    fn table(&self) -> Arc<RoutingTable> {
        let version = self.store.regions_version();
        {
            let (built, table) = &*self.table.read();
            if *built == version {
                return table.clone();
            }
        }
        let fresh = Arc::new(RoutingTable::from_shared(self.store.shared_regions()));
        *self.table.write() = (version, fresh.clone());
        fresh
    }

    /// A header at the newest revision handed out (what etcd's non-KV
    /// responses carry).
    pub fn current_header(&self) -> ResponseHeader {
        self.header(self.store.current_revision())
    }

    pub fn header(&self, revision: u64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.store.cluster_id,
            member_id: self.member_id,
            revision: revision as i64,
            raft_term: self.store.raft_term(),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the request
    /// deadline passes ([`Retry`]).
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        Retry::within(self.request_timeout).run(attempt).await
    }

    // ---- writes -----------------------------------------------------------

    /// Runs `work` to its end even if the caller stops waiting: a client
    /// that gives up drops its gRPC call, and with it the call's future. A
    /// write across regions (locks, then commits), a lease revoke (the
    /// revoke, then its deletes) or a merge (prepare, then commit or
    /// rollback) abandoned half-way would leave locks, a revision in flight
    /// or a merging region behind, and writes to them would hang.
    pub(crate) async fn to_completion<T, F>(self: &Arc<Self>, work: impl FnOnce(Arc<Router>) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        tokio::spawn(work(self.clone())).await.map_err(|_| Error::Stopped)?
    }

    /// Commits a write, to its end (see [`Self::to_completion`]); returns
    /// its outcome and its header revision.
    async fn write(self: &Arc<Self>, req: WriteRequest) -> Result<(WriteOutcome, u64)> {
        self.to_completion(move |router| async move { router.write_attached(req).await }).await
    }

    /// [`Self::write`] in the caller's task. On a store other than the
    /// leader store, only a write its one region's leader commits with a
    /// revision is finished here; anything else is
    /// [`Error::NeedsLeaderStore`] before it proposed anything
    /// (docs/serve-anywhere.md, "Writes through any store").
    async fn write_attached(&self, req: WriteRequest) -> Result<(WriteOutcome, u64)> {
        let deadline = Instant::now() + self.request_timeout;
        let leader_store = self.store.is_serving();
        loop {
            let outcome = self.retrying(|| self.write_once(&req, leader_store)).await?;
            if let Some(revision) = outcome.revision {
                self.store.sequencer.acknowledge(revision);
                return Ok((outcome, revision));
            }
            if !leader_store {
                return Err(Error::NeedsLeaderStore);
            }
            if let Some((response, at)) = self.unchanged_at_newest(&req).await? {
                self.store.sequencer.acknowledge(at);
                return Ok((WriteOutcome { revision: None, response }, at));
            }
            // A write since its evaluation makes it change something now.
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
        }
    }

    /// One attempt at a write: to the one region it touches, or through
    /// two-phase commit when it touches several (on the leader store only).
    async fn write_once(&self, req: &WriteRequest, leader_store: bool) -> Result<WriteOutcome> {
        let table = self.table();
        let mut pieces = Vec::new();
        for s in &span::write_spans(req) {
            pieces.extend(table.split(&s.start, span::end_of(s)).ok_or(Error::RegionNotFound)?);
        }
        let piece = match pieces.first() {
            Some(first) if pieces.iter().any(|p| p.region != first.region) => {
                if !leader_store {
                    return Err(Error::NeedsLeaderStore);
                }
                return self.write_across(req, &table, &pieces).await;
            }
            Some(first) => first.clone(),
            // A write touching no key (an inverted delete range) still
            // needs a region to answer from: the one owning its key.
            None => {
                let key = span::write_key_ranges(req).into_iter().next().map(|(k, _)| k).unwrap_or_default();
                table.point(&key).ok_or(Error::RegionNotFound)?
            }
        };
        self.client.write(piece.region, piece.epoch_version, req.clone()).await
    }

    /// A write whose leader found it changes nothing is answered as a
    /// linearizable read (docs/cluster.md, "Writes that change nothing"):
    /// at R, the newest revision handed out (at or above every write
    /// acknowledged before it and every write its evaluation saw), once R
    /// is resolved and this store confirmed as the leader store, with its
    /// outcome evaluated again against the state at R: what it answers is
    /// exactly that state. `None` if at R it does change something (a
    /// write since its evaluation): the caller sends it again.
    async fn unchanged_at_newest(&self, req: &WriteRequest) -> Result<Option<(WriteResponse, u64)>> {
        let (response, at) = self
            .snapshot_read(&[], ReadAt::Newest, |reader, _pieces, current| {
                // A guess no one is given: only whether it would take one counts.
                let ev = eval::evaluate(req, &self.snapshot_view(reader, current), &mut || current + 1)?;
                Ok(ev.revision.is_none().then_some(ev.response))
            })
            .await?;
        Ok(response.map(|r| (r, at)))
    }

    pub async fn put(self: &Arc<Self>, req: PutRequest) -> Result<PutResponse> {
        let (outcome, at) = self.write(WriteRequest::Put(req)).await?;
        let header = self.header(at);
        let WriteResponse::Put(mut resp) = outcome.response else { unreachable!("a put answers a put") };
        resp.header = Some(header);
        Ok(resp)
    }

    pub async fn delete_range(self: &Arc<Self>, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let (outcome, at) = self.write(WriteRequest::DeleteRange(req)).await?;
        let header = self.header(at);
        let WriteResponse::DeleteRange(mut resp) = outcome.response else { unreachable!("a delete answers a delete") };
        resp.header = Some(header);
        Ok(resp)
    }

    pub async fn txn(self: &Arc<Self>, req: TxnRequest) -> Result<TxnResponse> {
        if !eval::txn_writes(&req) {
            if !self.store.is_serving() {
                return Err(Error::NeedsLeaderStore);
            }
            let mut spans = Vec::new();
            span::txn_key_ranges(&req, &mut spans);
            return self.read_txn(&req, &spans).await;
        }
        let (outcome, at) = self.write(WriteRequest::Txn(req)).await?;
        let header = self.header(at);
        let WriteResponse::Txn(mut resp) = outcome.response else { unreachable!("a txn answers a txn") };
        let before = outcome.revision.map_or(header.revision, |r| r as i64 - 1);
        fill_inner_headers(&mut resp, before);
        resp.header = Some(header);
        Ok(resp)
    }

    pub async fn compact(&self, req: &CompactionRequest) -> Result<CompactionResponse> {
        let _one_at_a_time = self.compact_lock.lock().await;
        let revision = req.revision;
        if revision <= self.store.sequencer.compacted() {
            return Err(Error::Compacted);
        }
        if revision > self.store.sequencer.last() as i64 {
            return Err(Error::FutureRevision);
        }
        let revision = revision.max(0);
        // Recorded first: from now on reads below it are refused, and a
        // restart finishes the physical part.
        self.store.set_compacted(revision)?;
        for region in self.store.regions() {
            self.retrying(|| async {
                match self.client.compact(region.id, revision as u64).await {
                    // Merged away meanwhile: its keys are compacted with the
                    // target's (or by the restart's finishing pass).
                    Err(Error::RegionNotFound) => Ok(()),
                    other => other,
                }
            })
            .await?;
        }
        let engine = &self.store.engine;
        crate::region::events::compact(&engine.db, engine.events(), revision as u64)?;
        Ok(CompactionResponse { header: Some(self.current_header()) })
    }
}

/// Nanoseconds since the Unix epoch: a start for ids that must not repeat
/// across restarts (txn ids, lease ids, scratch file names).
pub fn unique_id() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as u64
}

/// Gives the inner responses of a txn evaluated before any write (header
/// revision 0) the store revision `before` the txn.
fn fill_inner_headers(resp: &mut TxnResponse, before: i64) {
    for op in &mut resp.responses {
        let header = match &mut op.response {
            Some(Response::ResponseRange(r)) => &mut r.header,
            Some(Response::ResponsePut(r)) => &mut r.header,
            Some(Response::ResponseDeleteRange(r)) => &mut r.header,
            Some(Response::ResponseTxn(t)) => {
                fill_inner_headers(t, before);
                &mut t.header
            }
            None => continue,
        };
        if let Some(h) = header {
            if h.revision == 0 {
                h.revision = before;
            }
        }
    }
}
