//! Every etcd 3.5 server flag (etcd's `server/etcdmain/config.go` at
//! v3.5.33, with the etcd 2 flags it still accepts and ignores), and
//! etcd 3.6's `--log-format`, each with what tessera does with it.
//! docs/ops.md, "Starting tessera as etcd", is this table for operators.

/// How a flag takes its value (as Go's `flag` package reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `--flag value` or `--flag=value`.
    Value,
    /// A Go duration (`5s`, `1m30s`); in a config file, an integer of
    /// nanoseconds (etcd reads its YAML into `time.Duration` fields).
    Duration,
    /// Bare (`--flag` = true), `--flag=true|false`, or (tessera accepts it
    /// too) `--flag true|false`.
    Bool,
    /// An etcd 2 flag etcd 3.5 still accepts and ignores: bare or with any
    /// value.
    Legacy,
}

/// What tessera does with a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// Given to `tessera serve` under the same name.
    Honoured,
    /// Read by the configuration resolver itself (`--config-file`).
    Resolver,
    /// Accepted; one warning line says what tessera does instead.
    Ignored(&'static str),
    /// Refused when its value asks for `feature` (a non-empty value other
    /// than `off`, or true); otherwise ignored like [`Treatment::Ignored`].
    Unsupported { feature: &'static str, instead: &'static str },
}

#[derive(Clone, Copy, Debug)]
pub struct EtcdFlag {
    pub name: &'static str,
    pub kind: Kind,
    pub treatment: Treatment,
}

/// The flag named `name` (without dashes), if etcd has one.
pub fn lookup(name: &str) -> Option<&'static EtcdFlag> {
    ETCD_FLAGS.iter().find(|f| f.name == name)
}

use Kind::{Bool, Duration, Legacy, Value};
use Treatment::{Honoured, Ignored, Resolver};

const fn flag(name: &'static str, kind: Kind, treatment: Treatment) -> EtcdFlag {
    EtcdFlag { name, kind, treatment }
}

/// A TLS flag tessera refuses when it is given a value.
const fn unsupported_tls(name: &'static str, (feature, instead): (&'static str, &'static str)) -> EtcdFlag {
    flag(name, Value, Treatment::Unsupported { feature, instead })
}

const fn discovery(name: &'static str) -> EtcdFlag {
    let instead = "name every member in --initial-cluster";
    flag(name, Value, Treatment::Unsupported { feature: "discovery", instead })
}

const ONE_ROCKSDB: &str = "tessera keeps no snapshot or WAL files: one RocksDB under --data-dir holds logs and data";
const RAFT_LOG: &str = "each region keeps --raft-log-gc-threshold applied raft log entries for members that lag";
const BACKEND: &str = "tessera's backend is RocksDB, written once per poll round";
const KEEPALIVE: &str = "tessera keeps tonic's HTTP/2 defaults";
const V3_ONLY: &str = "tessera serves the v3 API only";
const NO_V2_PROXY: &str = "tessera has no v2 proxy";
const OWN_CLIENT: &str = "tessera never dials its own client port (it has no gRPC gateway); members dial each other with --peer-client-cert-file";
const NO_CRL: (&str, &str) =
    ("certificate revocation lists", "rotate the certificate files instead (they are read again for new connections)");
const NO_HOSTNAME: (&str, &str) = ("allowed hostnames", "use --peer-cert-allowed-cn, or a CA of its own per port");
const NO_AUTH: &str = "tessera has no authentication yet (Auth answers \"authentication is not enabled\")";
const NO_TRACING: &str = "tessera exports no OpenTelemetry traces";
const NO_CORRUPT_CHECK: &str =
    "tessera runs no corruption checks of its own (compare members with etcdctl endpoint hashkv)";
const NO_DISCOVERY: &str = "tessera has no discovery: members come from --initial-cluster";
const LEGACY: &str = "an etcd 2 flag that etcd 3.5 ignores too";

