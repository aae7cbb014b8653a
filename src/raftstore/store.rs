//! A store: one RocksDB, the sequencer, and one peer per region driven by
//! the batch system.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel;
use dashmap::DashMap;
use parking_lot::Mutex;
use prost::Message as _;
use tokio::sync::oneshot;

use super::batch::{BatchConfig, BatchSystem, Mailbox};
use super::msg::{PeerMsg, WriteOutcome};
use super::peer::{PeerFsm, PeerShared, StoreContext};
use super::poller::RaftPoller;
use super::transport::Transport;
use super::{remote, storage, RaftConfig};
use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::lessor::Lessor;
use crate::proto::tesserapb::region_request::Kind as RegionKind;
use crate::proto::tesserapb::region_response::Result as Answer;
use crate::proto::tesserapb::{
    AllocateRequest, ApplyState, MemberSet, RaftCommand, Region, RegionRequest, RegionResponse, StoreInfo, StoreMember,
    TxnLock, TxnRecord,
};
use crate::region::eval::WriteRequest;
use crate::sequencer::{Sequencer, NEVER_COMPACTED};

/// How long an admin step waits for its region's leadership to come to
/// the leader store.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// This store's id (1 on a single node).
    pub store_id: u64,
    /// Keys at which a fresh store splits its keyspace into regions.
    /// Ignored when the data dir already holds regions.
    pub initial_split_keys: Vec<Vec<u8>>,
    /// Poller threads (default: half the cores, at least one; the gRPC
    /// runtime needs the rest: see docs/design.md).
    pub pollers: usize,
    pub raft: RaftConfig,
    /// Every store of a new cluster (`--initial-cluster`; member ids are
    /// filled in at bootstrap); empty for a single store. `store_id` must
    /// be one of them. Ignored once the data dir holds a cluster.
    pub members: Vec<StoreMember>,
    /// Joining a running cluster (`--initial-cluster-state existing`): its
    /// id and members, from a member (this store is in them). Used only
    /// when the data dir is new.
    pub join: Option<(u64, MemberSet)>,
    /// What this store tells the others about itself.
    pub name: String,
    pub client_urls: Vec<String>,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.into(),
            store_id: 1,
            initial_split_keys: Vec::new(),
            pollers: default_pollers(),
            raft: RaftConfig::default(),
            members: Vec::new(),
            join: None,
            name: "default".into(),
            client_urls: Vec::new(),
        }
    }
}

/// Half the cores, at least one. Measured on 2 cores with 100 put clients:
/// one poller 20.6-22.4k puts/s, two 19.1-19.7k (they compete with the gRPC
/// workers for CPU and split the fsyncs).
pub fn default_pollers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// What other threads hold of a peer.
#[derive(Clone)]
pub struct PeerHandle {
    /// Shared, so that handing out a handle on the request path allocates nothing.
    pub region: Arc<Region>,
    pub shared: Arc<PeerShared>,
    pub mailbox: Mailbox<PeerFsm>,
}

pub struct Store {
    pub engine: Engine,
    pub data_dir: PathBuf,
    pub sequencer: Arc<Sequencer>,
    pub lessor: Arc<Lessor>,
    pub store_id: u64,
    pub cluster_id: u64,
    /// The meta group's region id.
    pub meta_region: u64,
    context: Arc<StoreContext>,
    system: Mutex<Option<BatchSystem<PeerFsm>>>,
    timer: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<AtomicBool>,
}

impl Store {
    /// Opens (or bootstraps) the store in `cfg.data_dir` and starts its threads.
    pub fn open(cfg: StoreConfig) -> Result<Arc<Store>> {
        cfg.raft.validate().map_err(Error::Storage)?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| Error::Storage(format!("{}: {e}", cfg.data_dir.display())))?;
        let engine = Engine::open(&cfg.data_dir)?;
        let Booted { regions, cluster_id, store_id, members } = load_or_bootstrap(&engine, &cfg)?;
        if !members.members.iter().any(|m| m.store_id == store_id) {
            return Err(Error::Storage(format!(
                "store {store_id} was removed from the cluster; to serve again, add it with etcdctl member add and start it on a new data dir"
            )));
        }
        let clustered = members.members.len() > 1 || cfg.join.is_some();
        let meta_region = members.meta_region;
        let lessor = Arc::new(Lessor::load(&engine)?);
        let compacted = match engine.db.get_cf(engine.meta(), keys::COMPACTED)? {
            Some(b) => i64::from_be_bytes(
                b.as_slice().try_into().map_err(|_| Error::Storage("corrupt compacted revision".into()))?,
            ),
            None => NEVER_COMPACTED,
        };

