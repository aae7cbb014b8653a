//! The workloads: each builds one [`Worker`] per client and hands them to
//! [`drive`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use super::keys::{key_of, KeyGen};
use super::report::{new_histogram, Summary};
use super::{drive, parse_ratio, LoadOpts, Worker};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::*;

/// The workloads, as `tessera bench <workload>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Workload {
    /// Puts of --val-size values to keys of the key space.
    Put(LoadOpts),
    /// Ranges over one key or a prefix of --range-keys keys (preloaded).
    Range {
        #[command(flatten)]
        opts: LoadOpts,
        /// l: linearizable, s: serializable.
        #[arg(long, default_value = "l", value_parser = ["l", "s"])]
        consistency: String,
        /// Keys per range (1: a single-key get).
        #[arg(long, default_value_t = 1)]
        range_keys: u64,
    },
    /// Compare-and-set puts: a txn comparing the key's mod_revision with the
    /// last one this client saw (--compare none: an unconditional txn put).
    TxnPut {
        #[command(flatten)]
        opts: LoadOpts,
        #[arg(long, default_value = "mod", value_parser = ["mod", "none"])]
        compare: String,
    },
    /// Txns putting --txn-ops keys at once.
    TxnMixed {
        #[command(flatten)]
        opts: LoadOpts,
        #[arg(long, default_value_t = 4)]
        txn_ops: u64,
        /// Spread each txn's keys over the whole key space (across regions on
        /// tessera) instead of taking neighbouring keys.
        #[arg(long)]
        spread: bool,
    },
    /// Deletes of keys preloaded for it, one each.
    Delete(LoadOpts),
    /// Reads and puts mixed R:W.
    Mixed {
        #[command(flatten)]
        opts: LoadOpts,
        #[arg(long, default_value = "9:1", value_parser = parse_ratio)]
        ratio: (u32, u32),
        #[arg(long, default_value = "l", value_parser = ["l", "s"])]
        consistency: String,
    },
    /// Time from sending a put until each of --watchers watchers receives
    /// its event, and from the put's acknowledgement. Use --rate.
    WatchLatency {
        #[command(flatten)]
        opts: LoadOpts,
        #[arg(long, default_value_t = 10)]
        watchers: usize,
    },
    /// Lease keep-alive round trips on one stream per client.
    LeaseKeepalive(LoadOpts),
}

impl Workload {
    pub fn opts(&self) -> &LoadOpts {
        match self {
            Workload::Put(o) | Workload::Delete(o) | Workload::LeaseKeepalive(o) => o,
            Workload::Range { opts, .. }
            | Workload::TxnPut { opts, .. }
            | Workload::TxnMixed { opts, .. }
            | Workload::Mixed { opts, .. }
            | Workload::WatchLatency { opts, .. } => opts,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Workload::Put(_) => "put".into(),
            Workload::Range { consistency, range_keys, .. } => format!("range-{consistency}-{range_keys}"),
            Workload::TxnPut { compare, .. } => format!("txn-put-{compare}"),
            Workload::TxnMixed { spread, txn_ops, .. } => {
                format!("txn-mixed-{txn_ops}{}", if *spread { "-spread" } else { "" })
            }
            Workload::Delete(_) => "delete".into(),
            Workload::Mixed { ratio, .. } => format!("mixed-{}:{}", ratio.0, ratio.1),
            Workload::WatchLatency { .. } => "watch-latency".into(),
            Workload::LeaseKeepalive(_) => "lease-keepalive".into(),
        }
    }

