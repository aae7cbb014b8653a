//! A region's peer: its raft-rs `RawNode`, the leader's evaluation of
//! writes, and the application of committed entries.
//!
//! Only the poller thread that holds the FSM touches it, so the FSM itself is
//! the latch for its keys: evaluation reads the applied state plus the
//! effects of proposals still in flight (the overlay), and requests on
//! different keys pipeline through the log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use raft::prelude::{MessageType, Ready};
use raft::{RawNode, StateRole};
use rocksdb::WriteBatch;

use super::batch::{Inbox, Registrar};
use super::msg::{CommandCallback, DoneCallback, PeerMsg, WriteCallback};
use super::storage;
use super::RaftConfig;

mod admin;
mod apply;
mod conf;
mod read;
mod ready;
mod restore;
mod write;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::lease::LeaderLease;
use crate::lessor::Lessor;
use crate::proto::mvccpb::KeyValue;
use crate::proto::tesserapb::{ApplyState, Compaction, RaftCommand, Region, Span, TruncatedState};
use crate::region::eval::{self, KvView, WriteResponse};
use crate::region::mvcc::{MvccReader, ScanOptions};
use crate::region::span;
use crate::sequencer::Sequencer;

/// State of a peer that other threads read without going through the mailbox.
#[derive(Debug, Default)]
pub struct PeerShared {
    pub lease: LeaderLease,
    pub is_leader: AtomicBool,
    pub term: AtomicU64,
    /// Whether the store timer should send this peer ticks.
    pub awake: AtomicBool,
    /// The last applied raft index (for status reports).
    pub applied_index: AtomicU64,
    /// Leads and has applied an entry of its term (may evaluate).
    pub leading: AtomicBool,
    /// The highest revision the region has applied.
    pub max_revision: AtomicU64,
    /// The newest leader store term whose revision fence this peer applied.
    pub fence_term: AtomicU64,
    /// The store whose peer leads the region, as far as this peer knows (0: none).
    pub leader: AtomicU64,
    /// Proposals not yet answered (as of the last round).
    pub pending: AtomicU64,
}

enum PendingKind {
    Write {
        revision: Option<u64>,
        keys: Vec<Vec<u8>>,
        response: WriteResponse,
        cb: WriteCallback,
    },
    Compact {
        cb: DoneCallback,
    },
    /// A write that changed nothing but read in-flight effects: answered once
    /// they are applied.
    Wait {
        response: WriteResponse,
        cb: WriteCallback,
    },
    /// A command proposed as it is (a cross-region txn step, a lease
    /// change, a split or merge step); `lock` is the txn id of a lock
    /// proposed (forgotten again if the proposal does not commit); `admin`
    /// marks a split or merge step.
    Command {
        lock: Option<u64>,
        admin: bool,
        cb: CommandCallback,
    },
}

struct Pending {
    index: u64,
    term: u64,
    kind: PendingKind,
}

/// Work a poll round finishes after the apply batch is written.
#[derive(Default)]
pub struct ApplyContext {
    pub wb: WriteBatch,
    /// Revisions applied this round, finished in the sequencer after the write.
    pub revisions: Vec<u64>,
    /// (region, term) whose first entry applied this round: the sequencer
    /// voids the older terms' revisions after the write, never before it
    /// (an older term's write applied earlier in the same round would
    /// otherwise be resolved before it is readable: a watch gap).
    pub terms_started: Vec<(u64, u64)>,
    /// (region, revision): a snapshot brought the region's data up to the
    /// revision, or (region, u64::MAX) the region was merged away here;
    /// what its leaders took at or below it is applied or void.
    pub restored: Vec<(u64, u64)>,
    pub acks: Vec<Box<dyn FnOnce() + Send>>,
    /// (region, revision) compactions to run after the write.
    pub compactions: Vec<(Region, u64)>,
    /// Raft messages to other stores: (region, message).
    pub messages: Vec<(u64, raft::prelude::Message)>,
}