        let mut loaded = Vec::with_capacity(regions.len());
        let mut last = 0;
        let mut unapplied = Vec::new();
        for region in regions {
            let peer = storage::load(&engine, &region)?;
            last = last.max(peer.apply_state.max_revision);
            last = peer.unapplied_revisions.iter().fold(last, |m, r| m.max(*r));
            unapplied.extend_from_slice(&peer.unapplied_revisions);
            loaded.push((region, peer));
        }
        // An empty etcd store is at revision 1; its first write gets 2.
        let sequencer = Arc::new(Sequencer::recover(last.max(1), unapplied, compacted));
        let transport = if clustered {
            sequencer.set_limit(load_high_mark(&engine)?);
            let me = StoreInfo {
                store_id,
                name: cfg.name.clone(),
                client_urls: cfg.client_urls.clone(),
                peer_urls: members
                    .members
                    .iter()
                    .filter(|m| m.store_id == store_id)
                    .map(|m| m.peer_url.clone())
                    .collect(),
            };
            let peers = super::members::peer_urls(&members);
            Some(Arc::new(Transport::start(me, &peers).map_err(|e| Error::Storage(format!("peer transport: {e}")))?))
        } else {
            None
        };

        let batch_cfg = BatchConfig { pollers: cfg.pollers, max_batch: 256 };
        let system = BatchSystem::start("raft-poller", &batch_cfg, || RaftPoller {
            engine: engine.clone(),
            sequencer: sequencer.clone(),
            transport: transport.clone(),
        });
        let next_region_id = loaded.iter().flat_map(|(r, p)| p.split_ids.iter().copied().chain([r.id])).max();
        let context = Arc::new(StoreContext {
            engine: engine.clone(),
            sequencer: sequencer.clone(),
            store_id,
            raft: cfg.raft.clone(),
            max_term: AtomicU64::new(0),
            lessor: lessor.clone(),
            peers: DashMap::new(),
            registrar: system.registrar(),
            regions_version: AtomicU64::new(0),
            next_region_id: AtomicU64::new(next_region_id.unwrap_or(0) + 1),
            meta_region,
            meta_leader: AtomicU64::new(0),
            evaluating: AtomicBool::new(!clustered),
            serving: AtomicBool::new(!clustered),
            transport,
            ticks: AtomicU64::new(0),
            early_votes: Default::default(),
            missing: Default::default(),
            creating: Default::default(),
            members: parking_lot::RwLock::new(members),
            removed: tokio::sync::Notify::new(),
        });
        if let Some(t) = &context.transport {
            let weak = Arc::downgrade(&context);
            t.on_snapshot_sent(Arc::new(move |region, to, ok| {
                let peer = weak.upgrade().and_then(|c| c.peers.get(&region).map(|p| p.mailbox.clone()));
                if let Some(mailbox) = peer {
                    let _ = mailbox.send(PeerMsg::SnapshotSent { to, ok });
                }
            }));
            let weak = Arc::downgrade(&context);
            t.on_removed(Arc::new(move || {
                if let Some(c) = weak.upgrade() {
                    c.removed.notify_one();
                }
            }));
        }
        for (region, peer) in loaded {
            // A single voter leads at once; several wait for an election.
            let campaign = region.peers.len() == 1;
            context.add_peer(region, peer, campaign)?;
        }
        let store = Arc::new(Store {
            engine,
            data_dir: cfg.data_dir.clone(),
            sequencer,
            lessor,
            store_id,
            cluster_id,
            meta_region,
            context,
            system: Mutex::new(Some(system)),
            timer: Mutex::new(None),
            stop: Arc::new(AtomicBool::new(false)),
        });
        *store.timer.lock() = Some(start_timer(&store, cfg.raft.tick_interval));
        Ok(store)
    }

    /// Whether the data dir in `dir` holds a store already (a bootstrap
    /// or join finished there).
    pub fn bootstrapped(dir: &std::path::Path) -> Result<bool> {
        if !dir.join("CURRENT").exists() {
            return Ok(false);
        }
        let engine = Engine::open(dir)?;
        let found = engine.db.get_cf(engine.meta(), keys::CLUSTER)?.is_some();
        Ok(found)
    }

    /// Every region that owns user keys (not the meta group), ordered by start key.
    pub fn regions(&self) -> Vec<Region> {
        let mut regions: Vec<Region> =
            self.context.peers.iter().filter(|p| !p.region.meta).map(|p| (*p.region).clone()).collect();
        regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        regions
    }

    pub fn peer(&self, region: u64) -> Result<PeerHandle> {
        self.context.peers.get(&region).map(|p| p.clone()).ok_or(Error::RegionNotFound)
    }

    /// Bumped whenever a region changes shape (split, merge, prepare or
    /// rollback of a merge): routing tables older than it are stale.
    pub fn regions_version(&self) -> u64 {
        self.context.regions_version.load(Ordering::Acquire)
    }

    /// A region id no current region has and no logged split will take (ids
    /// of regions merged away may come back after a restart; nothing refers
    /// to them by then).
    pub fn alloc_region_id(&self) -> u64 {
        self.context.next_region_id.fetch_add(1, Ordering::AcqRel)
    }

    pub fn raft_config(&self) -> &super::RaftConfig {
        &self.context.raft
    }

    /// The highest raft term among this store's regions (for headers).
    pub fn raft_term(&self) -> u64 {
        self.context.max_term.load(Ordering::Acquire)
    }

    /// The sum of every region's applied raft index: a number that grows
    /// with every entry the store applies (etcd reports its one log's index).
    pub fn applied_index(&self) -> u64 {
        self.context.peers.iter().map(|p| p.shared.applied_index.load(Ordering::Relaxed)).sum()
    }

    /// Bytes RocksDB holds on disk and in memtables, over all column families.
    pub fn db_size(&self) -> u64 {
        let db = &self.engine.db;
        crate::engine::ALL_CFS
            .iter()
            .map(|cf| {
                let cf = self.engine.cf(cf);
                let prop = |name: &str| db.property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
                prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables")
            })
            .sum()
    }

    /// Compacts every column family's files (etcd's defragment: gives the
    /// space of deleted and compacted versions back to the filesystem).
    pub fn defragment(&self) -> Result<()> {
        let db = &self.engine.db;
        for cf in crate::engine::ALL_CFS {
            db.compact_range_cf(self.engine.cf(cf), None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Whether every region leads here with a valid leader lease.
    pub fn all_leading(&self) -> bool {
        self.context.peers.iter().all(|p| p.shared.lease.is_valid())
    }

    /// Whether this member can answer: on one store, every region leads with
    /// a valid lease; in a cluster, every region (and the meta group) has a
    /// known leader.
    pub fn healthy(&self) -> bool {
        if !self.clustered() {
            return self.all_leading();
        }
        self.context.peers.iter().all(|p| p.shared.leader.load(Ordering::Acquire) != 0)
    }

    /// The cluster's members as this store applied them.
    pub fn members(&self) -> MemberSet {
        self.context.members.read().clone()
    }

    /// The member id of store `store_id` (0 if it is no member).
    pub fn member_id_of(&self, store_id: u64) -> u64 {
        self.context.members.read().members.iter().find(|m| m.store_id == store_id).map_or(0, |m| m.member_id)
    }

    /// The peer URL of store `store_id`, if it is a member.
    pub fn peer_url_of(&self, store_id: u64) -> Option<String> {
        let members = self.context.members.read();
        members.members.iter().find(|m| m.store_id == store_id).map(|m| m.peer_url.clone())
    }

    /// Whether `store_id` was a member and was removed.
    pub fn was_removed(&self, store_id: u64) -> bool {
        super::members::was_removed(&self.context.members.read(), store_id)
    }

    /// Resolves once this store has learnt it was removed from the cluster.
    pub async fn removed(&self) {
        self.context.removed.notified().await
    }

    /// The members this store heard from within an election timeout
    /// (itself included): what a membership change may count on.
    pub fn active_members(&self) -> Vec<u64> {
        let within = self.context.raft.tick_interval * self.context.raft.election_ticks as u32;
        let members = self.context.members.read();
        let active = |id: u64| id == self.store_id || self.transport().is_some_and(|t| t.active(id, within));
        members.members.iter().map(|m| m.store_id).filter(|id| active(*id)).collect()
    }

    /// Proposes a single-step conf change of `region` (one attempt);
    /// whether it applied.
    pub async fn change_peer(&self, region: u64, epoch_version: u64, cc: raft::prelude::ConfChange) -> Result<bool> {
        self.ask(region, |cb| PeerMsg::ChangePeer { cc, epoch_version, cb }).await
    }

    /// The newest revision this store knows: the last handed out on the
    /// leader store, the highest applied elsewhere.
    pub fn current_revision(&self) -> u64 {
        if self.context.evaluating.load(Ordering::Acquire) {
            self.sequencer.last()
        } else {
            self.max_applied_revision().max(1)
        }
    }

    /// Whether the store is one of several.
    pub fn clustered(&self) -> bool {
        self.context.transport.is_some()
    }

    pub fn transport(&self) -> Option<&Arc<Transport>> {
        self.context.transport.as_ref()
    }

    /// The leader store (whose meta peer leads), 0 while unknown.
    pub fn leader_store(&self) -> u64 {
        self.context.meta_leader.load(Ordering::Acquire)
    }

    /// This store answers client requests (docs/cluster.md, "Activation").
    pub fn is_serving(&self) -> bool {
        self.context.serving.load(Ordering::Acquire)
    }

    /// Whether every peer here, the meta group's included, leads and has
    /// applied an entry of its term: the condition for activation.
    pub fn leads_everything(&self) -> bool {
        self.context.peers.iter().all(|p| p.shared.leading.load(Ordering::Acquire))
    }

    /// The meta group's raft term here, if its peer leads.
    pub fn meta_term_if_leading(&self) -> Option<u64> {
        let p = self.context.peers.get(&self.meta_region)?;
        p.shared.leading.load(Ordering::Acquire).then(|| p.shared.term.load(Ordering::Acquire))
    }

    /// The highest compaction any region here applied (or took with a
    /// snapshot): a new leader store refuses reads below it.
    pub fn max_applied_compaction(&self) -> Result<u64> {
        let mut max = 0;
        for p in self.context.peers.iter() {
            max = max.max(storage::load_apply_state(&self.engine, p.region.id)?.compacted_revision);
        }
        Ok(max)
    }

    /// The highest revision applied by any region here.
    pub fn max_applied_revision(&self) -> u64 {
        self.context.peers.iter().map(|p| p.shared.max_revision.load(Ordering::Acquire)).max().unwrap_or(0)
    }

    /// Activation step: the sequencer restarted, writes may take revisions.
    pub fn set_evaluating(&self, on: bool) {
        self.context.evaluating.store(on, Ordering::Release);
    }

    /// Activation done (or undone): client requests are answered here.
    pub fn set_serving(&self, on: bool) {
        self.context.serving.store(on, Ordering::Release);
    }

    /// Makes store `to` the leader store: the meta group's leadership moves
    /// there (region leaders follow it while it activates, then spread
    /// again). Waits (bounded) until this store sees it.
    pub async fn move_leader_store(&self, to: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.leader_store() != to {
            if Instant::now() > deadline {
                return Err(Error::Timeout);
            }
            let meta = self.peer(self.meta_region)?;
            let _ = meta.mailbox.send(PeerMsg::TransferLeader { to });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// A raft message from another store for `region`.
    pub fn deliver(&self, region: u64, msg: raft::prelude::Message) {
        crate::metrics::METRICS.peer_messages_received.inc();
        self.context.deliver(region, msg);
    }

    /// Waits (bounded) until every region leads with a valid lease.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.all_leading() {
            if Instant::now() > deadline {
                return Err(Error::Timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Records (fsynced) that history below `revision` is gone.
    pub fn set_compacted(&self, revision: i64) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        wb.put_cf(self.engine.meta(), keys::COMPACTED, revision.to_be_bytes());
        self.engine.write(wb, true)?;
        self.sequencer.mark_compacted(revision);
        Ok(())
    }

    async fn ask<T>(&self, region: u64, make: impl FnOnce(oneshot::Sender<Result<T>>) -> PeerMsg) -> Result<T> {
        let peer = self.peer(region)?;
        let (tx, rx) = oneshot::channel();
        peer.mailbox.send(make(tx)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Whether every peer of `region` has applied all its leader (here) has.
    pub async fn caught_up(&self, region: u64) -> Result<bool> {
        self.ask(region, |cb| PeerMsg::CaughtUp { cb }).await
    }

    /// Sends a region request (`kind`) to the store whose peer leads
    /// `region`, if that is another store (as this store's peer last
    /// heard); `None`: this store's own peer is to be asked.
    async fn ask_leader(
        &self,
        region: u64,
        epoch_version: u64,
        kind: impl FnOnce() -> RegionKind,
    ) -> Result<Option<RegionResponse>> {
        let Some(t) = self.transport() else { return Ok(None) };
        let leader = self.peer(region)?.shared.leader.load(Ordering::Acquire);
        if leader == 0 || leader == self.store_id {
            return Ok(None);
        }
        let kind = kind();
        let repeatable = !matches!(kind, RegionKind::Write(_));
        let req = RegionRequest { region_id: region, epoch_version, kind: Some(kind) };
        t.region(leader, req, repeatable).await.map(Some)
    }

    /// Evaluates and commits a write in `region` (one attempt), at the
    /// region's leader wherever it is.
    pub async fn write(&self, region: u64, epoch_version: u64, req: WriteRequest) -> Result<WriteOutcome> {
        match self.ask_leader(region, epoch_version, || RegionKind::Write(remote::encode_write(req.clone()))).await? {
            Some(resp) => remote::decode_outcome(resp),
            None => self.write_here(region, epoch_version, req).await,
        }
    }

    /// [`Self::write`] through this store's own peer.
    pub async fn write_here(&self, region: u64, epoch_version: u64, req: WriteRequest) -> Result<WriteOutcome> {
        self.ask(region, |cb| PeerMsg::Write { req, epoch_version, cb }).await
    }

    /// Confirms leadership of `region` through ReadIndex and waits for the
    /// read index to apply (one attempt).
    pub async fn read_index(&self, region: u64) -> Result<()> {
        self.ask(region, |cb| PeerMsg::ReadIndex { cb }).await
    }

    /// Proposes `cmd` as it is in `region` (a txn step, a lease change; one
    /// attempt); whether it took effect.
    pub async fn propose(&self, region: u64, epoch_version: u64, cmd: RaftCommand) -> Result<bool> {
        if region == self.meta_region {
            return self.propose_here(region, epoch_version, cmd).await;
        }
        match self.ask_leader(region, epoch_version, || RegionKind::Command(cmd.clone())).await? {
            Some(resp) => Ok(matches!(resp.result, Some(Answer::TookEffect(true)))),
            None => self.propose_here(region, epoch_version, cmd).await,
        }
    }

    /// [`Self::propose`] through this store's own peer.
    pub async fn propose_here(&self, region: u64, epoch_version: u64, cmd: RaftCommand) -> Result<bool> {
        self.ask(region, |cb| PeerMsg::Command { cmd, epoch_version, cb }).await
    }

    /// Every cross-region txn lock held (applied) in any region, and every
    /// txn record: what recovery must resolve.
    pub fn txn_state(&self) -> Result<(Vec<(u64, TxnLock)>, Vec<TxnRecord>)> {
        let meta = self.engine.meta();
        let corrupt = |e: prost::DecodeError| Error::Storage(format!("corrupt txn state: {e}"));
        let mut locks = Vec::new();
        for item in self.engine.db.prefix_iterator_cf(meta, [keys::LOCK_PREFIX]) {
            let (k, v) = item?;
            if k.first() != Some(&keys::LOCK_PREFIX) || k.len() != 17 {
                break;
            }
            let region = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes"));
            locks.push((region, TxnLock::decode(&v[..]).map_err(corrupt)?));
        }
        let mut records = Vec::new();
        for item in self.engine.db.prefix_iterator_cf(meta, [keys::RECORD_PREFIX]) {
            let (k, v) = item?;
            if k.first() != Some(&keys::RECORD_PREFIX) || k.len() != 9 {
                break;
            }
            records.push(TxnRecord::decode(&v[..]).map_err(corrupt)?);
        }
        Ok((locks, records))
    }

    /// Compacts `region`'s history below `revision` through its log.
    pub async fn compact_region(&self, region: u64, revision: u64) -> Result<()> {
        if self.ask_leader(region, 0, || RegionKind::Compact(revision)).await?.is_some() {
            return Ok(());
        }
        self.compact_here(region, revision).await
    }

    /// [`Self::compact_region`] through this store's own peer.
    pub async fn compact_here(&self, region: u64, revision: u64) -> Result<()> {
        self.ask(region, |cb| PeerMsg::Compact { revision, cb }).await
    }

    /// Asks the leader of `region`, wherever it is, to hand leadership to
    /// the peer on store `to` (its lease ends at once).
    pub async fn transfer_leader(&self, region: u64, to: u64) -> Result<()> {
        if self.ask_leader(region, 0, || RegionKind::TransferTo(to)).await?.is_some() {
            return Ok(());
        }
        self.transfer_here(region, to)
    }

    /// [`Self::transfer_leader`] through this store's own peer.
    pub fn transfer_here(&self, region: u64, to: u64) -> Result<()> {
        self.peer(region)?.mailbox.send(PeerMsg::TransferLeader { to }).map_err(|_| Error::Stopped)
    }

    /// Brings the leadership of `region` to this store's peer and waits
    /// (bounded) until it may propose: admin steps (split, merge, conf
    /// change) run at the leader store, where the router is.
    pub async fn gather(&self, region: u64) -> Result<()> {
        self.move_leader(region, self.store_id, GATHER_TIMEOUT).await
    }

    /// Asks the leader of `region` to hand over to store `to` until this
    /// store sees `to` lead (for this store itself: lead and may propose),
    /// for at most `within`.
    pub async fn move_leader(&self, region: u64, to: u64, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let shared = self.peer(region)?.shared;
            let leader = shared.leader.load(Ordering::Acquire);
            let done = if to == self.store_id { shared.leading.load(Ordering::Acquire) } else { leader == to };
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(if to == self.store_id { Error::NotLeader { region } } else { Error::Timeout });
            }
            if leader != 0 && leader != to {
                if let Err(e) = self.transfer_leader(region, to).await {
                    tracing::debug!(region, to, "moving the leadership: {e}");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether this store's sequencer hands out revisions (it is the
    /// activated leader store, or a single store).
    pub fn is_evaluating(&self) -> bool {
        self.context.evaluating.load(Ordering::Acquire)
    }

    /// Per-region lines for /metrics.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP tessera_region_lease_valid Whether the region's leader lease is valid on this store.\n# TYPE tessera_region_lease_valid gauge");
        for r in self.regions() {
            let valid = self.context.peers.get(&r.id).is_some_and(|p| p.shared.lease.is_valid());
            let _ = writeln!(out, "tessera_region_lease_valid{{region=\"{}\"}} {}", r.id, valid as u8);
        }
        let leaders = self.context.peers.iter().filter(|p| p.shared.is_leader.load(Ordering::Relaxed)).count();
        let _ = writeln!(
            out,
            "# HELP tessera_regions Regions on this store.\n# TYPE tessera_regions gauge\ntessera_regions {}",
            self.context.peers.len()
        );
        let _ = writeln!(out, "# HELP tessera_region_leaders Regions led by this store.\n# TYPE tessera_region_leaders gauge\ntessera_region_leaders {leaders}");
        let _ = writeln!(
            out,
            "# HELP tessera_revision The last revision handed out.\n# TYPE tessera_revision gauge\ntessera_revision {}",
            self.sequencer.last()
        );
    }

    /// Stops the timer and the pollers (after their current round).
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.timer.lock().take() {
            let _ = t.join();
        }
        if let Some(mut s) = self.system.lock().take() {
            s.shutdown();
        }
        self.set_evaluating(false);
        self.set_serving(false);
        // Peers hold the store context that holds them: break the cycle so
        // that RocksDB closes (a restart in the same process reopens it).
        self.context.peers.clear();
        let _ = self.engine.db.flush_wal(true);
    }
}

/// What a data dir holds (or a bootstrap wrote).
struct Booted {
    regions: Vec<Region>,
    cluster_id: u64,
    store_id: u64,
    members: MemberSet,
}

fn load_or_bootstrap(engine: &Engine, cfg: &StoreConfig) -> Result<Booted> {
    let mut regions = Vec::new();
    let prefix = [keys::REGION_PREFIX];
    for item in engine.db.prefix_iterator_cf(engine.meta(), prefix) {
        let (k, v) = item?;
        if k.first() != Some(&keys::REGION_PREFIX) || k.len() != 9 {
            break;
        }
        regions.push(Region::decode(&v[..]).map_err(|e| Error::Storage(format!("corrupt region: {e}")))?);
    }
    if let Some(b) = engine.db.get_cf(engine.meta(), keys::CLUSTER)? {
        let cluster_id =
            u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::Storage("corrupt cluster id".into()))?);
        if !cfg.initial_split_keys.is_empty() && !regions.is_empty() {
            tracing::info!("data dir already holds {} regions; --initial-split-keys ignored", regions.len());
        }
        let store_id = super::members::load_store_id(engine)?.unwrap_or(cfg.store_id);
        let members = match super::members::load(engine)? {
            Some(set) => set,
            None => members_of_old_data_dir(engine, cfg, &mut regions, cluster_id)?,
        };
        return Ok(Booted { regions, cluster_id, store_id, members });
    }
    let mut wb = rocksdb::WriteBatch::default();
    let booted = if let Some((cluster_id, members)) = &cfg.join {
        // Its regions (the meta group's too) arrive as snapshots.
        Booted { regions: Vec::new(), cluster_id: *cluster_id, store_id: cfg.store_id, members: members.clone() }
    } else {
        let initial = initial_members(cfg);
        let stores: Vec<u64> = initial.iter().map(|m| m.store_id).collect();
        let mut regions = crate::region::initial_regions(&cfg.initial_split_keys, &stores);
        let meta = crate::region::meta_region(regions.len() as u64 + 1, &stores);
        // Every member of a new cluster must derive the same id on its own.
        let cluster_id = if initial.len() > 1 { cluster_id_of(&initial) } else { random_id() };
        let members = member_set(initial, cluster_id, meta.id);
        regions.push(meta);
        for r in &regions {
            storage::init_peer(engine, r, &ApplyState::default(), &mut wb)?;
        }
        Booted { regions, cluster_id, store_id: cfg.store_id, members }
    };
    super::members::write(engine, &booted.members, &mut wb);
    super::members::write_store_id(engine, booted.store_id, &mut wb);
    // Written last in the same batch: its presence means bootstrap finished.
    wb.put_cf(engine.meta(), keys::CLUSTER, booted.cluster_id.to_be_bytes());
    engine.write(wb, true)?;
    let (regions, cluster_id) = (booted.regions.len(), booted.cluster_id);
    tracing::info!(regions, cluster_id, store = booted.store_id, "bootstrapped a new store");
    Ok(booted)
}

/// The members of a data dir written before they were recorded: the stores
/// its regions have peers on, named by the flags (which must agree).
fn members_of_old_data_dir(
    engine: &Engine,
    cfg: &StoreConfig,
    regions: &mut Vec<Region>,
    cluster_id: u64,
) -> Result<MemberSet> {
    let initial = initial_members(cfg);
    let mut want: Vec<u64> = initial.iter().map(|m| m.store_id).collect();
    want.sort();
    let mut have: Vec<u64> = regions.first().map(|r| r.peers.iter().map(|p| p.store_id).collect()).unwrap_or_default();
    have.sort();
    if have != want {
        return Err(Error::Storage(format!(
            "the data dir holds a cluster of stores {have:?}, but the members given are stores {want:?}"
        )));
    }
    if !regions.iter().any(|r| r.meta) {
        // A data dir from before the meta group existed.
        let meta = crate::region::meta_region(regions.iter().map(|r| r.id).max().unwrap_or(0) + 1, &want);
        engine.db.put_cf(engine.meta(), keys::region(meta.id), meta.encode_to_vec())?;
        regions.push(meta);
    }
    let members = member_set(initial, cluster_id, regions.iter().find(|r| r.meta).map_or(0, |r| r.id));
    let mut wb = rocksdb::WriteBatch::default();
    super::members::write(engine, &members, &mut wb);
    super::members::write_store_id(engine, cfg.store_id, &mut wb);
    engine.write(wb, true)?;
    Ok(members)
}

/// The members `--initial-cluster` names (a single store: itself).
fn initial_members(cfg: &StoreConfig) -> Vec<StoreMember> {
    if cfg.members.is_empty() {
        vec![StoreMember { store_id: cfg.store_id, name: cfg.name.clone(), ..Default::default() }]
    } else {
        cfg.members.clone()
    }
}

/// The bootstrap member set: ids from names and the cluster id.
fn member_set(initial: Vec<StoreMember>, cluster_id: u64, meta_region: u64) -> MemberSet {
    let next_store_id = initial.iter().map(|m| m.store_id).max().unwrap_or(0) + 1;
    let members = initial
        .into_iter()
        .map(|m| StoreMember { member_id: super::members::member_id(&m.name, cluster_id), ..m })
        .collect();
    MemberSet { members, next_store_id, meta_region }
}

/// A cluster's id from its members (the same on every member).
fn cluster_id_of(members: &[StoreMember]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in members {
        (m.store_id, &m.name, &m.peer_url).hash(&mut h);
    }
    h.finish().max(1)
}

fn load_high_mark(engine: &Engine) -> Result<u64> {
    match engine.db.get_cf(engine.meta(), keys::HIGH_MARK)? {
        Some(b) => {
            Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::Storage("corrupt high mark".into()))?))
        }
        None => Ok(0),
    }
}

/// A random non-zero id (cluster ids need only be unlikely to collide).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// Vote requests kept for regions not created here yet: for how long, for
/// how many regions, how many each (see [`StoreContext::deliver`]).
const EARLY_VOTE_TTL: Duration = Duration::from_secs(3);
const EARLY_VOTE_REGIONS: usize = 1024;
const EARLY_VOTES_PER_REGION: usize = 8;

fn start_timer(store: &Arc<Store>, interval: Duration) -> JoinHandle<()> {
    let store = Arc::downgrade(store);
    std::thread::Builder::new()
        .name("store-timer".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(store) = store.upgrade() else { return };
            if store.stop.load(Ordering::Acquire) {
                return;
            }
            store.context.ticks.fetch_add(1, Ordering::Relaxed);
            for p in store.context.peers.iter() {
                if p.shared.awake.load(Ordering::Relaxed) {
                    let _ = p.mailbox.send(PeerMsg::Tick);
                }
            }
        })
        .expect("spawn store timer")
}

impl StoreContext {
    /// Starts a peer for `region` from its loaded state and makes it
    /// routable; `campaign` asks it to run for leader at once.
    pub fn add_peer(self: &Arc<Self>, region: Region, loaded: storage::LoadedPeer, campaign: bool) -> Result<()> {
        let (tx, rx) = channel::unbounded();
        let fsm = PeerFsm::new(region.clone(), loaded, rx.clone(), self.clone())?;
        let shared = fsm.shared.clone();
        let mailbox = self.registrar.register(Box::new(fsm), tx, rx);
        if campaign {
            let _ = mailbox.send(PeerMsg::Campaign);
        }
        self.next_region_id.fetch_max(region.id + 1, Ordering::AcqRel);
        let id = region.id;
        self.peers.insert(id, PeerHandle { region: Arc::new(region), shared, mailbox: mailbox.clone() });
        self.regions_version.fetch_add(1, Ordering::AcqRel);
        self.missing.lock().remove(&id);
        for (_, m) in self.early_votes.lock().remove(&id).unwrap_or_default() {
            let _ = mailbox.send(PeerMsg::Raft(Box::new(m)));
        }
        Ok(())
    }

    /// A raft message for `region`. A region not here yet is mostly one
    /// whose split this store has not applied yet: its vote requests wait
    /// for it (the leader store's new peer campaigns the moment it applied
    /// the split, and a lost vote would cost it an election timeout). One
    /// still missing a while later is created from a snapshot (see
    /// [`StoreContext::missing_region`]).
    pub fn deliver(self: &Arc<Self>, region: u64, msg: raft::prelude::Message) {
        use raft::prelude::MessageType::{MsgRequestPreVote, MsgRequestVote};
        if let Some(p) = self.peers.get(&region) {
            let _ = p.mailbox.send(PeerMsg::Raft(Box::new(msg)));
            return;
        }
        if !matches!(msg.get_msg_type(), MsgRequestPreVote | MsgRequestVote) {
            self.missing_region(region, msg);
            return;
        }
        let mut early = self.early_votes.lock();
        // Checked again under the lock add_peer drains it with.
        if let Some(p) = self.peers.get(&region) {
            let _ = p.mailbox.send(PeerMsg::Raft(Box::new(msg)));
            return;
        }
        let now = Instant::now();
        early.retain(|_, votes| {
            votes.retain(|(at, _)| now.duration_since(*at) < EARLY_VOTE_TTL);
            !votes.is_empty()
        });
        if early.len() < EARLY_VOTE_REGIONS {
            let votes = early.entry(region).or_default();
            votes.truncate(EARLY_VOTES_PER_REGION - 1);
            votes.push((now, msg));
        }
    }

    /// Asks the leader store for a revision for the write the leader of
    /// `region` in `term` evaluates; the answer comes as
    /// [`PeerMsg::Revision`].
    pub fn ask_revision(&self, region: u64, term: u64, seq: u64) {
        let Some(mailbox) = self.peers.get(&region).map(|p| p.mailbox.clone()) else { return };
        let answer = move |result| {
            let _ = mailbox.send(PeerMsg::Revision { term, seq, result });
        };
        let leader = self.meta_leader.load(Ordering::Acquire);
        match &self.transport {
            Some(t) if leader != 0 && leader != self.store_id => {
                let req =
                    AllocateRequest { from_store: self.store_id, region_id: region, term, seq, voids: Vec::new() };
                t.ask_revision(leader, req, answer);
            }
            // No leader store known, or it is this one and not activated yet.
            _ => answer(Err(Error::NotLeader { region: self.meta_region })),
        }
    }

    /// A revision taken and never to be used: it leaves the in-flight set
    /// of the sequencer that handed it out.
    pub fn void(&self, revision: u64) {
        self.sequencer.finish(revision);
        let leader = self.meta_leader.load(Ordering::Acquire);
        if let Some(t) = &self.transport {
            if leader != 0 && leader != self.store_id {
                t.void(leader, self.store_id, revision);
            }
        }
    }

    /// A region's new shape (its peer already applied it).
    pub fn region_changed(&self, region: Region) {
        if let Some(mut p) = self.peers.get_mut(&region.id) {
            p.region = Arc::new(region);
        }
        self.regions_version.fetch_add(1, Ordering::AcqRel);
    }

    /// After a split applied and persisted: a peer for the right part (its
    /// state was written with the split).
    pub fn split_applied(self: &Arc<Self>, right: Region, campaign: bool) {
        let _creating = self.creating.lock();
        if self.peers.contains_key(&right.id) {
            // Created from a snapshot a moment ago (which wrote over the
            // state the split wrote).
            return;
        }
        let loaded = storage::load(&self.engine, &right);
        if let Err(e) = loaded.and_then(|loaded| self.add_peer(right, loaded, campaign)) {
            // The split is persisted: serving on without the right part would
            // leave its keys without a region.
            tracing::error!("starting the right region of a split: {e}");
            eprintln!("tessera: cannot start the new region of a split ({e}); aborting");
            std::process::abort();
        }
    }

    /// After a snapshot of `region` is written here (a peer restored, or a
    /// region created from one): the lessor re-reads what it replaced; the
    /// meta group's high mark and member set take effect.
    pub fn snapshot_written(&self, region: &Region, high_mark: Option<u64>, members: Option<MemberSet>) {
        let reloaded = if region.meta {
            self.lessor.reload_leases(&self.engine)
        } else {
            self.lessor.reattach(&self.engine, region)
        };
        if let Err(e) = reloaded {
            tracing::error!(region = region.id, "lessor after a snapshot: {e}");
        }
        if let Some(mark) = high_mark {
            self.sequencer.raise_limit(mark);
        }
        if let Some(set) = members {
            self.members_changed(set);
        }
    }

    /// A member set the meta group applied (or a snapshot of it brought):
    /// the transport's links follow it; a set without this store means
    /// it was removed.
    pub fn members_changed(&self, set: MemberSet) {
        if let Some(t) = &self.transport {
            t.set_links(&super::members::peer_urls(&set));
        }
        let removed = !set.members.iter().any(|m| m.store_id == self.store_id);
        *self.members.write() = set;
        if removed {
            tracing::warn!("this store was removed from the cluster");
            self.removed.notify_one();
        }
    }

    /// After a merge committed and persisted: the source's peer stops and goes.
    pub fn source_merged(&self, source: u64) {
        if let Some((_, p)) = self.peers.remove(&source) {
            let _ = p.mailbox.send(PeerMsg::Destroy);
        }
        self.regions_version.fetch_add(1, Ordering::AcqRel);
    }
}