    /// Runs the workload; most give one summary, watch-latency two.
    pub async fn run(&self, seed: u64) -> anyhow::Result<Vec<Summary>> {
        let opts = self.opts();
        opts.validate().map_err(anyhow::Error::msg)?;
        let channels = connect(opts).await?;
        let kv = |c: usize| KvClient::new(channels[c % channels.len()].clone()).max_decoding_message_size(usize::MAX);
        let keys = |c: usize| {
            KeyGen::new(opts.key_dist, opts.sequential_keys, opts.key_space_size, opts.zipf_s, seed, c as u64)
        };
        let value = vec![b'v'; opts.val_size];
        let name = self.name();
        let clients =
            || (0..opts.clients).map(|c| Client { kv: kv(c), keys: keys(c), opts: opts.clone(), value: value.clone() });
        let serializable = |consistency: &str| consistency == "s";
        let summary = match self {
            Workload::Put(_) => drive(opts, &name, clients().map(Put).collect()).await?,
            Workload::Range { consistency, range_keys, .. } => {
                preload(&kv(0), opts, opts.key_space_size).await?;
                let serializable = serializable(consistency);
                let workers = clients().map(|c| Range { c, serializable, range_keys: *range_keys }).collect();
                drive(opts, &name, workers).await?
            }
            Workload::TxnPut { compare, .. } => {
                let workers = clients().map(|c| TxnPut { c, cas: compare == "mod", seen: HashMap::new() }).collect();
                drive(opts, &name, workers).await?
            }
            Workload::TxnMixed { txn_ops, spread, .. } => {
                let workers = clients().map(|c| TxnMixed { c, n: *txn_ops, spread: *spread }).collect();
                drive(opts, &name, workers).await?
            }
            Workload::Delete(_) => {
                let n = if opts.duration.is_some() { opts.key_space_size } else { opts.total };
                preload(&kv(0), opts, n).await?;
                let bounded = LoadOpts { total: n, duration: None, ..opts.clone() };
                drive(&bounded, &name, clients().map(Delete).collect()).await?
            }
            Workload::Mixed { ratio, consistency, .. } => {
                preload(&kv(0), opts, opts.key_space_size).await?;
                let serializable = serializable(consistency);
                drive(opts, &name, clients().map(|c| Mixed { c, ratio: *ratio, serializable }).collect()).await?
            }
            Workload::WatchLatency { watchers, .. } => return watch_latency(opts, &channels, *watchers, seed).await,
            Workload::LeaseKeepalive(_) => {
                let mut workers = Vec::with_capacity(opts.clients);
                for c in 0..opts.clients {
                    workers.push(KeepAlive::open(LeaseClient::new(channels[c % channels.len()].clone())).await?);
                }
                drive(opts, &name, workers).await?
            }
        };
        Ok(vec![summary])
    }
}

pub async fn connect(opts: &LoadOpts) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(opts.conns);
    let dialer = opts.tls.dialer()?;
    for i in 0..opts.conns.max(1) {
        let url = &opts.endpoints[i % opts.endpoints.len()];
        let channel = dialer
            .connect(Endpoint::from_shared(url.clone())?)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to {url}: {}", crate::tls::client::error_chain(&e)))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Writes keys 0..n (so reads and deletes find them), 64 at a time.
async fn preload(kv: &KvClient<Channel>, opts: &LoadOpts, n: u64) -> anyhow::Result<()> {
    let value = vec![b'v'; opts.val_size];
    let mut next = 0;
    while next < n {
        let batch: Vec<_> = (next..(next + 64).min(n))
            .map(|i| {
                let mut kv = kv.clone();
                let req = PutRequest {
                    key: key_of(&opts.key_prefix, i, opts.key_size),
                    value: value.clone(),
                    ..Default::default()
                };
                async move { kv.put(req).await }
            })
            .collect();
        for r in futures_join_all(batch).await {
            r.map_err(|s| anyhow::anyhow!("preloading keys: {s}"))?;
        }
        next += 64;
    }
    Ok(())
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("preload task"));
    }
    out
}

/// What every KV worker has: its connection, its key generator, the options.
struct Client {
    kv: KvClient<Channel>,
    keys: KeyGen,
    opts: LoadOpts,
    value: Vec<u8>,
}

impl Client {
    /// The key operation `i` touches.
    fn key(&mut self, i: u64) -> Vec<u8> {
        key_of(&self.opts.key_prefix, self.keys.next_index(i), self.opts.key_size)
    }

    fn put(&self, key: Vec<u8>) -> PutRequest {
        PutRequest { key, value: self.value.clone(), ..Default::default() }
    }
}

struct Put(Client);

impl Worker for Put {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let key = self.0.key(i);
        let req = self.0.put(key);
        self.0.kv.put(req).await.map(drop)
    }
}

struct Range {
    c: Client,
    serializable: bool,
    range_keys: u64,
}

impl Worker for Range {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let o = &self.c.opts;
        let first = self.c.keys.next_index(i).min(o.key_space_size.saturating_sub(self.range_keys));
        let key = key_of(&o.key_prefix, first, o.key_size);
        let range_end =
            if self.range_keys > 1 { key_of(&o.key_prefix, first + self.range_keys, o.key_size) } else { Vec::new() };
        let req = RangeRequest { key, range_end, serializable: self.serializable, ..Default::default() };
        self.c.kv.range(req).await.map(drop)
    }
}

