//! Micro-benchmarks of hot paths: `cargo bench --bench hot_paths`
//! (`cargo test --release --benches` runs each once as a smoke test).
//!
//! | group | what |
//! |---|---|
//! | `leader_lease` | `LeaderLease::is_valid`: single-voter, time-bounded valid, expired, none; `valid_at` without the clock read |
//! | `router_10k_regions` | `RoutingTable::locate` / `point` / `split` over 10,000 regions |
//! | `mvcc` | storage key encode/decode (`region::keys`), stored value encode/decode (`region::mvcc`) |
//! | `batch_system` | the generic batch system alone: one message to one of N registered FSMs and back (per-round overhead with N-1 idle FSMs), and a burst of 256 |
//! | `store_write` | a real `Store`: one `Put` to one region while the other regions are idle (evaluate, propose, ONE fsync, apply, answer) |
//!
//! The store benches fsync for every write, so their times are the disk's.
//! The batch-system and store benches nudge an FSM whose answer stalls (see
//! `LostWakeups`) and print a warning saying how often they had to.
//! Expensive setup (stores, poller threads) happens only when a bench is
//! selected by the filter, and everything is shut down at the end of its group.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam::channel::{self, Receiver, Sender};
use tessera::lease::LeaderLease;
use tessera::proto::etcdserverpb::PutRequest;
use tessera::proto::mvccpb::KeyValue;
use tessera::raftstore::batch::{BatchConfig, BatchSystem, Fsm, Inbox, Mailbox, PollHandler};
use tessera::raftstore::msg::PeerMsg;
use tessera::raftstore::{Store, StoreConfig};
use tessera::region::eval::WriteRequest;
use tessera::region::mvcc::{decode_value, encode_value};
use tessera::region::{initial_regions, keys};
use tessera::router::table::RoutingTable;

/// A key shaped like the ones Kubernetes keeps in etcd.
const K8S_KEY: &[u8] = b"/registry/pods/default/nginx-7c5ddbdf54-abcde";

/// Default timing for the cheap benches, so that the whole run (21 benches)
/// stays under three minutes even on a busy 2-core machine: short windows
/// are plenty for nanosecond routines, and 20,000 bootstrap resamples
/// (criterion's default is 100,000, about 5 s of analysis per bench on such
/// a machine) still give stable confidence intervals. Groups that need more
/// set their own.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .nresamples(20_000)
}

// ---- 1. leader lease -------------------------------------------------------

