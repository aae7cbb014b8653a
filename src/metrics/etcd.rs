//! Metrics under etcd's names, beside tessera's own (issue [ops]): what
//! etcd's Grafana dashboard and alert rules read, with etcd's types,
//! labels and histogram buckets. docs/ops.md ("Metrics under etcd's
//! names") says what each one measures in tessera.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use super::{Counter, Histogram, Scrape};

/// etcd's disk latency buckets: 1 ms to 8.192 s, doubling.
const DISK_BOUNDS: &[f64] =
    &[0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// etcd's peer round trip buckets: 0.1 ms to 819.2 ms, doubling.
const PEER_RTT_BOUNDS: &[f64] =
    &[0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192];
const PEER_RTT: &str = "etcd_network_peer_round_trip_time_seconds";
const PEER_RTT_HELP: &str = "Round-Trip-Time histogram between peers.";
const PEER_SEND_FAILURES: &str = "etcd_network_peer_sent_failures_total";
const PEER_SEND_FAILURES_HELP: &str = "The total number of send failures from peers.";

pub struct EtcdMetrics {
    /// Where the process-wide ones are registered.
    pub(super) registry: Registry,
    /// Leader changes of the meta group seen by this member.
    pub leader_changes: Counter,
    /// Proposals that did not commit.
    pub proposals_failed: Counter,
    /// Synced raft log writes (etcd's WAL fsync).
    pub wal_fsync: Histogram,
    /// Writes of applied state (etcd's backend commit).
    pub backend_commit: Histogram,
    /// Round trips of probes to other members, by their store id (etcd
    /// labels them with the member id: see [`StoreGauges::member_ids`]).
    peer_rtt: DashMap<u64, Histogram>,
    /// gRPC calls started, by type, service and method.
    grpc_started: IntCounterVec,
    /// gRPC calls finished, by type, service, method and status code.
    grpc_handled: IntCounterVec,
    /// How long finished gRPC calls took, by type, service and method
    /// (etcd's alert etcdGRPCRequestsSlow reads it).
    grpc_handling: HistogramVec,
    /// Raft messages to another member that could not be sent, by its
    /// store id (etcd's alert etcdMembersDown reads them).
    peer_send_failures: DashMap<u64, AtomicU64>,
    /// `--quota-backend-bytes` (etcd's alert etcdDatabaseQuotaLowSpace).
    pub quota_backend_bytes: IntGauge,
}

pub static ETCD: std::sync::LazyLock<EtcdMetrics> = std::sync::LazyLock::new(EtcdMetrics::new);

/// What the store knows at scrape time.
pub struct StoreGauges {
    pub has_leader: bool,
    pub applied_entries: u64,
    pub pending_proposals: u64,
    pub db_bytes: u64,
    /// Keys with a version (etcd's key index: live keys and deleted ones
    /// not compacted yet).
    pub keys: u64,
    /// (store id, member id) of the members; stores not listed have left.
    pub member_ids: Vec<(u64, u64)>,
}

/// The labels of the gRPC counters, as go-grpc-prometheus names them.
const GRPC_LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];