pub struct PeerFsm {
    pub region: Region,
    raft: RawNode<storage::PeerStorage>,
    pub inbox: Arc<Inbox<PeerMsg>>,
    engine: Engine,
    pub shared: Arc<PeerShared>,
    sequencer: Arc<Sequencer>,
    apply_state: ApplyState,
    truncated: TruncatedState,
    log_gc_threshold: u64,
    /// Effects proposed but not yet applied, newest per key: (revision, kv).
    overlay: BTreeMap<Vec<u8>, (u64, Option<KeyValue>)>,
    pending: VecDeque<Pending>,
    /// Cross-region txn locks, txn id -> spans: applied ones (persisted) and,
    /// on the leader, proposed ones. Writes overlapping them are refused.
    locks: BTreeMap<u64, Vec<Span>>,
    /// The entry being applied was refused by the revision fence (see
    /// [`Self::fenced`]): its proposer is answered `Fenced`.
    fenced_entry: bool,
    /// The newest `leader_store_term` this leader proposed in its term: a
    /// write of an older one would be fenced at apply, after later writes
    /// were evaluated on top of it, so it is refused before it is proposed
    /// (docs/cluster.md, "Revision fencing").
    fence_proposed: u64,
    /// ReadIndex requests raft has not answered yet: ctx -> (callback, ticks waited).
    reads: HashMap<u64, (DoneCallback, u32)>,
    /// Confirmed reads waiting for their index to apply.
    waiting_reads: Vec<(u64, DoneCallback)>,
    next_read_ctx: u64,
    /// The Ready being persisted in this round (boxed, as the rarer fields
    /// below: an idle peer holds none, and 100,000 idle peers are many).
    ready: Option<Box<Ready>>,
    /// A truncation to persist with the next raft write.
    gc: Option<(u64, TruncatedState)>,
    store: Arc<StoreContext>,
    /// A split or merge step proposed here and not yet applied: no other
    /// one, and no txn lock, is taken until it is.
    admin_pending: bool,
    /// Merged away: every message is answered with `RegionNotFound`.
    destroyed: bool,
    /// Lease rounds (ReadIndex rounds that renew the leader lease) raft has
    /// not answered yet: round -> send time.
    lease_rounds: HashMap<u64, Instant>,
    /// The last lease round sent (rounds are the store's, see
    /// [`StoreContext::lease_round`]).
    last_lease_round: u64,
    /// The applied index at which a log truncation was last proposed.
    truncate_proposed: u64,
    /// Restored from a snapshot in this round (the store is told once
    /// written).
    restored: Option<Box<restore::Restored>>,
    /// Writes waiting for revisions from the leader store.
    asks: write::Asks,
    /// Reads at a revision waiting for the region's state at it.
    reads_at: Vec<read::ReadAt>,
}

/// A lease round's ReadIndex context: this tag, then the round's number
/// (a client read's context is its 8-byte number). Every region leader of a
/// store sends round N in the same tick with the same context, so their
/// heartbeats travel as one group (docs/cluster.md, "Store heartbeats").
const LEASE_ROUND: u8 = b'L';

/// A region's log is truncated up to what every voter has once that is a
/// threshold long (`RaftConfig::log_gc_threshold`); when a voter lags so
/// far that the log is this many thresholds long, it is truncated anyway,
/// leaving one threshold, and the voter catches up by a snapshot.
const LOG_MAX_THRESHOLDS: u64 = 4;