fn lease_check(c: &mut Criterion) {
    let mut g = c.benchmark_group("leader_lease");

    // What every single-voter region holds: no clock arithmetic after `now`.
    let while_leader = LeaderLease::new();
    while_leader.hold_while_leader();
    assert!(while_leader.is_valid());
    g.bench_function("is_valid/while_leader", |b| b.iter(|| black_box(black_box(&while_leader).is_valid())));

    // A multi-voter lease renewed from a heartbeat round, still running.
    let renewed = LeaderLease::new();
    renewed.renew(Instant::now(), Duration::from_secs(3600));
    assert!(renewed.is_valid());
    g.bench_function("is_valid/renewed", |b| b.iter(|| black_box(black_box(&renewed).is_valid())));
    // The same without reading the clock: what `is_valid` costs beyond `Instant::now()`.
    let at = Instant::now();
    g.bench_function("valid_at/renewed", |b| b.iter(|| black_box(black_box(&renewed).valid_at(black_box(at)))));

    // The same, after it ran out: the read falls back to ReadIndex.
    let expired = LeaderLease::new();
    expired.renew(Instant::now(), Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    assert!(!expired.is_valid());
    g.bench_function("is_valid/expired", |b| b.iter(|| black_box(black_box(&expired).is_valid())));

    // Never held, or ended by a step-down.
    let none = LeaderLease::new();
    none.hold_while_leader();
    none.expire();
    assert!(!none.is_valid());
    g.bench_function("is_valid/none", |b| b.iter(|| black_box(black_box(&none).is_valid())));
    g.finish();
}

// ---- 2. router ---------------------------------------------------------------

const ROUTER_REGIONS: u64 = 10_000;
/// Regions a multi-region range crosses in `split/9_regions`.
const SPLIT_SPAN: u64 = 9;

fn region_key(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

/// Probe keys scattered over the table (a stride coprime with the region
/// count), built once so that no iteration pays for formatting a key.
fn probe_indices(n: usize, below: u64) -> Vec<u64> {
    (0..n as u64).map(|i| (i * 7919 + 13) % below).collect()
}

fn router_lookup(c: &mut Criterion) {
    let splits: Vec<Vec<u8>> = (1..ROUTER_REGIONS).map(region_key).collect();
    let table = RoutingTable::new(initial_regions(&splits, &[1]));
    assert_eq!(table.len() as u64, ROUTER_REGIONS);

    // `key{i}x` lies inside region i + 1 (region 1 is ["", key00000001)).
    let points: Vec<(Vec<u8>, u64)> = probe_indices(4096, ROUTER_REGIONS)
        .into_iter()
        .map(|i| {
            let mut k = region_key(i);
            k.push(b'x');
            (k, i + 1)
        })
        .collect();
    for (k, id) in &points {
        assert_eq!(table.locate(k).map(|r| r.id), Some(*id));
    }
    // `[key{i}x, key{i+SPAN-1}x)` crosses SPAN-1 boundaries: SPAN pieces.
    let multi_region: Vec<(Vec<u8>, Vec<u8>)> = probe_indices(4096, ROUTER_REGIONS - SPLIT_SPAN)
        .into_iter()
        .map(|i| {
            let (mut s, mut e) = (region_key(i), region_key(i + SPLIT_SPAN - 1));
            s.push(b'x');
            e.push(b'x');
            (s, e)
        })
        .collect();
    let one_region: Vec<(Vec<u8>, Vec<u8>)> = points
        .iter()
        .map(|(k, _)| {
            let mut e = k.clone();
            e.push(b'z');
            (k.clone(), e)
        })
        .collect();
    for (s, e) in &multi_region {
        assert_eq!(table.split(s, Some(e)).map(|p| p.len() as u64), Some(SPLIT_SPAN));
    }
    assert_eq!(table.split(&one_region[0].0, Some(&one_region[0].1)).map(|p| p.len()), Some(1));

    let mut g = c.benchmark_group("router_10k_regions");
    let mut i = 0;
    g.bench_function("locate", |b| {
        b.iter(|| {
            i = (i + 1) % points.len();
            black_box(table.locate(black_box(&points[i].0)).map(|r| r.id))
        })
    });
    // What the write path asks for a single key (allocates the piece's key).
    g.bench_function("point", |b| {
        b.iter(|| {
            i = (i + 1) % points.len();
            black_box(table.point(black_box(&points[i].0)))
        })
    });
    g.bench_function("split/1_region", |b| {
        b.iter(|| {
            i = (i + 1) % one_region.len();
            let (s, e) = &one_region[i];
            black_box(table.split(black_box(s), Some(black_box(e))))
        })
    });
    g.bench_function(format!("split/{SPLIT_SPAN}_regions"), |b| {
        b.iter(|| {
            i = (i + 1) % multi_region.len();
            let (s, e) = &multi_region[i];
            black_box(table.split(black_box(s), Some(black_box(e))))
        })
    });
    g.finish();
}

// ---- 3. MVCC encoding ----------------------------------------------------------

fn mvcc_encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("mvcc");
    g.bench_function("key_encode", |b| b.iter(|| black_box(keys::encode(black_box(K8S_KEY), 123_456))));
    let encoded = keys::encode(K8S_KEY, 123_456);
    assert_eq!(keys::decode(&encoded), Some((K8S_KEY.to_vec(), 123_456)));
    g.bench_function("key_decode", |b| b.iter(|| black_box(keys::decode(black_box(&encoded)))));

    // A binary key with zero bytes takes the escaping branch.
    let binary: Vec<u8> = (0..K8S_KEY.len()).map(|i| if i % 4 == 0 { 0 } else { i as u8 }).collect();
    g.bench_function("key_encode/with_zero_bytes", |b| b.iter(|| black_box(keys::encode(black_box(&binary), 7))));
    let encoded_binary = keys::encode(&binary, 7);
    assert_eq!(keys::decode(&encoded_binary), Some((binary.clone(), 7)));
    g.bench_function("key_decode/with_zero_bytes", |b| b.iter(|| black_box(keys::decode(black_box(&encoded_binary)))));

    // A version as a put stores it: 256-byte value.
    let kv = KeyValue {
        key: K8S_KEY.to_vec(),
        create_revision: 100_000,
        mod_revision: 123_456,
        version: 42,
        value: (0..256u32).map(|i| (i * 31) as u8).collect(),
        lease: 0,
    };
    g.bench_function("value_encode/put_256B", |b| b.iter(|| black_box(encode_value(Some(black_box(&kv))))));
    let stored = encode_value(Some(&kv));
    assert_eq!(decode_value(K8S_KEY, &stored).expect("decodes"), Some(kv.clone()));
    g.bench_function("value_decode/put_256B", |b| {
        b.iter(|| black_box(decode_value(black_box(K8S_KEY), black_box(&stored))))
    });
    let tombstone = encode_value(None);
    g.bench_function("value_decode/tombstone", |b| {
        b.iter(|| black_box(decode_value(black_box(K8S_KEY), black_box(&tombstone))))
    });
    g.finish();
}

// ---- 4a. the generic batch system ------------------------------------------------

/// Waiting longer than this for an echo (microseconds normally) means the
/// message was probably left in an idle FSM's mailbox (see [`LostWakeups`]).
const ECHO_STALL: Duration = Duration::from_millis(10);
/// The same for a store write (an fsync: milliseconds normally).
const WRITE_STALL: Duration = Duration::from_millis(250);

/// Counts answers that did not come until the FSM was sent another message.
///
/// The batch system can lose a wakeup: `poll_loop` marks a slot IDLE
/// (a Release store) and then checks its inbox, while `Mailbox::send` pushes
/// and then tries IDLE -> NOTIFIED. Nothing orders the poller's store before
/// its inbox load (store-load reordering), so both sides can miss each
/// other: the message sits in the mailbox of an FSM nobody schedules. A
/// single-voter leader gets no ticks, so in the store such a write would
/// wait forever. The benches nudge the FSM after a stall so that a run
/// always finishes (the stall stays in the measured time), and report how
/// often they had to (a starved poller on a loaded machine counts too).
struct LostWakeups {
    stall: Duration,
    hits: std::cell::Cell<usize>,
}

impl LostWakeups {
    fn new(stall: Duration) -> LostWakeups {
        LostWakeups { stall, hits: std::cell::Cell::new(0) }
    }

    fn hit(&self) {
        self.hits.set(self.hits.get() + 1);
    }

    fn report(&self, what: &str) {
        if self.hits.get() > 0 {
            eprintln!(
                "warning: {what}: {} message(s) got no answer within {:?} until their FSM was nudged \
                 (a lost wakeup in raftstore::batch, or a starved poller)",
                self.hits.get(),
                self.stall
            );
        }
    }
}

/// A message that only wakes an FSM up; its echo is ignored.
const NUDGE: u64 = u64::MAX;

/// An FSM that echoes every message back on a channel shared by all FSMs.
struct Echo {
    inbox: std::sync::Arc<Inbox<u64>>,
    reply: Sender<u64>,
}

impl Fsm for Echo {
    type Message = u64;
}

/// Handles each FSM's messages; `end` does nothing (no persistence), so a
/// round costs only the batch system's own work.
struct EchoHandler;

impl PollHandler<Echo> for EchoHandler {
    fn handle(&mut self, fsm: &mut Echo) {
        while let Some(m) = fsm.inbox.pop() {
            let _ = fsm.reply.send(m);
        }
    }

    fn end(&mut self, _batch: &mut [Box<Echo>]) {}
}

struct EchoSystem {
    system: BatchSystem<Echo>,
    mailboxes: Vec<Mailbox<Echo>>,
    replies: Receiver<u64>,
    lost: LostWakeups,
}

impl EchoSystem {
    /// Shaped as the store's: one poller per core, batches of up to 256.
    fn start(fsms: usize) -> EchoSystem {
        let cfg = BatchConfig { pollers: std::thread::available_parallelism().map_or(2, |n| n.get()), max_batch: 256 };
        let system = BatchSystem::start("bench-poller", &cfg, || EchoHandler);
        let (reply, replies) = channel::unbounded();
        let mailboxes = (0..fsms)
            .map(|_| {
                let inbox = Inbox::new();
                system.registrar().register(Box::new(Echo { inbox: inbox.clone(), reply: reply.clone() }), inbox)
            })
            .collect();
        EchoSystem { system, mailboxes, replies, lost: LostWakeups::new(ECHO_STALL) }
    }

    /// Sends one message to each of the `count` FSMs from `first` on
    /// (wrapping; `count` <= FSMs, so all distinct) and waits for every answer.
    fn round_trip(&self, first: usize, count: usize) {
        let n = self.mailboxes.len();
        for i in first..first + count {
            self.mailboxes[i % n].send((i % n) as u64).expect("batch system running");
        }
        let mut waiting = count;
        while waiting > 0 {
            match self.replies.recv_timeout(self.lost.stall) {
                Ok(NUDGE) => {}
                Ok(_) => waiting -= 1,
                Err(channel::RecvTimeoutError::Timeout) => {
                    self.lost.hit();
                    for i in first..first + count {
                        self.mailboxes[i % n].send(NUDGE).expect("batch system running");
                    }
                }
                Err(channel::RecvTimeoutError::Disconnected) => unreachable!("every FSM holds a reply sender"),
            }
        }
    }

    fn shutdown(mut self, what: &str) {
        self.system.shutdown();
        self.lost.report(what);
    }
}

fn batch_system(c: &mut Criterion) {
    const BURST: usize = 256;
    let mut g = c.benchmark_group("batch_system");
    for fsms in [1usize, 1_000] {
        // Started on first use, so a filter that skips the bench skips the threads.
        let mut system: Option<EchoSystem> = None;
        let mut next = 0;
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("one_message_round_trip", format!("{fsms}_fsms")), |b| {
            let s = system.get_or_insert_with(|| EchoSystem::start(fsms));
            b.iter(|| {
                // A different FSM each time; the others stay idle.
                next = (next + 1) % fsms;
                s.round_trip(next, 1);
            })
        });
        if fsms >= BURST {
            g.throughput(Throughput::Elements(BURST as u64));
            g.bench_function(BenchmarkId::new(format!("burst_{BURST}_round_trip"), format!("{fsms}_fsms")), |b| {
                let s = system.get_or_insert_with(|| EchoSystem::start(fsms));
                b.iter(|| {
                    s.round_trip(next, BURST);
                    next = (next + BURST) % fsms;
                })
            });
        }
        if let Some(s) = system {
            s.shutdown(&format!("batch_system with {fsms} FSMs"));
        }
    }
    g.finish();
}