impl EtcdMetrics {
    fn new() -> EtcdMetrics {
        let r = Registry::new();
        let grpc = |name: &str, help: &str, code: bool| {
            let mut labels = GRPC_LABELS.to_vec();
            if code {
                labels.push("grpc_code");
            }
            let v = IntCounterVec::new(Opts::new(name, help), &labels).expect("valid counter options");
            r.register(Box::new(v.clone())).expect("each name registered once");
            v
        };
        EtcdMetrics {
            leader_changes: Counter::new(
                &r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            proposals_failed: Counter::new(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            wal_fsync: Histogram::new(
                &r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                DISK_BOUNDS,
            ),
            backend_commit: Histogram::new(
                &r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                DISK_BOUNDS,
            ),
            peer_rtt: DashMap::new(),
            grpc_started: grpc("grpc_server_started_total", "Total number of RPCs started on the server.", false),
            grpc_handled: grpc(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                true,
            ),
            grpc_handling: {
                let opts = HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                );
                let h = HistogramVec::new(opts, &GRPC_LABELS).expect("valid histogram options");
                r.register(Box::new(h.clone())).expect("each name registered once");
                h
            },
            peer_send_failures: DashMap::new(),
            quota_backend_bytes: {
                let g =
                    IntGauge::new("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.")
                        .expect("a valid gauge name");
                r.register(Box::new(g.clone())).expect("each name registered once");
                g
            },
            registry: r,
        }
    }

    /// Raft messages for store `to` were dropped: its link is down or
    /// backed up.
    pub fn peer_send_failed(&self, to: u64) {
        self.peer_send_failures.entry(to).or_default().fetch_add(1, Ordering::Relaxed);
    }

    /// A probe of store `to` came back after `rtt`.
    pub fn peer_round_trip(&self, to: u64, rtt: std::time::Duration) {
        match self.peer_rtt.get(&to) {
            Some(h) => h.observe(rtt),
            None => self
                .peer_rtt
                .entry(to)
                .or_insert_with(|| Histogram::unregistered(PEER_RTT, PEER_RTT_HELP, PEER_RTT_BOUNDS))
                .observe(rtt),
        }
    }

    pub fn grpc_started(&self, path: &str) {
        self.grpc_started.with_label_values(&labels(path)).inc();
    }

    /// A call to `path` ended with gRPC status `code`, `took` after it started.
    pub fn grpc_handled(&self, path: &str, code: i32, took: Duration) {
        let [kind, service, method] = labels(path);
        self.grpc_handled.with_label_values(&[kind, service, method, code_name(code)]).inc();
        self.grpc_handling.with_label_values(&[kind, service, method]).observe(took.as_secs_f64());
    }

    /// The store's part of a scrape under etcd's names.
    pub fn scrape(&self, g: &StoreGauges, s: &mut Scrape) {
        s.gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            g.has_leader as u8 as f64,
        );
        // etcd declares these two gauges; they only grow, and a gauge named
        // _total fails promtool's lint, so they are counters here. Entries
        // are applied in the poll round that learns them committed.
        s.counter(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            g.applied_entries,
        );
        s.counter(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            g.applied_entries,
        );
        s.gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            g.pending_proposals as f64,
        );
        s.untyped("etcd_debugging_mvcc_keys_total", "Total number of keys.", g.keys as f64);
        s.gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            g.db_bytes as f64,
        );
        s.gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            g.db_bytes as f64,
        );
        // One series per member, labelled `To` with its id in hex as etcd
        // prints member ids.
        let rtts: Vec<(u64, Histogram)> = g
            .member_ids
            .iter()
            .filter_map(|(store, member)| Some((*member, self.peer_rtt.get(store)?.clone())))
            .collect();
        s.histograms_by(PEER_RTT, PEER_RTT_HELP, "To", rtts.iter().map(|(member, h)| (format!("{member:x}"), h)));
        let failures = g.member_ids.iter().filter_map(|(store, member)| {
            let n = self.peer_send_failures.get(store)?.load(Ordering::Relaxed);
            Some((format!("{member:x}"), n))
        });
        s.counter_by(PEER_SEND_FAILURES, PEER_SEND_FAILURES_HELP, "To", failures);
    }
}

/// `grpc_type`, `grpc_service` and `grpc_method` of a method path
/// ("/etcdserverpb.KV/Range").
fn labels(path: &str) -> [&str; 3] {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let kind = match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "Observe" => "server_stream",
        _ => "unary",
    };
    [kind, service, method]
}

/// gRPC's name of a status code, as grpc-go prints it.
pub fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("Unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_lines_carry_etcds_labels() {
        let m = EtcdMetrics::new();
        m.grpc_started("/etcdserverpb.KV/Range");
        m.grpc_handled("/etcdserverpb.KV/Range", 0, Duration::from_millis(3));
        m.grpc_handled("/etcdserverpb.Watch/Watch", 14, Duration::from_secs(20));
        let out = prometheus::TextEncoder::new().encode_to_string(&m.registry.gather()).unwrap();
        assert!(out.contains(
            "grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1"
        ));
        assert!(out.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\","));
        assert!(out.contains(
            "grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 1"
        ));
        assert!(out.contains(
            "grpc_server_handling_seconds_bucket{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\",le=\"0.005\"} 1"
        ));
        assert!(out.contains(
            "grpc_server_handling_seconds_bucket{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\",le=\"10\"} 0"
        ));
        assert_eq!(code_name(99), "Unknown");
    }

    #[test]
    fn peer_round_trips_are_labelled_with_member_ids_in_hex() {
        let m = EtcdMetrics::new();
        m.peer_round_trip(2, std::time::Duration::from_micros(300));
        m.peer_round_trip(3, std::time::Duration::from_secs(2));
        m.peer_send_failed(3);
        m.peer_send_failed(3);
        let g = StoreGauges {
            has_leader: true,
            applied_entries: 0,
            pending_proposals: 0,
            db_bytes: 0,
            keys: 0,
            member_ids: vec![(1, 0xa1), (2, 0xb2c3), (3, 0xd4)],
        };
        let mut s = Scrape::new();
        m.scrape(&g, &mut s);
        let out = s.render();
        let name = PEER_RTT;
        for line in [
            format!("{name}_bucket{{To=\"b2c3\",le=\"0.0002\"}} 0"),
            format!("{name}_bucket{{To=\"b2c3\",le=\"0.0004\"}} 1"),
            format!("{name}_bucket{{To=\"d4\",le=\"0.8192\"}} 0"),
            format!("{name}_bucket{{To=\"d4\",le=\"+Inf\"}} 1"),
            format!("{name}_count{{To=\"b2c3\"}} 1"),
        ] {
            assert!(out.contains(&line), "no {line} in\n{out}");
        }
        assert!(out.contains("etcd_network_peer_sent_failures_total{To=\"d4\"} 2"), "{out}");
        assert!(!out.contains("To=\"a1\""), "this store has no series of its own");
    }
}
