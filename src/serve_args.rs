//! `tessera serve`'s flags: what a store is started with (etcd's flags
//! reach them through `config::resolve`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser};

use tessera::router::auto_split::AutoSplit;

use crate::config;

/// `tessera serve`'s own parser, for the arguments the etcd
/// configuration resolver (`config::resolve`) hands it.
#[derive(Parser)]
#[command(
    name = "tessera serve",
    about = "Run a store serving the etcd v3 gRPC API.",
    after_help = "Every etcd 3.5 server flag is also accepted: those tessera has a meaning for are listed above, \
the others print one warning line each (certificate revocation lists, discovery, the v2 proxy and \
--force-new-cluster are refused when asked for). TLS: docs/security.md. Any flag can come from an ETCD_* environment variable (--data-dir: ETCD_DATA_DIR) or from etcd's \
YAML --config-file. See docs/ops.md, \"Starting tessera as etcd\"."
)]
pub struct ServeCli {
    #[command(flatten)]
    pub args: ServeArgs,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Human-readable name of this member (as etcd's --name).
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Directory holding the store's RocksDB (created if missing).
    #[arg(long, default_value = "tessera-data")]
    pub data_dir: PathBuf,
    /// Comma-separated URLs to serve clients on (http://host:port, or
    /// https:// with --cert-file or --auto-tls; both on one port serve
    /// both). Port 0 picks a free port; the chosen address is printed on stdout.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    pub listen_client_urls: Vec<String>,
    /// Comma-separated client URLs to advertise to clients (member list).
    /// Default: the client URLs as bound (a port 0 resolved).
    #[arg(long, value_delimiter = ',')]
    pub advertise_client_urls: Vec<String>,
    /// Every member of a new cluster: name=http://peer-host:port,... (the same
    /// list, in the same order, on every member, as etcd's flag). Empty or
    /// one member: a single store.
    #[arg(long, default_value = "")]
    pub initial_cluster: String,
    /// `new` (bootstrap with --initial-cluster) or `existing` (join a running
    /// cluster after `etcdctl member add`; ignored once the data dir holds a store).
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// Comma-separated URLs to listen on for other members (raft messages
    /// and forwarded client calls). Default: this member's --initial-cluster URL.
    #[arg(long, value_delimiter = ',')]
    pub listen_peer_urls: Vec<String>,
    /// This member's peer URLs as the others reach them; must match its
    /// --initial-cluster entry.
    #[arg(long, value_delimiter = ',')]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Comma-separated URLs serving /metrics and /health over plain HTTP.
    #[arg(long, value_delimiter = ',')]
    pub listen_metrics_urls: Vec<String>,
    /// Comma-separated URLs serving the client port's HTTP endpoints
    /// (/health, /livez, /readyz, /version, /metrics) alone, as etcd's;
    /// the --listen-client-urls keep serving them too.
    #[arg(long, value_delimiter = ',')]
    pub listen_client_http_urls: Vec<String>,
    /// Milliseconds between leader heartbeats (etcd's; one raft tick).
    /// Given with or without --election-timeout, the other takes etcd's
    /// default (100 / 1000); given neither, tessera keeps 100 ms ticks
    /// with a heartbeat every 2 and an election timeout of 10. Give every
    /// member the same values (docs/ops.md).
    #[arg(long)]
    pub heartbeat_interval: Option<u64>,
    /// Milliseconds without a leader before a follower campaigns (etcd's;
    /// at least 5 heartbeat intervals, at most 50000).
    #[arg(long)]
    pub election_timeout: Option<u64>,
    /// Largest client request accepted, in bytes (etcd's default: 1.5 MiB).
    #[arg(long, default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,
    /// Most operations in one txn branch.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Storage quota: past it the NOSPACE alarm goes up and writes that
    /// add data are refused (0: etcd's default, 2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Auto-compaction as etcd's: "periodic" (retention a duration, or a
    /// number of hours) or "revision" (retention a number of revisions).
    #[arg(long, default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// How much history auto-compaction keeps (0: no auto-compaction).
    #[arg(long, default_value = "0")]
    pub auto_compaction_retention: String,
    /// How often watchers that asked for progress notifications get one.
    #[arg(long, default_value = "10m", value_parser = tessera::bench::parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Comma-separated keys at which a NEW store splits its keyspace into
    /// regions (k1,k2 gives three regions). Ignored once the data dir exists.
    #[arg(long, value_delimiter = ',')]
    pub initial_split_keys: Vec<String>,
    /// A file of keys, one per line, at which a NEW store splits its
    /// keyspace (sorted, no duplicates; `hex:` lines for binary keys; see
    /// docs/design.md, "Bulk regions"). Ignored once the data dir exists.
    #[arg(long, conflicts_with = "initial_split_keys")]
    pub initial_split_keys_file: Option<PathBuf>,
    /// Regions split by themselves past --region-max-bytes or
    /// --region-max-keys (docs/design.md, "Auto-split"); false turns it off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_split: bool,
    /// Live bytes (keys + values) past which a region splits (TiKV's 144 MiB).
    #[arg(long, default_value_t = AutoSplit::default().max_bytes)]
    pub region_max_bytes: u64,
    /// Live keys past which a region splits (TiKV's 1,440,000).
    #[arg(long, default_value_t = AutoSplit::default().max_keys)]
    pub region_max_keys: u64,
    /// How often regions written since the last look are looked at.
    #[arg(long, default_value = "10s", value_parser = tessera::bench::parse_duration)]
    pub split_check_interval: Duration,
    /// Also merge neighbours holding together under half of both thresholds
    /// (one pair per look; with --auto-split).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_merge: bool,
    /// Applied raft log entries a region keeps; past four times this, a
    /// member that lags further catches up by a snapshot (docs/cluster.md,
    /// "Snapshots").
    #[arg(long, default_value_t = tessera::raftstore::RaftConfig::default().log_gc_threshold)]
    pub raft_log_gc_threshold: u64,
    /// Raft poller threads (default: half the cores, at least one).
    #[arg(long)]
    pub pollers: Option<usize>,
    /// Log level: error, warn, info, debug (etcd's panic and fatal mean
    /// error), or a tracing directive; RUST_LOG overrides.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// etcd's logger: zap is the only one (capnslog is refused, as etcd 3.5).
    #[arg(long, default_value = "zap")]
    pub logger: String,
    /// Comma-separated log outputs: default (stderr), stderr, stdout,
    /// systemd/journal (stderr), or file paths (appended to).
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub log_outputs: Vec<String>,
    /// json (one object per line with etcd's level, ts, caller and msg
    /// fields: etcd 3.5's zap logger writes JSON by default) or console (text).
    #[arg(long, default_value = "json")]
    pub log_format: String,
    /// Print the version and exit.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub version: bool,
    /// Crash injection for tests: abort at the N-th time the named point is
    /// reached (NAME or NAME:N; see src/failpoint.rs).
    #[arg(long, hide = true)]
    pub failpoint: Option<String>,
    #[command(flatten)]
    pub tls: config::tls::TlsArgs,
}