// ---- 4b. a real store ------------------------------------------------------------

/// A store in a temp dir that is removed when this is dropped.
struct BenchStore {
    store: Arc<Store>,
    runtime: tokio::runtime::Runtime,
    region: u64,
    epoch_version: u64,
    key: Vec<u8>,
    lost: LostWakeups,
    _dir: tempfile::TempDir,
}

impl BenchStore {
    /// A fresh store of `regions` regions (split at `key0001`..), every one
    /// leading; the benched key lies in a region in the middle.
    fn open(regions: usize) -> BenchStore {
        let dir = tempfile::Builder::new().prefix("tessera-bench-").tempdir().expect("temp dir");
        let mut cfg = StoreConfig::new(dir.path());
        cfg.initial_split_keys = (1..regions).map(|i| format!("key{i:04}").into_bytes()).collect();
        let store = Store::open(cfg).expect("open store");
        store.wait_ready(Duration::from_secs(60)).expect("every region leads");
        assert_eq!(store.regions().len(), regions);
        let key = format!("key{:04}/bench", regions / 2).into_bytes();
        // As the router does: the table says which region and epoch.
        let piece = RoutingTable::new(store.regions()).point(&key).expect("a region owns the key");
        assert_eq!(piece.epoch_version, 1, "a fresh region is at epoch version 1");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        BenchStore {
            store,
            runtime,
            region: piece.region,
            epoch_version: piece.epoch_version,
            key,
            lost: LostWakeups::new(WRITE_STALL),
            _dir: dir,
        }
    }