/// What every peer of a store shares.
pub struct StoreContext {
    pub engine: Engine,
    pub sequencer: Arc<Sequencer>,
    pub store_id: u64,
    pub raft: RaftConfig,
    /// The highest raft term of any region on this store (response headers
    /// read it on every request, so it is kept here rather than computed).
    pub max_term: AtomicU64,
    pub lessor: Arc<Lessor>,
    /// Every region's peer on this store, by region id.
    pub peers: dashmap::DashMap<u64, super::PeerHandle>,
    pub registrar: Registrar<PeerFsm>,
    /// See [`super::Store::regions_version`].
    pub regions_version: AtomicU64,
    /// The ids new regions of a split take.
    pub region_ids: crate::raftstore::region_ids::RegionIds,
    /// The meta group's region id.
    pub meta_region: u64,
    /// The store whose meta peer leads: the leader store (0: unknown).
    pub meta_leader: AtomicU64,
    /// This store may take revisions (it is the leader store and its
    /// sequencer restarted; docs/cluster.md "Activation"). Always on a
    /// single store.
    pub evaluating: AtomicBool,
    /// This store answers client requests (recovery after activation is
    /// done); otherwise they are forwarded to the leader store.
    pub serving: AtomicBool,
    /// Links to the other stores of a cluster (none on a single store).
    pub transport: Option<Arc<super::transport::Transport>>,
    /// Asks for revisions from the leader store (none on a single store).
    pub revisions: Option<Arc<super::revisions::RevisionClient>>,
    /// Ticks of the store timer so far: every region leader starts lease
    /// round `ticks / heartbeat_ticks` in the same tick.
    pub ticks: AtomicU64,
    /// Vote requests for regions a split will create here (see
    /// `StoreContext::deliver`), with their arrival time.
    pub early_votes: parking_lot::Mutex<HashMap<u64, Vec<(Instant, raft::prelude::Message)>>>,
    /// Regions other stores talk about that this one lacks, since when.
    pub missing: parking_lot::Mutex<HashMap<u64, Instant>>,
    /// Held while a region's peer is created (by a split or a snapshot).
    pub creating: parking_lot::Mutex<()>,
    /// The regions whose peers want ticks (`PeerShared::awake`).
    pub awake: parking_lot::Mutex<std::collections::HashSet<u64>>,
    /// The cluster's members as the meta group here applied them.
    pub members: parking_lot::RwLock<crate::proto::tesserapb::MemberSet>,
    /// Notified once this store learns it was removed from the cluster.
    pub removed: tokio::sync::Notify,
}

impl StoreContext {
    /// The lease round this store's region leaders are in.
    pub fn lease_round(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed) / self.raft.heartbeat_ticks as u64
    }
}

impl crate::raftstore::batch::Fsm for PeerFsm {
    type Message = PeerMsg;
}