/// The table, in the order of etcd's `--help`.
pub const ETCD_FLAGS: &[EtcdFlag] = &[
    flag("config-file", Value, Resolver),
    // member
    flag("name", Value, Honoured),
    flag("data-dir", Value, Honoured),
    flag("wal-dir", Value, Ignored("the raft log lives in the RocksDB under --data-dir")),
    flag("snapshot-count", Value, Ignored("applied state is written to RocksDB every poll round, so there is no snapshot to trigger; each region keeps --raft-log-gc-threshold log entries")),
    flag("heartbeat-interval", Value, Honoured),
    flag("election-timeout", Value, Honoured),
    flag("initial-election-tick-advance", Bool, Ignored("tessera does not fast-forward election ticks (a single store campaigns at once)")),
    flag("listen-peer-urls", Value, Honoured),
    flag("listen-client-urls", Value, Honoured),
    flag("listen-client-http-urls", Value, Honoured),
    flag("max-snapshots", Value, Ignored(ONE_ROCKSDB)),
    flag("max-wals", Value, Ignored(ONE_ROCKSDB)),
    flag("quota-backend-bytes", Value, Honoured),
    flag("backend-bbolt-freelist-type", Value, Ignored(BACKEND)),
    flag("backend-batch-interval", Duration, Ignored(BACKEND)),
    flag("backend-batch-limit", Value, Ignored(BACKEND)),
    flag("max-txn-ops", Value, Honoured),
    flag("max-request-bytes", Value, Honoured),
    flag("max-concurrent-streams", Value, Ignored(KEEPALIVE)),
    flag("grpc-keepalive-min-time", Duration, Ignored(KEEPALIVE)),
    flag("grpc-keepalive-interval", Duration, Ignored(KEEPALIVE)),
    flag("grpc-keepalive-timeout", Duration, Ignored(KEEPALIVE)),
    flag("socket-reuse-port", Bool, Ignored("tessera's listeners do not set SO_REUSEPORT")),
    flag("socket-reuse-address", Bool, Ignored("tessera's listeners always set SO_REUSEADDR (Rust's std does)")),
    flag("raft-read-timeout", Duration, Ignored("peer links are gRPC streams with their own timeouts")),
    flag("raft-write-timeout", Duration, Ignored("peer links are gRPC streams with their own timeouts")),
    // clustering
    flag("initial-advertise-peer-urls", Value, Honoured),
    flag("initial-cluster", Value, Honoured),
    flag("initial-cluster-state", Value, Honoured),
    flag("initial-cluster-token", Value, Ignored("tessera's cluster id derives from --initial-cluster")),
    flag("advertise-client-urls", Value, Honoured),
    discovery("discovery"),
    flag("discovery-fallback", Value, Ignored(NO_DISCOVERY)),
    flag("discovery-proxy", Value, Ignored(NO_DISCOVERY)),
    discovery("discovery-srv"),
    discovery("discovery-srv-name"),
    flag("strict-reconfig-check", Bool, Ignored("tessera always refuses a member change that too few started members would carry")),
    flag("pre-vote", Bool, Ignored("tessera's regions always pre-vote")),
    flag("auto-compaction-retention", Value, Honoured),
    flag("auto-compaction-mode", Value, Honoured),
    flag("enable-v2", Bool, Ignored(V3_ONLY)),
    flag("experimental-enable-v2v3", Value, Ignored(V3_ONLY)),
    flag("v2-deprecation", Value, Ignored(V3_ONLY)),
    // proxy
    flag("proxy", Value, Treatment::Unsupported { feature: "the v2 proxy", instead: "run tessera as a member" }),
    flag("proxy-failure-wait", Value, Ignored(NO_V2_PROXY)),
    flag("proxy-refresh-interval", Value, Ignored(NO_V2_PROXY)),
    flag("proxy-dial-timeout", Value, Ignored(NO_V2_PROXY)),
    flag("proxy-write-timeout", Value, Ignored(NO_V2_PROXY)),
    flag("proxy-read-timeout", Value, Ignored(NO_V2_PROXY)),
    // security (docs/security.md)
    flag("cert-file", Value, Honoured),
    flag("key-file", Value, Honoured),
    flag("client-cert-file", Value, Ignored(OWN_CLIENT)),
    flag("client-key-file", Value, Ignored(OWN_CLIENT)),
    flag("client-cert-auth", Bool, Honoured),
    unsupported_tls("client-crl-file", NO_CRL),
    unsupported_tls("client-cert-allowed-hostname", NO_HOSTNAME),
    flag("trusted-ca-file", Value, Honoured),
    flag("auto-tls", Bool, Honoured),
    flag("peer-cert-file", Value, Honoured),
    flag("peer-key-file", Value, Honoured),
    flag("peer-client-cert-file", Value, Honoured),
    flag("peer-client-key-file", Value, Honoured),
    flag("peer-client-cert-auth", Bool, Honoured),
    flag("peer-trusted-ca-file", Value, Honoured),
    flag("peer-auto-tls", Bool, Honoured),
    unsupported_tls("peer-crl-file", NO_CRL),
    flag("peer-cert-allowed-cn", Value, Honoured),
    unsupported_tls("peer-cert-allowed-hostname", NO_HOSTNAME),
    flag("self-signed-cert-validity", Value, Honoured),
    flag("cipher-suites", Value, Honoured),
    flag("tls-min-version", Value, Honoured),
    flag("tls-max-version", Value, Honoured),
    flag("experimental-peer-skip-client-san-verification", Bool, Honoured),
    flag("cors", Value, Ignored("tessera's HTTP endpoints answer any origin")),
    flag("host-whitelist", Value, Ignored("tessera's HTTP endpoints answer any host")),
    // auth
    flag("auth-token", Value, Ignored(NO_AUTH)),
    flag("bcrypt-cost", Value, Ignored(NO_AUTH)),
    flag("auth-token-ttl", Value, Ignored(NO_AUTH)),
    // profiling, metrics, tracing
    flag("enable-pprof", Bool, Ignored("tessera has no profiling endpoint")),
    flag("metrics", Value, Ignored("/metrics always exports what etcd exports with --metrics extensive, grpc_server_handling_seconds included, and tessera's own metrics (docs/ops.md)")),
    flag("listen-metrics-urls", Value, Honoured),
    flag("experimental-enable-distributed-tracing", Bool, Ignored(NO_TRACING)),
    flag("experimental-distributed-tracing-address", Value, Ignored(NO_TRACING)),
    flag("experimental-distributed-tracing-service-name", Value, Ignored(NO_TRACING)),
    flag("experimental-distributed-tracing-instance-id", Value, Ignored(NO_TRACING)),
    flag("experimental-distributed-tracing-sampling-rate", Value, Ignored(NO_TRACING)),
    // logging
    flag("logger", Value, Honoured),
    flag("log-outputs", Value, Honoured),
    flag("log-level", Value, Honoured),
    flag("log-format", Value, Honoured),
    flag("enable-log-rotation", Bool, Ignored("tessera does not rotate its log files (logrotate's copytruncate works)")),
    flag("log-rotation-config-json", Value, Ignored("tessera does not rotate its log files (logrotate's copytruncate works)")),
    // v2 proxy gateway and gRPC gateway
    flag("enable-grpc-gateway", Bool, Ignored("tessera has no HTTP/JSON gateway: clients use gRPC")),
    // experimental
    flag("experimental-initial-corrupt-check", Bool, Ignored(NO_CORRUPT_CHECK)),
    flag("experimental-corrupt-check-time", Duration, Ignored(NO_CORRUPT_CHECK)),
    flag("experimental-compact-hash-check-enabled", Bool, Ignored(NO_CORRUPT_CHECK)),
    flag("experimental-compact-hash-check-time", Duration, Ignored(NO_CORRUPT_CHECK)),
    flag("experimental-enable-lease-checkpoint", Bool, Ignored("a lease gets its full TTL again on a leader change, as etcd without checkpoints")),
    flag("experimental-enable-lease-checkpoint-persist", Bool, Ignored("a lease gets its full TTL again on a leader change, as etcd without checkpoints")),
    flag("experimental-compaction-batch-limit", Value, Ignored("each region compacts its own history")),
    flag("experimental-compaction-sleep-interval", Duration, Ignored("each region compacts its own history")),
    flag("experimental-watch-progress-notify-interval", Duration, Honoured),
    flag("experimental-downgrade-check-time", Duration, Ignored("Downgrade answers UNIMPLEMENTED")),
    flag("experimental-warning-apply-duration", Duration, Ignored("tessera logs no slow-apply warnings")),
    flag("experimental-memory-mlock", Bool, Ignored("tessera does not lock its memory")),
    flag("experimental-txn-mode-write-with-shared-buffer", Bool, Ignored(BACKEND)),
    flag("experimental-stop-grpc-service-on-defrag", Bool, Ignored("defragment compacts RocksDB while tessera keeps serving")),
    flag("experimental-bootstrap-defrag-threshold-megabytes", Value, Ignored("tessera does not defragment at start")),
    flag("experimental-snapshot-catchup-entries", Value, Ignored(RAFT_LOG)),
    // unsafe
    flag("unsafe-no-fsync", Bool, Ignored("tessera always fsyncs its raft log")),
    flag("force-new-cluster", Bool, Treatment::Unsupported { feature: "--force-new-cluster", instead: "restore a snapshot (tessera snapshot restore) and start one member on it" }),
    flag("version", Bool, Honoured),
    // etcd 2 flags etcd 3.5 accepts and ignores
    flag("cluster-active-size", Legacy, Ignored(LEGACY)),
    flag("cluster-remove-delay", Legacy, Ignored(LEGACY)),
    flag("cluster-sync-interval", Legacy, Ignored(LEGACY)),
    flag("config", Legacy, Ignored(LEGACY)),
    flag("force", Legacy, Ignored(LEGACY)),
    flag("max-result-buffer", Legacy, Ignored(LEGACY)),
    flag("max-retry-attempts", Legacy, Ignored(LEGACY)),
    flag("peer-heartbeat-interval", Legacy, Ignored(LEGACY)),
    flag("peer-election-timeout", Legacy, Ignored(LEGACY)),
    flag("retry-interval", Legacy, Ignored(LEGACY)),
    flag("snapshot", Legacy, Ignored(LEGACY)),
    flag("v", Legacy, Ignored(LEGACY)),
    flag("vv", Legacy, Ignored(LEGACY)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_is_listed_once() {
        let mut names: Vec<&str> = ETCD_FLAGS.iter().map(|f| f.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a flag is listed twice");
        // etcd 3.5's 112 flags (125 with the etcd 2 ones), and log-format.
        assert_eq!(before, 126);
    }
}
