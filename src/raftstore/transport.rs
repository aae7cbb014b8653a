//! The store-to-store transport (docs/cluster.md, "Transport"): every raft
//! message a poll round produced goes to its destination store in one
//! `RaftBatch`, on one long-lived client stream per destination, opened
//! again with backoff when it breaks. Messages sent while a link is down are
//! dropped: raft retransmits.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::proto::tesserapb::peer_transport_client::PeerTransportClient;
use crate::proto::tesserapb::{RaftBatch, SnapshotChunk, StoreInfo};
use crate::tls::client::Dialer;

/// Batches queued for a link that cannot send: past this, new ones are
/// dropped (raft retransmits; a dead store must not grow our memory).
const LINK_QUEUE: usize = 1024;

/// Decides whether a raft message (to store, region, message) may leave:
/// tests partition, isolate and drop by message type with it.
pub type Filter = Arc<dyn Fn(u64, u64, &raft::prelude::Message) -> bool + Send + Sync>;

/// Told when a snapshot (region, to store) was sent (`true`) or not.
pub type SnapshotReport = Arc<dyn Fn(u64, u64, bool) + Send + Sync>;

/// A snapshot travels in pieces of this size.
const SNAPSHOT_CHUNK: usize = 1 << 20;
/// A snapshot not delivered within this is given up (raft sends another).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Told that a member refused this store's messages: it was removed.
pub type RemovedReport = Arc<dyn Fn() + Send + Sync>;

/// What a member answers a store removed from the cluster.
pub const REMOVED: &str = "was removed from the cluster";

pub struct Transport {
    me: StoreInfo,
    filter: parking_lot::RwLock<Option<Filter>>,
    /// One link per other member (changed by membership changes).
    links: DashMap<u64, mpsc::Sender<RaftBatch>>,
    pub(super) urls: DashMap<u64, String>,
    /// Clients for region requests and revision asks, by store.
    pub(super) clients: DashMap<u64, PeerTransportClient<tonic::transport::Channel>>,
    snapshot_sent: std::sync::OnceLock<SnapshotReport>,
    removed: Arc<std::sync::OnceLock<RemovedReport>>,
    /// What each store said about itself on its first batch to us.
    known: Arc<DashMap<u64, StoreInfo>>,
    /// When each store's last batch arrived.
    heard: DashMap<u64, std::time::Instant>,
    /// Opens every connection to another store (TLS per the peer flags).
    dialer: Dialer,
    /// The links' own runtime: pollers (plain threads) hand batches to it.
    /// Shut down in the background on drop: the last owner may be a task of
    /// another runtime, where a blocking shutdown is not allowed.
    pub(super) runtime: Option<tokio::runtime::Runtime>,
}

