//! /metrics of a running three-member cluster, scraped as Prometheus
//! does (docs/ops.md, "Metrics under etcd's names"): the peer round trip
//! histogram labelled with each other member's id as etcd prints it, the
//! key count, and tessera's region state gauges; and Prometheus' own
//! checker, `promtool check metrics`, passes on every member's /metrics.

mod common;

use std::time::{Duration, Instant};

use common::http::{metric, scrape};
use common::{connect, Cluster};
use etcd_client::GetOptions;

const READY: Duration = common::CLUSTER_READY;
const KEYS: usize = 25;
/// Debian's prometheus package (scripts/setup.sh installs it).
const PROMTOOL: &str = "/usr/bin/promtool";

/// `promtool check metrics` on `text`: what it printed, if it failed.
fn promtool_check(text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    assert!(std::path::Path::new(PROMTOOL).is_file(), "{PROMTOOL} is missing: run scripts/setup.sh");
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY;
    while !f() {
        assert!(Instant::now() < deadline, "not within {READY:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_clusters_metrics_carry_peer_round_trips_keys_and_region_states() {
    let cluster = Cluster::start(3);
    let endpoints = cluster.endpoints();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Member ids, and each endpoint's own.
    let (all, own): (Vec<u64>, Vec<u64>) = rt.block_on(async {
        let mut c = connect(&endpoints[0]).await;
        let all = c.member_list().await.unwrap().members().iter().map(|m| m.id()).collect();
        let mut own = Vec::new();
        for e in &endpoints {
            own.push(connect(e).await.status().await.unwrap().header().unwrap().member_id());
        }
        (all, own)
    });
    assert_eq!(all.len(), 3);

    // Keys written through one member; deleting one keeps it counted (as
    // etcd's key index does until compaction). Every member applies them
    // before its first scrape (the count is kept for 30 s).
    rt.block_on(async {
        let mut c = connect(&endpoints[0]).await;
        for i in 0..KEYS {
            c.put(format!("key{i:02}"), "v", None).await.unwrap();
        }
        c.delete("key00", None).await.unwrap();
        for e in &endpoints {
            let mut c = connect(e).await;
            let live = GetOptions::new().with_prefix().with_count_only().with_serializable();
            let deadline = Instant::now() + READY;
            while c.get("key", Some(live.clone())).await.unwrap().count() != (KEYS - 1) as i64 {
                assert!(Instant::now() < deadline, "{e} did not apply the puts within {READY:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    for (i, e) in endpoints.iter().enumerate() {
        assert_eq!(metric(e, "etcd_debugging_mvcc_keys_total"), Some(KEYS as u64), "{e}");
        for other in all.iter().filter(|id| **id != own[i]) {
            let series = format!("etcd_network_peer_round_trip_time_seconds_count{{To=\"{other:x}\"}}");
            wait_until(&format!("{e} probed member {other:x}"), || metric(e, &series).is_some_and(|n| n > 0));
            let bucket = format!("etcd_network_peer_round_trip_time_seconds_bucket{{To=\"{other:x}\",le=\"0.8192\"}}");
            assert!(metric(e, &bucket).is_some(), "{e} lacks {bucket}");
        }
        let own_series = format!("etcd_network_peer_round_trip_time_seconds_count{{To=\"{:x}\"}}", own[i]);
        assert_eq!(metric(e, &own_series), None, "a member does not probe itself");
    }

    // Region states: every member has every region; each region has one
    // leader in the cluster, whose lease becomes valid.
    let regions = metric(&endpoints[0], "tessera_regions").expect("tessera_regions");
    assert!(regions >= 4, "the test cluster starts with split keys: {regions}");
    wait_until("one leader per region over the members", || {
        let leaders: u64 = endpoints.iter().filter_map(|e| metric(e, "tessera_region_leaders")).sum();
        leaders == regions
    });
    wait_until("every region's lease valid at its leader", || {
        let valid: u64 = endpoints.iter().filter_map(|e| metric(e, "tessera_region_leases_valid")).sum();
        valid == regions
    });
    for e in &endpoints {
        let text = scrape(e).expect("/metrics");
        if let Err(said) = promtool_check(&text) {
            panic!("promtool check metrics failed on {e}:\n{said}\n--- /metrics ---\n{text}");
        }
        assert_eq!(metric(e, "tessera_regions"), Some(regions), "{e}");
        let awake = metric(e, "tessera_regions_awake").expect("tessera_regions_awake");
        assert!(awake <= regions, "{e}: {awake} awake of {regions}");
    }
}

/// The series etcd's own alert rules (the etcd mixin shipped with etcd
/// 3.5) read, by alert, with a label fragment the expression selects on:
/// every one must be on a member's /metrics, or the alert cannot fire.
/// `etcdMembersDown` also reads `etcd_network_peer_sent_failures_total`,
/// which (as in etcd) has series only once a send failed: checked below
/// with a member down. `up` is Prometheus' own.
const ALERT_SERIES: &[(&str, &str, &str)] = &[
    ("etcdNoLeader", "etcd_server_has_leader", ""),
    ("etcdHighNumberOfLeaderChanges", "etcd_server_leader_changes_seen_total", ""),
    ("etcdHighNumberOfFailedGRPCRequests", "grpc_server_handled_total", "grpc_code=\"OK\""),
    ("etcdGRPCRequestsSlow", "grpc_server_handling_seconds_bucket", "grpc_type=\"unary\""),
    ("etcdMemberCommunicationSlow", "etcd_network_peer_round_trip_time_seconds_bucket", "To=\""),
    ("etcdHighNumberOfFailedProposals", "etcd_server_proposals_failed_total", ""),
    ("etcdHighFsyncDurations", "etcd_disk_wal_fsync_duration_seconds_bucket", "le=\"0.512\""),
    ("etcdHighCommitDurations", "etcd_disk_backend_commit_duration_seconds_bucket", "le=\"0.256\""),
    ("etcdDatabaseQuotaLowSpace", "etcd_mvcc_db_total_size_in_bytes", ""),
    ("etcdDatabaseQuotaLowSpace", "etcd_server_quota_backend_bytes", ""),
    ("etcdExcessiveDatabaseGrowth", "etcd_mvcc_db_total_size_in_bytes", ""),
    ("etcdDatabaseHighFragmentationRatio", "etcd_mvcc_db_total_size_in_use_in_bytes", ""),
];

/// Whether `text` has a sample of `name` whose labels contain `labels`.
fn has_series(text: &str, name: &str, labels: &str) -> bool {
    text.lines().any(|l| {
        let rest = l.strip_prefix(name).unwrap_or("#");
        (rest.starts_with('{') || rest.starts_with(' ')) && l.contains(labels)
    })
}

#[test]
fn every_series_etcds_alert_rules_read_is_served() {
    let mut cluster = Cluster::start(3);
    let endpoints = cluster.endpoints();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // A put through each member: gRPC series start with a member's first
    // call.
    rt.block_on(async {
        for e in &endpoints {
            connect(e).await.put("alert", "v", None).await.unwrap();
        }
    });
    for e in &endpoints {
        let missing = || {
            let text = scrape(e).unwrap_or_default();
            let missing = ALERT_SERIES.iter().filter(|(_, name, labels)| !has_series(&text, name, labels));
            missing.map(|(alert, name, labels)| format!("{alert}: {name}{{{labels}}}")).collect::<Vec<_>>()
        };
        let deadline = Instant::now() + READY;
        while !missing().is_empty() {
            assert!(Instant::now() < deadline, "{e} lacks series etcd's alerts read: {:?}", missing());
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = scrape(e).unwrap();
        let quota = format!("etcd_server_quota_backend_bytes {}", 2u64 << 30);
        assert!(text.contains(&quota), "{e}: etcd's default quota: {quota}");
    }

    // etcdMembersDown: with member 2 down, the others count failed sends to it.
    let down =
        rt.block_on(async { connect(&endpoints[2]).await.status().await.unwrap().header().unwrap().member_id() });
    cluster.kill9(2);
    let series = format!("etcd_network_peer_sent_failures_total{{To=\"{down:x}\"}}");
    for e in &endpoints[..2] {
        wait_until(&format!("{e} counts failed sends to the member down"), || {
            metric(e, &series).is_some_and(|n| n > 0)
        });
    }
}
