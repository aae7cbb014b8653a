//! Process-wide metrics, rendered in the Prometheus text format on
//! `/metrics` by the `prometheus` crate. Process-wide counters and
//! histograms live in [`Metrics::registry`]; what a store knows at scrape
//! time (per-region gauges, sizes) goes in a [`Scrape`] built for each
//! request; [`etcd`] gives the same facts under etcd's metric names.

pub mod etcd;
pub mod keys;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// A counter registered under its name (a thin handle: the call sites
/// count, the registry renders).
#[derive(Clone)]
pub struct Counter(IntCounter);

impl Counter {
    pub fn new(registry: &Registry, name: &str, help: &str) -> Counter {
        let c = IntCounter::new(name, help).expect("a valid counter name");
        registry.register(Box::new(c.clone())).expect("each name registered once");
        Counter(c)
    }
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A histogram of durations, in seconds, with fixed upper bounds.
#[derive(Clone)]
pub struct Histogram(prometheus::Histogram);

impl Histogram {
    /// Registered in `registry` under `name`.
    pub fn new(registry: &Registry, name: &str, help: &str, bounds: &[f64]) -> Histogram {
        let h = Histogram::unregistered(name, help, bounds);
        registry.register(Box::new(h.0.clone())).expect("each name registered once");
        h
    }

    /// Not registered: its owner collects it (one series of a family).
    pub fn unregistered(name: &str, help: &str, bounds: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(bounds.to_vec());
        Histogram(prometheus::Histogram::with_opts(opts).expect("valid histogram options"))
    }

    pub fn observe(&self, d: std::time::Duration) {
        self.0.observe(d.as_secs_f64());
    }

    /// Its one series, as collected.
    fn collect_one(&self) -> Option<prometheus::proto::Metric> {
        self.0.collect().pop().and_then(|mut f| f.take_metric().pop())
    }
}

/// The metrics of one scrape: registered gauges set from what the store
/// knows now, and families built by hand; rendered with the process-wide
/// ones.
pub struct Scrape {
    registry: Registry,
    families: Vec<MetricFamily>,
    /// (name, help, value) of untyped samples: see [`Scrape::untyped`].
    untyped: Vec<(&'static str, &'static str, f64)>,
}

impl Default for Scrape {
    fn default() -> Self {
        Scrape::new()
    }
}

impl Scrape {
    pub fn new() -> Scrape {
        Scrape { registry: Registry::new(), families: Vec::new(), untyped: Vec::new() }
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let g = Gauge::new(name, help).expect("a valid gauge name");
        g.set(value);
        self.registry.register(Box::new(g)).expect("each name once per scrape");
    }

    /// A gauge with one label: a series per `(label value, value)`.
    pub fn gauge_by(&mut self, name: &str, help: &str, label: &str, values: impl Iterator<Item = (String, u64)>) {
        let g = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("a valid gauge name");
        for (l, v) in values {
            g.with_label_values(&[l.as_str()]).set(v as i64);
        }
        self.registry.register(Box::new(g)).expect("each name once per scrape");
    }

    /// A value that goes up and down under a name ending in `_total`
    /// (etcd's `etcd_debugging_mvcc_keys_total` is such a gauge): typed
    /// `untyped`, which `promtool check metrics` accepts with that suffix
    /// where it refuses a gauge. The crate's text encoder has no untyped
    /// samples, so these lines are written after its output.
    pub fn untyped(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.untyped.push((name, help, value));
    }

    /// A counter with one label whose values the store keeps: a series
    /// per `(label value, value)`; none at all without values, as
    /// client_golang leaves out a vector with no series.
    pub fn counter_by(&mut self, name: &str, help: &str, label: &str, values: impl Iterator<Item = (String, u64)>) {
        let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("a valid counter name");
        for (l, v) in values {
            c.with_label_values(&[l.as_str()]).inc_by(v);
        }
        self.registry.register(Box::new(c)).expect("each name once per scrape");
    }

    /// A counter whose value the store keeps.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c = IntCounter::new(name, help).expect("a valid counter name");
        c.inc_by(value);
        self.registry.register(Box::new(c)).expect("each name once per scrape");
    }

