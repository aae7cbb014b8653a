//! Metrics under etcd's names, beside tessera's own (issue [ops]): what
//! etcd's Grafana dashboard and alert rules read, with etcd's types,
//! labels and histogram buckets. docs/ops.md ("Metrics under etcd's
//! names") says what each one measures in tessera.

use std::fmt::Write;

use dashmap::DashMap;

use super::{Counter, Histogram};

/// etcd's disk latency buckets: 1 ms to 8.192 s, doubling.
const DISK_BOUNDS: &[f64] =
    &[0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// etcd's peer round trip buckets: 0.1 ms to 819.2 ms, doubling.
const PEER_RTT_BOUNDS: &[f64] = &[
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192,
];

pub struct EtcdMetrics {
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
    /// gRPC calls started, by method path.
    grpc_started: DashMap<String, Counter>,
    /// gRPC calls finished, by method path, then status code.
    grpc_handled: DashMap<String, Vec<(i32, Counter)>>,
}

pub static ETCD: std::sync::LazyLock<EtcdMetrics> = std::sync::LazyLock::new(EtcdMetrics::new);

/// What the store knows at render time.
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

impl EtcdMetrics {
    fn new() -> EtcdMetrics {
        EtcdMetrics {
            leader_changes: Counter::default(),
            proposals_failed: Counter::default(),
            wal_fsync: Histogram::new(DISK_BOUNDS),
            backend_commit: Histogram::new(DISK_BOUNDS),
            peer_rtt: DashMap::new(),
            grpc_started: DashMap::new(),
            grpc_handled: DashMap::new(),
        }
    }

    /// A probe of store `to` came back after `rtt`.
    pub fn peer_round_trip(&self, to: u64, rtt: std::time::Duration) {
        match self.peer_rtt.get(&to) {
            Some(h) => h.observe(rtt),
            None => self.peer_rtt.entry(to).or_insert_with(|| Histogram::new(PEER_RTT_BOUNDS)).observe(rtt),
        }
    }

    pub fn grpc_started(&self, path: &str) {
        // Looked up without a key of its own first: every call passes here.
        match self.grpc_started.get(path) {
            Some(c) => c.inc(),
            None => self.grpc_started.entry(path.to_string()).or_default().inc(),
        }
    }

    /// A call to `path` ended with gRPC status `code`.
    pub fn grpc_handled(&self, path: &str, code: i32) {
        if let Some(codes) = self.grpc_handled.get(path) {
            if let Some((_, n)) = codes.iter().find(|(c, _)| *c == code) {
                n.inc();
                return;
            }
        }
        let mut codes = self.grpc_handled.entry(path.to_string()).or_default();
        match codes.iter().find(|(c, _)| *c == code) {
            Some((_, n)) => n.inc(),
            None => {
                let n = Counter::default();
                n.inc();
                codes.push((code, n));
            }
        }
    }

    pub fn render(&self, g: &StoreGauges, out: &mut String) {
        let mut gauge = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            "etcd_server_has_leader",
            "gauge",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            g.has_leader as u64,
        );
        gauge(
            "etcd_server_leader_changes_seen_total",
            "counter",
            "The number of leader changes seen.",
            self.leader_changes.get(),
        );
        // Entries are applied in the poll round that learns them committed.
        gauge(
            "etcd_server_proposals_committed_total",
            "gauge",
            "The total number of consensus proposals committed.",
            g.applied_entries,
        );
        gauge(
            "etcd_server_proposals_applied_total",
            "gauge",
            "The total number of consensus proposals applied.",
            g.applied_entries,
        );
        gauge(
            "etcd_server_proposals_pending",
            "gauge",
            "The current number of pending proposals to commit.",
            g.pending_proposals,
        );
        gauge(
            "etcd_server_proposals_failed_total",
            "counter",
            "The total number of failed proposals seen.",
            self.proposals_failed.get(),
        );
        gauge("etcd_debugging_mvcc_keys_total", "gauge", "Total number of keys.", g.keys);
        gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "gauge",
            "Total size of the underlying database physically allocated in bytes.",
            g.db_bytes,
        );
        gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "gauge",
            "Total size of the underlying database logically in use in bytes.",
            g.db_bytes,
        );
        self.wal_fsync.render(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            out,
        );
        self.backend_commit.render(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            out,
        );
        self.render_peer_rtt(&g.member_ids, out);
        self.render_grpc(out);
    }

    /// One series per member, labelled `To` with its id in hex as etcd
    /// prints member ids.
    fn render_peer_rtt(&self, member_ids: &[(u64, u64)], out: &mut String) {
        let name = "etcd_network_peer_round_trip_time_seconds";
        let _ = writeln!(out, "# HELP {name} Round-Trip-Time histogram between peers.\n# TYPE {name} histogram");
        for (store, member) in member_ids {
            if let Some(h) = self.peer_rtt.get(store) {
                h.render_series(name, &format!("To=\"{member:x}\","), out);
            }
        }
    }

    fn render_grpc(&self, out: &mut String) {
        let name = "grpc_server_started_total";
        let _ = writeln!(out, "# HELP {name} Total number of RPCs started on the server.\n# TYPE {name} counter");
        for e in self.grpc_started.iter() {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(e.key()), e.value().get());
        }
        let name = "grpc_server_handled_total";
        let help = "Total number of RPCs completed on the server, regardless of success or failure.";
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for e in self.grpc_handled.iter() {
            for (code, n) in e.value() {
                let _ = writeln!(out, "{name}{{grpc_code=\"{}\",{}}} {}", code_name(*code), labels(e.key()), n.get());
            }
        }
    }
}

/// `grpc_method`, `grpc_service` and `grpc_type` of a method path
/// ("/etcdserverpb.KV/Range").
fn labels(path: &str) -> String {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let kind = match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" | "Observe" => "server_stream",
        _ => "unary",
    };
    format!("grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"")
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
        m.grpc_handled("/etcdserverpb.KV/Range", 0);
        m.grpc_handled("/etcdserverpb.Watch/Watch", 14);
        let mut out = String::new();
        m.render_grpc(&mut out);
        assert!(out.contains(
            "grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1"
        ));
        assert!(out.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\","));
        assert!(out.contains(
            "grpc_server_handled_total{grpc_code=\"Unavailable\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 1"
        ));
        assert_eq!(code_name(99), "Unknown");
    }
}