struct TxnPut {
    c: Client,
    cas: bool,
    /// The mod_revision this client last saw per key (0: never written).
    seen: HashMap<Vec<u8>, i64>,
}

impl Worker for TxnPut {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let key = self.c.key(i);
        let put = RequestOp { request: Some(Request::RequestPut(self.c.put(key.clone()))) };
        let get =
            RequestOp { request: Some(Request::RequestRange(RangeRequest { key: key.clone(), ..Default::default() })) };
        let compare = if self.cas {
            vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.clone(),
                target_union: Some(TargetUnion::ModRevision(*self.seen.get(&key).unwrap_or(&0))),
                range_end: Vec::new(),
            }]
        } else {
            Vec::new()
        };
        let resp = self.c.kv.txn(TxnRequest { compare, success: vec![put], failure: vec![get] }).await?.into_inner();
        // Learn the key's current mod_revision for the next compare-and-set.
        let current = if resp.succeeded {
            resp.header.map_or(0, |h| h.revision)
        } else {
            match resp.responses.first().and_then(|r| r.response.as_ref()) {
                Some(Response::ResponseRange(r)) => r.kvs.first().map_or(0, |kv| kv.mod_revision),
                _ => 0,
            }
        };
        self.seen.insert(key, current);
        Ok(())
    }
}

struct TxnMixed {
    c: Client,
    n: u64,
    spread: bool,
}

impl Worker for TxnMixed {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let o = &self.c.opts;
        let space = o.key_space_size.max(self.n);
        let first = self.c.keys.next_index(i);
        let step = if self.spread { (space / self.n).max(1) } else { 1 };
        let mut indexes: Vec<u64> = (0..self.n).map(|j| (first + j * step) % space).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let success = indexes
            .into_iter()
            .map(|i| RequestOp { request: Some(Request::RequestPut(self.c.put(key_of(&o.key_prefix, i, o.key_size)))) })
            .collect();
        self.c.kv.txn(TxnRequest { compare: Vec::new(), success, failure: Vec::new() }).await.map(drop)
    }
}

/// Deletes key `i` (preloaded) for operation `i`.
struct Delete(Client);

impl Worker for Delete {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let key = key_of(&self.0.opts.key_prefix, i, self.0.opts.key_size);
        self.0.kv.delete_range(DeleteRangeRequest { key, ..Default::default() }).await.map(drop)
    }
}

struct Mixed {
    c: Client,
    ratio: (u32, u32),
    serializable: bool,
}

impl Worker for Mixed {
    async fn call(&mut self, i: u64) -> Result<(), Status> {
        let key = self.c.key(i);
        let (r, w) = self.ratio;
        if (i % (r + w) as u64) < r as u64 {
            self.c.kv.range(RangeRequest { key, serializable: self.serializable, ..Default::default() }).await.map(drop)
        } else {
            let req = self.c.put(key);
            self.c.kv.put(req).await.map(drop)
        }
    }
}

struct KeepAlive {
    tx: tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
    rx: tonic::Streaming<LeaseKeepAliveResponse>,
    id: i64,
}

impl KeepAlive {
    async fn open(mut lease: LeaseClient<Channel>) -> anyhow::Result<KeepAlive> {
        let id = lease
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await
            .map_err(|s| anyhow::anyhow!("LeaseGrant: {s}"))?
            .into_inner()
            .id;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        // grpc-go answers a stream's headers with its first message: send one
        // before waiting for the call to open.
        tx.send(LeaseKeepAliveRequest { id }).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut rx =
            lease.lease_keep_alive(stream).await.map_err(|s| anyhow::anyhow!("LeaseKeepAlive: {s}"))?.into_inner();
        rx.next().await.ok_or_else(|| anyhow::anyhow!("LeaseKeepAlive stream ended"))??;
        Ok(KeepAlive { tx, rx, id })
    }
}

impl Worker for KeepAlive {
    async fn call(&mut self, _i: u64) -> Result<(), Status> {
        self.tx
            .send(LeaseKeepAliveRequest { id: self.id })
            .await
            .map_err(|_| Status::unavailable("keep-alive stream closed"))?;
        match self.rx.next().await {
            Some(r) => r.map(drop),
            None => Err(Status::unavailable("keep-alive stream ended")),
        }
    }
}