impl Transport {
    /// Links to every store in `peers` (store id -> peer URL) but `me`.
    pub fn start(me: StoreInfo, peers: &[(u64, String)], dialer: Dialer) -> std::io::Result<Transport> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("peer-transport")
            .enable_all()
            .build()?;
        let known = Arc::new(DashMap::new());
        known.insert(me.store_id, me.clone());
        let t = Transport {
            me,
            filter: Default::default(),
            links: DashMap::new(),
            urls: DashMap::new(),
            clients: DashMap::new(),
            snapshot_sent: Default::default(),
            removed: Default::default(),
            known,
            heard: DashMap::new(),
            dialer,
            runtime: Some(runtime),
        };
        t.set_links(peers);
        Ok(t)
    }

    /// Links to exactly the stores in `peers` but `me`: new members get
    /// one, removed members' links close.
    pub fn set_links(&self, peers: &[(u64, String)]) {
        let Some(runtime) = &self.runtime else { return };
        for (id, url) in peers.iter().filter(|(id, _)| *id != self.me.store_id) {
            if !self.links.contains_key(id) {
                let (tx, rx) = mpsc::channel(LINK_QUEUE);
                let link = Link { to: *id, url: url.clone(), me: self.me.clone(), dialer: self.dialer.clone() };
                runtime.spawn(run_link(link, rx, self.removed.clone()));
                self.links.insert(*id, tx);
                self.urls.insert(*id, url.clone());
            }
        }
        self.links.retain(|id, _| peers.iter().any(|(p, _)| p == id));
        self.urls.retain(|id, _| peers.iter().any(|(p, _)| p == id));
        self.clients.retain(|id, _| peers.iter().any(|(p, _)| p == id));
    }

    /// Sets who is told that a member refused us as removed (once).
    pub fn on_removed(&self, report: RemovedReport) {
        let _ = self.removed.set(report);
    }

    /// Sets who is told how each snapshot sending ended (once).
    pub fn on_snapshot_sent(&self, report: SnapshotReport) {
        let _ = self.snapshot_sent.set(report);
    }

    pub fn me(&self) -> &StoreInfo {
        &self.me
    }

    /// How this store dials the others.
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Installs (or with `None` removes) a filter on outgoing messages.
    pub fn set_filter(&self, filter: Option<Filter>) {
        *self.filter.write() = filter;
    }

    /// Sends what a poll round produced: one batch per destination store
    /// (docs/cluster.md, "Store heartbeats").
    pub fn send_round(&self, messages: Vec<(u64, raft::prelude::Message)>) {
        let filter = self.filter.read().clone();
        let messages = match filter {
            Some(allows) => messages.into_iter().filter(|(region, m)| allows(m.to, *region, m)).collect(),
            None => messages,
        };
        let is_snapshot = |m: &raft::prelude::Message| m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot;
        let messages = if messages.iter().any(|(_, m)| is_snapshot(m)) {
            // Rare: a snapshot goes on a call of its own.
            let (snapshots, rest): (Vec<_>, Vec<_>) = messages.into_iter().partition(|(_, m)| is_snapshot(m));
            for (region, m) in snapshots {
                self.send_snapshot(region, m);
            }
            rest
        } else {
            messages
        };
        for (to, batch) in super::wire::pack(self.me.store_id, messages) {
            crate::metrics::METRICS.peer_messages_sent.add(super::wire::message_count(&batch) as u64);
            self.send(to, batch);
        }
    }

    /// Queues one batch for store `to`; dropped if its link is backed up.
    fn send(&self, to: u64, batch: RaftBatch) {
        if let Some(link) = self.links.get(&to) {
            if link.try_send(batch).is_err() {
                crate::metrics::METRICS.peer_batches_dropped.inc();
                crate::metrics::etcd::ETCD.peer_send_failed(to);
            }
        }
    }

    /// Streams a snapshot to its store on a call of its own, then reports.
    fn send_snapshot(&self, region: u64, m: raft::prelude::Message) {
        let to = m.to;
        let report = self.snapshot_sent.get().cloned();
        let (Some(url), Some(runtime)) = (self.urls.get(&to).map(|u| u.clone()), self.runtime.as_ref()) else {
            if let Some(report) = report {
                report(region, to, false);
            }
            return;
        };
        let dialer = self.dialer.clone();
        runtime.spawn(async move {
            let sent = tokio::time::timeout(SNAPSHOT_TIMEOUT, stream_snapshot(&dialer, url, region, m)).await;
            let ok = match sent {
                Ok(Ok(bytes)) => {
                    tracing::info!(region, to, bytes, "snapshot sent");
                    true
                }
                Ok(Err(e)) => {
                    tracing::warn!(region, to, "sending a snapshot: {e}");
                    false
                }
                Err(_) => {
                    tracing::warn!(region, to, "sending a snapshot timed out");
                    false
                }
            };
            if let Some(report) = report {
                report(region, to, ok);
            }
        });
    }

    /// A batch from `store` arrived.
    pub fn heard_from(&self, store: u64) {
        self.heard.insert(store, std::time::Instant::now());
    }

    /// Whether a batch from `store` arrived within `within`.
    pub fn active(&self, store: u64, within: Duration) -> bool {
        self.heard.get(&store).is_some_and(|at| at.elapsed() < within)
    }

    /// A store introduced itself.
    pub fn learn(&self, info: StoreInfo) {
        self.known.insert(info.store_id, info);
    }

    /// What `store` told us about itself, if it has.
    pub fn info(&self, store: u64) -> Option<StoreInfo> {
        self.known.get(&store).map(|i| i.clone())
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Where one link goes, and how.
struct Link {
    to: u64,
    url: String,
    me: StoreInfo,
    dialer: Dialer,
}

async fn run_link(link: Link, mut rx: mpsc::Receiver<RaftBatch>, removed: Arc<std::sync::OnceLock<RemovedReport>>) {
    let Link { to, url, me, dialer } = link;
    let mut backoff = Duration::from_millis(50);
    loop {
        let endpoint = match tonic::transport::Endpoint::from_shared(url.clone()) {
            Ok(e) => e.connect_timeout(Duration::from_secs(1)),
            Err(e) => {
                tracing::error!(store = to, url, "bad peer URL: {e}");
                return;
            }
        };
        let channel = match dialer.connect(endpoint).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(store = to, "peer link down: {e}");
                // Drop what queued meanwhile (raft retransmits), then wait.
                while rx.try_recv().is_ok() {
                    crate::metrics::etcd::ETCD.peer_send_failed(to);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let mut probe = tokio::time::interval(PROBE_EVERY);
        let probe_channel = channel.clone();
        let (stream_tx, stream_rx) = mpsc::channel::<RaftBatch>(64);
        let mut call = tokio::spawn(async move {
            PeerTransportClient::new(channel).raft(tokio_stream::wrappers::ReceiverStream::new(stream_rx)).await
        });
        // Introduce ourselves at once: a store learns every other store's
        // client URLs (MemberList) even if no region talks to it.
        let hello = RaftBatch { from_store: me.store_id, sender: Some(me.clone()), ..Default::default() };
        let mut first = stream_tx.try_send(hello).is_err().then(|| me.clone());
        loop {
            tokio::select! {
                batch = rx.recv() => {
                    let Some(mut batch) = batch else { return };
                    // Everything queued goes in one batch.
                    while let Ok(more) = rx.try_recv() {
                        batch.messages.extend(more.messages);
                        batch.heartbeats.extend(more.heartbeats);
                    }
                    batch.sender = first.clone();
                    if stream_tx.try_send(batch).is_err() {
                        crate::metrics::METRICS.peer_batches_dropped.inc();
                        crate::metrics::etcd::ETCD.peer_send_failed(to);
                    } else {
                        first = None;
                        crate::metrics::METRICS.peer_batches_sent.inc();
                    }
                }
                _ = probe.tick() => {
                    tokio::spawn(probe_round_trip(to, probe_channel.clone()));
                }
                done = &mut call => {
                    tracing::debug!(store = to, "peer stream ended: {done:?}");
                    if let Ok(Err(status)) = &done {
                        if status.code() == tonic::Code::FailedPrecondition && status.message().contains(REMOVED) {
                            tracing::warn!(store = to, "{}", status.message());
                            if let Some(report) = removed.get() {
                                report();
                            }
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// How often a link measures its round trip (etcd_network_peer_round_trip_time_seconds).
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// One grpc.health.v1 Check on the link's connection, timed: what etcd's
/// prober measures with its /raft/probing requests. A probe that fails or
/// takes over a second is not counted.
async fn probe_round_trip(to: u64, channel: tonic::transport::Channel) {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let start = std::time::Instant::now();
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest::default());
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), check).await {
        crate::metrics::etcd::ETCD.peer_round_trip(to, start.elapsed());
    }
}

/// Sends one snapshot message in chunks; returns its size.
async fn stream_snapshot(
    dialer: &Dialer,
    url: String,
    region: u64,
    m: raft::prelude::Message,
) -> Result<usize, String> {
    use protobuf::Message as _;
    let bytes = m.write_to_bytes().map_err(|e| e.to_string())?;
    let size = bytes.len();
    let chunks: Vec<SnapshotChunk> =
        bytes.chunks(SNAPSHOT_CHUNK).map(|data| SnapshotChunk { region_id: region, data: data.to_vec() }).collect();
    let endpoint = tonic::transport::Endpoint::from_shared(url).map_err(|e| e.to_string())?;
    let channel = dialer.connect(endpoint.connect_timeout(Duration::from_secs(1))).await.map_err(|e| e.to_string())?;
    PeerTransportClient::new(channel).snapshot(tokio_stream::iter(chunks)).await.map_err(|e| e.to_string())?;
    Ok(size)
}