    /// One put, awaited as the router awaits it.
    fn put(&self, value: &[u8]) {
        let req = WriteRequest::Put(PutRequest { key: self.key.clone(), value: value.to_vec(), ..Default::default() });
        let outcome = self.runtime.block_on(async {
            let write = self.store.write_here(self.region, self.epoch_version, req, self.store.store_id);
            tokio::pin!(write);
            loop {
                match tokio::time::timeout(self.lost.stall, &mut write).await {
                    Ok(outcome) => break outcome,
                    Err(_) => {
                        // See `LostWakeups`: a tick makes the peer handle its mailbox.
                        self.lost.hit();
                        let peer = self.store.peer(self.region).expect("the region exists");
                        let _ = peer.mailbox.send(PeerMsg::Tick);
                    }
                }
            }
        });
        assert!(outcome.expect("put").revision.is_some());
    }

    fn shutdown(self, what: &str) {
        self.store.shutdown();
        self.lost.report(what);
        assert_eq!(Arc::strong_count(&self.store), 1, "nothing else holds the store");
        // Close RocksDB (drop the store) before the temp dir is removed.
        let BenchStore { store, _dir, .. } = self;
        drop(store);
        drop(_dir);
    }
}

fn store_write(c: &mut Criterion) {
    let mut g = c.benchmark_group("store_write");
    // Every write waits for an fsync: fewer, longer samples.
    g.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6));
    g.throughput(Throughput::Elements(1));
    let value = vec![b'v'; 256];
    for regions in [1usize, 1_000] {
        let mut store: Option<BenchStore> = None;
        g.bench_function(BenchmarkId::new("put_256B", format!("{regions}_regions")), |b| {
            let s = store.get_or_insert_with(|| BenchStore::open(regions));
            b.iter(|| s.put(&value))
        });
        if let Some(s) = store {
            s.shutdown(&format!("store_write with {regions} regions"));
        }
    }
    g.finish();
}

criterion_group! {
    name = cheap;
    config = config();
    targets = lease_check, router_lookup, mvcc_encoding, batch_system
}
criterion_group! {
    name = store;
    config = config();
    targets = store_write
}
criterion_main!(cheap, store);