    /// A histogram family of `series`, each labelled `label` = its value.
    fn histograms_by<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        series: impl Iterator<Item = (String, &'a Histogram)>,
    ) {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(prometheus::proto::MetricType::HISTOGRAM);
        let mut metrics = Vec::new();
        for (value, h) in series {
            let Some(mut m) = h.collect_one() else { continue };
            let mut pair = prometheus::proto::LabelPair::default();
            pair.set_name(label.to_string());
            pair.set_value(value);
            m.set_label(vec![pair]);
            metrics.push(m);
        }
        // Families without series are left out, as client_golang does.
        if !metrics.is_empty() {
            family.set_metric(metrics);
            self.families.push(family);
        }
    }

    /// The Prometheus text of the process-wide metrics and these, every
    /// family once, sorted by name.
    pub fn render(self) -> String {
        let mut families = METRICS.registry.gather();
        families.extend(etcd::ETCD.registry.gather());
        families.extend(self.registry.gather());
        families.extend(self.families);
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut text = prometheus::TextEncoder::new().encode_to_string(&families).expect("families are well formed");
        for (name, help, value) in self.untyped {
            text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} untyped\n{name} {value}\n"));
        }
        text
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
    /// Where every field is registered.
    registry: Registry,
}

pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let c = |name: &str, help: &str| Counter::new(&r, name, help);
        Metrics {
            lease_fast_path_reads: c(
                "tessera_lease_fast_path_reads_total",
                "Linearizable region reads served from a valid leader lease.",
            ),
            read_index_reads: c(
                "tessera_read_index_reads_total",
                "Linearizable region reads served after a ReadIndex round.",
            ),
            lease_renewals: c("tessera_lease_renewals_total", "Leader lease renewals."),
            fsyncs: c(
                "tessera_fsyncs_total",
                "Synced RocksDB writes of raft state (one per poll round with ready regions).",
            ),
            entries_persisted: c(
                "tessera_raft_entries_persisted_total",
                "Raft log entries written by synced poll-round writes.",
            ),
            poll_rounds: c("tessera_poll_rounds_total", "Batch-system poll rounds."),
            proposals: c("tessera_proposals_total", "Raft proposals."),
            applied_entries: c("tessera_applied_entries_total", "Raft entries applied."),
            peer_batches_sent: c(
                "tessera_peer_batches_sent_total",
                "Batches of raft messages sent to other stores (one per destination per poll round).",
            ),
            peer_batches_dropped: c(
                "tessera_peer_batches_dropped_total",
                "Batches of raft messages dropped because a peer link was down or backed up.",
            ),
            peer_messages_sent: c("tessera_peer_messages_sent_total", "Raft messages sent to other stores."),
            peer_messages_received: c(
                "tessera_peer_messages_received_total",
                "Raft messages received from other stores.",
            ),
            revision_requests: c(
                "tessera_revision_requests_total",
                "Requests for revisions sent to the leader store (at most one in flight per store).",
            ),
            revision_asks: c(
                "tessera_revision_asks_total",
                "Region leaders' asks for revisions carried by those requests.",
            ),
            forwarded_calls: c(
                "tessera_forwarded_calls_total",
                "Client calls this store passed on to the leader store.",
            ),
            region_lease_reads: c(
                "tessera_region_lease_reads_total",
                "Pieces of linearizable reads a region leader here served at a read point under its region lease.",
            ),
            read_points: c(
                "tessera_read_points_total",
                "Read points this (the leader) store's sequencer gave linearizable reads.",
            ),
            read_point_requests: c(
                "tessera_read_point_requests_total",
                "Requests for a read point sent to the leader store (at most one in flight per store).",
            ),
            fsync_seconds: Histogram::new(
                &r,
                "tessera_fsync_duration_seconds",
                "Latency of synced raft writes.",
                FSYNC_BOUNDS,
            ),
            registry: r,
        }
    }

    /// What derives from the counters at scrape time.
    pub fn scrape(&self, s: &mut Scrape) {
        let fsyncs = self.fsyncs.get();
        let per = if fsyncs == 0 { 0.0 } else { self.entries_persisted.get() as f64 / fsyncs as f64 };
        s.gauge("tessera_raft_entries_per_fsync", "Average raft entries persisted per fsync since start.", per);
    }
}