/// watch-latency: `opts.clients` putters (use --rate) write keys under the
/// prefix while `watchers` watch it; every event's delay is recorded from
/// the put's send time and from its acknowledgement.
async fn watch_latency(
    opts: &LoadOpts,
    channels: &[Channel],
    watchers: usize,
    _seed: u64,
) -> anyhow::Result<Vec<Summary>> {
    let prefix = format!("{}watch-latency/", opts.key_prefix);
    let sent: Arc<DashMap<Vec<u8>, (Instant, Option<Instant>)>> = Arc::new(DashMap::new());
    let from_send = Arc::new(parking_lot::Mutex::new(new_histogram()));
    let from_ack = Arc::new(parking_lot::Mutex::new(new_histogram()));
    let mut streams = Vec::new();
    for w in 0..watchers.max(1) {
        let mut client = WatchClient::new(channels[w % channels.len()].clone());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut end = prefix.clone().into_bytes();
        *end.last_mut().expect("non-empty prefix") += 1;
        let create = WatchCreateRequest { key: prefix.clone().into_bytes(), range_end: end, ..Default::default() };
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await?;
        let mut events = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow::anyhow!("Watch: {s}"))?
            .into_inner();
        // The created confirmation first.
        match events.next().await {
            Some(Ok(r)) if r.created => {}
            other => anyhow::bail!("watch not created: {other:?}"),
        }
        let (sent, from_send, from_ack) = (sent.clone(), from_send.clone(), from_ack.clone());
        streams.push(tokio::spawn(async move {
            let _keep_open = tx;
            while let Some(Ok(resp)) = events.next().await {
                let now = Instant::now();
                for ev in resp.events {
                    let Some(kv) = ev.kv else { continue };
                    if let Some(times) = sent.get(&kv.key) {
                        let (sent_at, acked_at) = *times;
                        let _ = from_send.lock().record(now.duration_since(sent_at).as_micros().max(1) as u64);
                        let after_ack = acked_at.map_or(0, |a| now.saturating_duration_since(a).as_micros() as u64);
                        let _ = from_ack.lock().record(after_ack.max(1));
                    }
                }
            }
        }));
    }
    struct WatchedPut {
        kv: KvClient<Channel>,
        prefix: String,
        sent: Arc<DashMap<Vec<u8>, (Instant, Option<Instant>)>>,
        value: Vec<u8>,
    }
    impl Worker for WatchedPut {
        async fn call(&mut self, i: u64) -> Result<(), Status> {
            let key = format!("{}{i:012}", self.prefix).into_bytes();
            self.sent.insert(key.clone(), (Instant::now(), None));
            self.kv.put(PutRequest { key: key.clone(), value: self.value.clone(), ..Default::default() }).await?;
            if let Some(mut t) = self.sent.get_mut(&key) {
                t.1 = Some(Instant::now());
            }
            Ok(())
        }
    }
    let workers = (0..opts.clients)
        .map(|c| WatchedPut {
            kv: KvClient::new(channels[c % channels.len()].clone()),
            prefix: prefix.clone(),
            sent: sent.clone(),
            value: vec![b'v'; opts.val_size],
        })
        .collect();
    let puts = drive(opts, "watch-latency-puts", workers).await?;
    // Let the last events arrive (bounded), then stop the watchers.
    let expected = puts.ops * watchers.max(1) as u64;
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while from_send.lock().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for s in streams {
        s.abort();
    }
    let mut missing = std::collections::BTreeMap::new();
    let received = from_send.lock().len();
    if received < expected {
        missing.insert("EventsMissing".to_string(), expected - received);
    }
    let make = |name: &str, h: &parking_lot::Mutex<hdrhistogram::Histogram<u64>>| {
        let latency_us = h.lock().clone();
        Summary {
            workload: name.to_string(),
            endpoint: puts.endpoint.clone(),
            ops: latency_us.len(),
            errors: if puts.errors.is_empty() { missing.clone() } else { puts.errors.clone() },
            elapsed: puts.elapsed,
            latency_us,
        }
    };
    Ok(vec![make("watch-latency", &from_send), make("watch-latency-from-ack", &from_ack)])
}

/// The options `tessera bench` would parse from no flags.
pub fn default_opts() -> LoadOpts {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        opts: LoadOpts,
    }
    Defaults::parse_from(["bench"]).opts
}