impl PeerFsm {
    pub fn new(
        region: Region,
        loaded: storage::LoadedPeer,
        inbox: Arc<Inbox<PeerMsg>>,
        store: Arc<StoreContext>,
    ) -> Result<PeerFsm> {
        let cfg = &store.raft;
        let raft_cfg = raft::Config {
            id: store.store_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: loaded.apply_state.applied_index,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        raft_cfg.validate().map_err(|e| Error::Storage(format!("raft config: {e}")))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raft = RawNode::new(&raft_cfg, loaded.storage, &logger).map_err(|e| Error::Storage(e.to_string()))?;
        Ok(PeerFsm {
            region,
            raft,
            inbox,
            engine: store.engine.clone(),
            shared: Arc::new(PeerShared {
                awake: AtomicBool::new(true),
                applied_index: AtomicU64::new(loaded.apply_state.applied_index),
                max_revision: AtomicU64::new(loaded.apply_state.max_revision),
                fence_term: AtomicU64::new(loaded.apply_state.fence_term),
                ..Default::default()
            }),
            sequencer: store.sequencer.clone(),
            apply_state: loaded.apply_state,
            truncated: loaded.truncated,
            log_gc_threshold: cfg.log_gc_threshold,
            overlay: BTreeMap::new(),
            pending: VecDeque::new(),
            locks: loaded.locks,
            fenced_entry: false,
            fence_proposed: 0,
            reads: HashMap::new(),
            waiting_reads: Vec::new(),
            next_read_ctx: 1,
            ready: None,
            gc: None,
            store,
            admin_pending: false,
            destroyed: false,
            lease_rounds: HashMap::new(),
            last_lease_round: 0,
            truncate_proposed: 0,
            restored: None,
            asks: Default::default(),
            reads_at: Vec::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.region.id
    }

    fn is_leader(&self) -> bool {
        self.raft.raft.state == StateRole::Leader
    }

    fn single_voter(&self) -> bool {
        self.region.peers.len() == 1
    }

    /// A leader may evaluate writes once everything before its term applied.
    fn can_evaluate(&self) -> bool {
        self.is_leader() && self.apply_state.applied_term == self.raft.raft.term
    }

    /// Whether the store timer should tick this peer: an idle single-voter
    /// leader has nothing to time.
    fn wants_tick(&self) -> bool {
        !(self.is_leader() && self.single_voter()) || !self.reads.is_empty()
    }

    // ---- messages ---------------------------------------------------------

    pub fn handle(&mut self, max: usize) {
        for _ in 0..max {
            let Some(msg) = self.inbox.pop() else { break };
            if self.destroyed {
                msg.fail(Error::RegionNotFound);
                continue;
            }
            match msg {
                PeerMsg::Tick => self.on_tick(),
                PeerMsg::Campaign => {
                    let _ = self.raft.campaign();
                }
                PeerMsg::Write { req, epoch_version, router, cb } => self.on_write(req, epoch_version, router, cb),
                PeerMsg::Revision { term, seq, result } => self.on_revision(term, seq, result),
                PeerMsg::ReadIndex { cb } => self.on_read_index(cb),
                PeerMsg::ReadAt { revision, epoch_version, span, cb } => {
                    self.on_read_at(revision, epoch_version, span, cb)
                }
                PeerMsg::Compact { revision, cb } => self.on_compact(revision, cb),
                PeerMsg::Command { cmd, epoch_version, cb } => self.on_command(cmd, epoch_version, cb),
                PeerMsg::ChangePeer { cc, epoch_version, cb } => self.on_change_peer(cc, epoch_version, cb),
                PeerMsg::Destroy => self.destroy(),
                PeerMsg::CaughtUp { cb } => {
                    let _ = cb.send(self.caught_up());
                }
                PeerMsg::TransferLeader { to } => {
                    if self.is_leader() && to != self.store.store_id {
                        self.shared.lease.expire();
                        self.raft.transfer_leader(to);
                    }
                }
                PeerMsg::SnapshotSent { to, ok } => {
                    let status = if ok { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
                    self.raft.report_snapshot(to, status);
                }
                PeerMsg::Raft(m) => {
                    if m.get_msg_type() == MessageType::MsgSnapshot && !self.may_restore(&m) {
                        continue;
                    }
                    if let Err(e) = self.raft.step(*m) {
                        tracing::debug!(region = self.region.id, "raft message refused: {e}");
                    }
                }
            }
        }
        self.set_awake(self.wants_tick());
        self.shared.pending.store(self.pending.len() as u64, Ordering::Relaxed);
    }

    /// Tells the store timer whether to tick this peer (only a change
    /// touches the store's awake set).
    fn set_awake(&self, awake: bool) {
        if self.shared.awake.swap(awake, Ordering::Relaxed) != awake {
            self.store.awake_changed(self.region.id, awake);
        }
    }

    fn on_tick(&mut self) {
        self.raft.tick();
        if self.is_leader() && !self.single_voter() {
            self.send_lease_round();
            self.reclaim_ask();
        }
        // raft-rs drops a ReadIndex silently (e.g. before the leader has
        // committed in its term): give up after a few ticks, the router retries.
        let region = self.region.id;
        let stale: Vec<u64> = self
            .reads
            .iter_mut()
            .filter_map(|(ctx, (_, ticks))| {
                *ticks += 1;
                (*ticks > 3).then_some(*ctx)
            })
            .collect();
        for ctx in stale {
            if let Some((cb, _)) = self.reads.remove(&ctx) {
                let _ = cb.send(Err(Error::ProposalDropped { region }));
            }
        }
    }

    /// A leader with other voters renews its lease once per heartbeat
    /// interval: a ReadIndex round whose send time is remembered; raft
    /// answers it once a quorum acknowledged (docs/cluster.md, "Leader
    /// leases"). Its heartbeats are the region's only ones (see
    /// [`Self::outgoing`]).
    fn send_lease_round(&mut self) {
        let round = self.store.lease_round();
        if round <= self.last_lease_round || !self.can_evaluate() {
            return;
        }
        self.last_lease_round = round;
        let now = Instant::now();
        // Rounds never answered (a follower down, messages lost).
        self.lease_rounds.retain(|_, sent| now.duration_since(*sent) < Duration::from_secs(5));
        let mut ctx = vec![LEASE_ROUND];
        ctx.extend_from_slice(&round.to_be_bytes());
        self.raft.read_index(ctx);
        self.lease_rounds.insert(round, now);
    }

    /// Whether every other voter reported a commit index at least this
    /// leader's applied index. A follower applies what it learns committed
    /// in the same poll round, before that round's messages (which carry
    /// its commit index back) leave, so it has also applied it.
    fn caught_up(&self) -> Result<bool> {
        if !self.is_leader() {
            return Err(Error::NotLeader { region: self.region.id });
        }
        let applied = self.apply_state.applied_index;
        let me = self.raft.raft.id;
        Ok(self.raft.raft.prs().iter().all(|(id, pr)| *id == me || pr.committed_index >= applied))
    }

    /// Whether this peer may propose for a request routed by region
    /// version `epoch_version`: it leads (and applied its term's first
    /// entry) and the region has not changed shape since.
    fn check_proposer(&self, epoch_version: u64) -> Result<()> {
        let region = self.region.id;
        if !self.can_evaluate() {
            return Err(Error::NotLeader { region });
        }
        if epoch_version != self.epoch_version() || self.region.merging_into != 0 || self.admin_pending {
            // A merging source takes nothing until the merge commits or
            // rolls back (its rollback is proposed by `on_command`). While a
            // split or merge step is in flight nothing else is proposed:
            // it would apply after the epoch changed and be refused there,
            // wasting the revision it took. The router retries.
            return Err(Error::EpochNotMatch { region });
        }
        Ok(())
    }

    /// Whether `span` overlaps a lock of a txn other than `except`.
    fn locked(&self, span: &Span, except: Option<u64>) -> bool {
        self.locks.iter().any(|(txn, spans)| Some(*txn) != except && spans.iter().any(|l| span::overlaps(l, span)))
    }

    fn on_read_index(&mut self, cb: DoneCallback) {
        if !self.is_leader() {
            let _ = cb.send(Err(Error::NotLeader { region: self.region.id }));
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.raft.read_index(ctx.to_be_bytes().to_vec());
        self.reads.insert(ctx, (cb, 0));
    }

    fn on_compact(&mut self, revision: u64, cb: DoneCallback) {
        let region = self.region.id;
        if !self.can_evaluate() {
            let _ = cb.send(Err(Error::NotLeader { region }));
            return;
        }
        let cmd = RaftCommand {
            region_id: region,
            epoch: self.region.epoch,
            compaction: Some(Compaction { revision }),
            ..Default::default()
        };
        if self.raft.propose(vec![], cmd.encode_to_vec()).is_err() {
            let _ = cb.send(Err(Error::ProposalDropped { region }));
            return;
        }
        let index = self.raft.raft.raft_log.last_index();
        let term = self.raft.raft.term;
        self.pending.push_back(Pending { index, term, kind: PendingKind::Compact { cb } });
    }

    fn epoch_version(&self) -> u64 {
        self.region.epoch.as_ref().map_or(0, |e| e.version)
    }

    // ---- the poll round ---------------------------------------------------
}

/// The leader's latest view of its keys: applied data plus in-flight effects.
struct PeerView<'a> {
    reader: MvccReader<'a>,
    overlay: &'a BTreeMap<Vec<u8>, (u64, Option<KeyValue>)>,
    sequencer: &'a Sequencer,
    lessor: &'a Lessor,
}

impl KvView for PeerView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.overlay.get(key) {
            Some((_, kv)) => Ok(kv.clone()),
            None => self.reader.get(key, u64::MAX),
        }
    }

    fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<KeyValue>> {
        let scanned = self.reader.scan(start, end, u64::MAX, ScanOptions::default())?;
        Ok(eval::overlay_range(scanned.kvs, self.overlay, start, end, |(_, kv)| kv.as_ref()))
    }

    fn range_at(&self, key: &[u8], end: Option<Option<Vec<u8>>>, revision: i64) -> Result<Vec<KeyValue>> {
        // Current as far as this region is concerned: every write of this
        // region at or below it is applied or in the overlay. Historical
        // reads in a txn read applied data only.
        let at = self.sequencer.check_read(revision, self.sequencer.last())?;
        self.reader.read_at(key, end, at)
    }

    fn lease_exists(&self, id: i64) -> bool {
        self.lessor.exists(id)
    }
}
