//! Process-wide counters, rendered in the Prometheus text format on
//! `/metrics`. Per-region gauges are added by the store at render time;
//! [`etcd`] renders the same facts under etcd's metric names.

pub mod etcd;
pub mod keys;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds, in seconds.
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        let buckets = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, buckets, sum_nanos: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render_series(name, "", out);
    }

    /// The lines of one series: `labels` (`To="1a",`, with its comma, or
    /// empty) go before `le`.
    pub fn render_series(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let braced = labels.strip_suffix(',').map(|l| format!("{{{l}}}")).unwrap_or_default();
        let _ = writeln!(out, "{name}_sum{braced} {}", self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count{braced} {count}");
    }
}

const FSYNC_BOUNDS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

pub struct Metrics {
    pub lease_fast_path_reads: Counter,
    pub read_index_reads: Counter,
    pub lease_renewals: Counter,
    pub fsyncs: Counter,
    pub entries_persisted: Counter,
    pub poll_rounds: Counter,
    pub proposals: Counter,
    pub applied_entries: Counter,
    pub peer_batches_sent: Counter,
    pub peer_batches_dropped: Counter,
    pub peer_messages_sent: Counter,
    pub peer_messages_received: Counter,
    pub revision_requests: Counter,
    pub revision_asks: Counter,
    pub forwarded_calls: Counter,
    pub region_lease_reads: Counter,
    pub read_points: Counter,
    pub read_point_requests: Counter,
    pub fsync_seconds: Histogram,
}

pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| {
    let fsync_seconds = Histogram::new(FSYNC_BOUNDS);
    Metrics {
        lease_fast_path_reads: Counter::default(),
        read_index_reads: Counter::default(),
        lease_renewals: Counter::default(),
        fsyncs: Counter::default(),
        entries_persisted: Counter::default(),
        poll_rounds: Counter::default(),
        proposals: Counter::default(),
        applied_entries: Counter::default(),
        peer_batches_sent: Counter::default(),
        peer_batches_dropped: Counter::default(),
        peer_messages_sent: Counter::default(),
        peer_messages_received: Counter::default(),
        revision_requests: Counter::default(),
        revision_asks: Counter::default(),
        forwarded_calls: Counter::default(),
        region_lease_reads: Counter::default(),
        read_points: Counter::default(),
        read_point_requests: Counter::default(),
        fsync_seconds,
    }
});

impl Metrics {
    /// The counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let counters: [(&str, &str, &Counter); 18] = [
            (
                "tessera_lease_fast_path_reads_total",
                "Linearizable region reads served from a valid leader lease.",
                &self.lease_fast_path_reads,
            ),
            (
                "tessera_read_index_reads_total",
                "Linearizable region reads served after a ReadIndex round.",
                &self.read_index_reads,
            ),
            ("tessera_lease_renewals_total", "Leader lease renewals.", &self.lease_renewals),
            (
                "tessera_fsyncs_total",
                "Synced RocksDB writes of raft state (one per poll round with ready regions).",
                &self.fsyncs,
            ),
            (
                "tessera_raft_entries_persisted_total",
                "Raft log entries written by synced poll-round writes.",
                &self.entries_persisted,
            ),
            ("tessera_poll_rounds_total", "Batch-system poll rounds.", &self.poll_rounds),
            ("tessera_proposals_total", "Raft proposals.", &self.proposals),
            ("tessera_applied_entries_total", "Raft entries applied.", &self.applied_entries),
            (
                "tessera_peer_batches_sent_total",
                "Batches of raft messages sent to other stores (one per destination per poll round).",
                &self.peer_batches_sent,
            ),
            (
                "tessera_peer_batches_dropped_total",
                "Batches of raft messages dropped because a peer link was down or backed up.",
                &self.peer_batches_dropped,
            ),
            ("tessera_peer_messages_sent_total", "Raft messages sent to other stores.", &self.peer_messages_sent),
            (
                "tessera_peer_messages_received_total",
                "Raft messages received from other stores.",
                &self.peer_messages_received,
            ),
            (
                "tessera_revision_requests_total",
                "Requests for revisions sent to the leader store (at most one in flight per store).",
                &self.revision_requests,
            ),
            (
                "tessera_revision_asks_total",
                "Region leaders' asks for revisions carried by those requests.",
                &self.revision_asks,
            ),
            (
                "tessera_forwarded_calls_total",
                "Client calls this store passed on to the leader store.",
                &self.forwarded_calls,
            ),
            (
                "tessera_region_lease_reads_total",
                "Pieces of linearizable reads a region leader here served at a read point under its region lease.",
                &self.region_lease_reads,
            ),
            (
                "tessera_read_points_total",
                "Read points this (the leader) store's sequencer gave linearizable reads.",
                &self.read_points,
            ),
            (
                "tessera_read_point_requests_total",
                "Requests for a read point sent to the leader store (at most one in flight per store).",
                &self.read_point_requests,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.get());
        }
        let fsyncs = self.fsyncs.get();
        let per = if fsyncs == 0 { 0.0 } else { self.entries_persisted.get() as f64 / fsyncs as f64 };
        let _ = writeln!(
            out,
            "# HELP tessera_raft_entries_per_fsync Average raft entries persisted per fsync since start.\n# TYPE tessera_raft_entries_per_fsync gauge\ntessera_raft_entries_per_fsync {per}"
        );
        self.fsync_seconds.render("tessera_fsync_duration_seconds", "Latency of synced raft writes.", out);
    }
}
