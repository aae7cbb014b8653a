//! A store: one RocksDB, the sequencer, and one peer per region driven by
//! the batch system.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use prost::Message as _;
use tokio::sync::oneshot;

use super::batch::{BatchConfig, BatchSystem, Mailbox};
use super::msg::{PeerMsg, WriteOutcome};
use super::peer::{PeerFsm, PeerShared, StoreContext};
use super::poller::RaftPoller;
use super::revisions::RevisionClient;
use super::transport::Transport;
use super::{storage, RaftConfig};
use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::lessor::Lessor;
use crate::proto::tesserapb::{ApplyState, MemberSet, RaftCommand, Region, StoreInfo, StoreMember, TxnLock, TxnRecord};
use crate::region::eval::WriteRequest;
use crate::sequencer::{Sequencer, NEVER_COMPACTED};

mod boot;
mod client;
mod context;
mod read;
mod regions;
mod scrape;
mod timer;

pub use client::RegionClient;
pub use read::PieceRead;

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
    /// How this store dials the others' peer URLs (TLS per the peer flags).
    pub peer_dialer: crate::tls::client::Dialer,
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
            peer_dialer: Default::default(),
        }
    }
}

/// Writes a new store's bootstrap into `engine` as [`Store::open`] would,
/// without starting it (`tessera snapshot restore` fills it in before the
/// first start); the regions made. Refuses a data dir that holds a store.
pub fn bootstrap(engine: &Engine, cfg: &StoreConfig) -> Result<Vec<Region>> {
    if engine.db.get_cf(engine.meta(), keys::CLUSTER)?.is_some() {
        return Err(Error::Storage("the data dir already holds a store".into()));
    }
    Ok(boot::load_or_bootstrap(engine, cfg)?.regions)
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
    /// For /metrics' etcd_debugging_mvcc_keys_total.
    keys_counted: crate::metrics::keys::KeyCount,
}

impl Store {
    /// Opens (or bootstraps) the store in `cfg.data_dir` and starts its threads.
    pub fn open(cfg: StoreConfig) -> Result<Arc<Store>> {
        cfg.raft.validate().map_err(Error::Storage)?;
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| Error::Storage(format!("{}: {e}", cfg.data_dir.display())))?;
        let engine = Engine::open(&cfg.data_dir)?;
        let boot::Booted { regions, cluster_id, store_id, members, fresh } = boot::load_or_bootstrap(&engine, &cfg)?;
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

        let opening = Instant::now();
        let mut loaded = Vec::with_capacity(regions.len());
        let mut last = 0;
        let mut unapplied = Vec::new();
        let peers = if fresh {
            let fresh = |r: Region| storage::fresh(&engine, &r, &ApplyState::default()).map(|p| (r, p));
            regions.into_iter().map(fresh).collect::<Result<Vec<_>>>()?
        } else {
            storage::load_all(&engine, regions)?
        };
        for (region, peer) in peers {
            last = last.max(peer.apply_state.max_revision);
            last = peer.unapplied_revisions.iter().fold(last, |m, r| m.max(*r));
            unapplied.extend_from_slice(&peer.unapplied_revisions);
            loaded.push((region, peer));
        }
        // An empty etcd store is at revision 1; its first write gets 2.
        let sequencer = Arc::new(Sequencer::recover(last.max(1), unapplied, compacted));
        let transport = if clustered {
            sequencer.set_limit(boot::load_high_mark(&engine)?);
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
            Some(Arc::new(
                Transport::start(me, &peers, cfg.peer_dialer.clone())
                    .map_err(|e| Error::Storage(format!("peer transport: {e}")))?,
            ))
        } else {
            None
        };

        let batch_cfg = BatchConfig { pollers: cfg.pollers, max_batch: 256 };
        let system = BatchSystem::start("raft-poller", &batch_cfg, || RaftPoller {
            engine: engine.clone(),
            sequencer: sequencer.clone(),
            transport: transport.clone(),
        });
        let known = loaded.iter().flat_map(|(r, p)| p.split_ids.iter().copied().chain([r.id])).max();
        let region_ids = super::region_ids::RegionIds::open(&engine, store_id, known.unwrap_or(0))?;
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
            region_ids,
            meta_region,
            meta_leader: AtomicU64::new(0),
            evaluating: AtomicBool::new(!clustered),
            serving: AtomicBool::new(!clustered),
            revisions: transport.as_ref().map(|t| RevisionClient::new(t.clone(), store_id)),
            transport,
            ticks: AtomicU64::new(0),
            early_votes: Default::default(),
            missing: Default::default(),
            creating: Default::default(),
            awake: Default::default(),
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
        let (count, read) = (loaded.len(), opening.elapsed());
        for (region, peer) in loaded {
            // A single voter leads at once; several wait for an election.
            let campaign = region.peers.len() == 1;
            context.add_peer(region, peer, campaign)?;
        }
        let (read_ms, started_ms) = (read.as_millis() as u64, opening.elapsed().as_millis() as u64);
        tracing::info!(regions = count, fresh, read_ms, started_ms, "peers started");
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
            keys_counted: Default::default(),
        });
        *store.timer.lock() = Some(timer::start(&store, cfg.raft.tick_interval));
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

    /// `n` region ids no region anywhere in the cluster has had or will
    /// take otherwise (src/raftstore/region_ids.rs).
    pub fn alloc_region_ids(&self, n: usize) -> Result<Vec<u64>> {
        self.context.region_ids.take(&self.engine, n)
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

    /// [`Self::write`] through this store's own peer.
    /// `router`: the store whose router sent the write.
    pub async fn write_here(
        &self,
        region: u64,
        epoch_version: u64,
        req: WriteRequest,
        router: u64,
    ) -> Result<WriteOutcome> {
        self.ask(region, |cb| PeerMsg::Write { req, epoch_version, router, cb }).await
    }

    /// Confirms leadership of `region` through ReadIndex and waits for the
    /// read index to apply (one attempt).
    pub async fn read_index(&self, region: u64) -> Result<()> {
        self.ask(region, |cb| PeerMsg::ReadIndex { cb }).await
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

    /// [`Self::compact_region`] through this store's own peer.
    pub async fn compact_here(&self, region: u64, revision: u64) -> Result<()> {
        self.ask(region, |cb| PeerMsg::Compact { revision, cb }).await
    }

    /// [`Self::transfer_leader`] through this store's own peer.
    pub fn transfer_here(&self, region: u64, to: u64) -> Result<()> {
        self.peer(region)?.mailbox.send(PeerMsg::TransferLeader { to }).map_err(|_| Error::Stopped)
    }

    /// Whether this store's sequencer hands out revisions (it is the
    /// activated leader store, or a single store).
    pub fn is_evaluating(&self) -> bool {
        self.context.evaluating.load(Ordering::Acquire)
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
