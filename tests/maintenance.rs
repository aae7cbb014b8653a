//! The etcd Maintenance service through the Rust `etcd-client` crate:
//! snapshot (etcd's format and trailer; restored with `tessera snapshot
//! restore`'s code into a store that serves the same data), HashKV, the storage
//! quota and its NOSPACE alarm, defragment, move-leader.

mod inproc;

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, GetOptions};
use inproc::{bounded, code_of, InProc};
use sha2::{Digest, Sha256};
use tonic::Code;

const SPLITS: &[&str] = &["b", "m", "t"];

async fn snapshot_bytes(c: &mut Client) -> Vec<u8> {
    let mut stream = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    while let Some(piece) = stream.message().await.unwrap() {
        bytes.extend_from_slice(piece.blob());
        if piece.remaining_bytes() == 0 {
            break;
        }
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restores_into_a_store_with_the_same_data_and_hash() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        for k in ["a", "c", "n", "u"] {
            c.put(k, format!("v-{k}"), None).await.unwrap();
        }
        c.delete("c", None).await.unwrap();
        let hash = c.hash_kv(0).await.unwrap();
        let bytes = snapshot_bytes(&mut c).await;
        assert_eq!(bytes.len() % 512, 32, "what etcdctl snapshot save takes for etcd's trailer");
        let (body, trailer) = bytes.split_at(bytes.len() - 32);
        assert_eq!(Sha256::digest(body).as_slice(), trailer);
        // Writes after the snapshot are not in it.
        c.put("later", "x", None).await.unwrap();
        node.stop().await;

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snap.db");
        std::fs::write(&file, &bytes).unwrap();
        let restored = dir.path().join("data");
        let opts = tessera::snapshot::RestoreOptions {
            initial_split_keys: SPLITS.iter().map(|k| k.as_bytes().to_vec()).collect(),
            ..Default::default()
        };
        let done = tessera::snapshot::restore(&file, &restored, &opts).unwrap();
        assert_eq!((done.versions, done.revision as i64), (5, hash.header().unwrap().revision()));
        let again = tessera::snapshot::restore(&file, &restored, &opts).unwrap_err();
        assert!(again.to_string().contains("non-empty"), "{again}");
        let mut corrupt = bytes.clone();
        corrupt[100] ^= 1;
        std::fs::write(&file, &corrupt).unwrap();
        let bad = tessera::snapshot::restore(&file, &dir.path().join("other"), &opts).unwrap_err();
        assert!(bad.to_string().contains("hash mismatch"), "{bad}");

        let node = InProc::start_in(&restored, SPLITS, |_| {}).await;
        let mut c = node.client().await;
        let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        let keys: Vec<&str> = all.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        assert_eq!(keys, ["a", "n", "u"]);
        let restored_hash = c.hash_kv(0).await.unwrap();
        assert_eq!(restored_hash.hash(), hash.hash(), "same history, same hash");
        assert_eq!(restored_hash.header().unwrap().revision(), hash.header().unwrap().revision());
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_kv_is_stable_for_a_revision_and_moves_with_writes() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let node = InProc::start_in(dir.path(), SPLITS, |_| {}).await;
        let mut c = node.client().await;
        let rev = c.put("a", "1", None).await.unwrap().header().unwrap().revision();
        let at = c.hash_kv(rev).await.unwrap();
        c.put("a", "2", None).await.unwrap();
        assert_eq!(c.hash_kv(rev).await.unwrap().hash(), at.hash(), "an old revision keeps its hash");
        let now = c.hash_kv(0).await.unwrap().hash();
        assert_ne!(now, at.hash(), "a write moves the current hash");
        let (code, _) = code_of(c.hash_kv(rev + 100).await.unwrap_err());
        assert_eq!(code, Code::OutOfRange, "a future revision");
        node.stop().await;
        let node = InProc::start_in(dir.path(), SPLITS, |_| {}).await;
        let mut c = node.client().await;
        assert_eq!(c.hash_kv(0).await.unwrap().hash(), now, "stable across a restart");
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_quota_writes_are_refused_until_the_alarm_is_disarmed() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        c.put("keep", "v", None).await.unwrap();
        node.router.alarms.set_quota(1); // any store is past one byte
        let (code, msg) = code_of(c.put("k", "v", None).await.unwrap_err());
        assert_eq!((code, msg.as_str()), (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"));
        let alarms = c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap();
        assert_eq!(alarms.alarms().len(), 1);
        assert_eq!(alarms.alarms()[0].alarm(), AlarmType::Nospace);
        // Reads and deletes still work; lease grants do not.
        assert_eq!(c.get("keep", None).await.unwrap().count(), 1);
        assert_eq!(c.delete("keep", None).await.unwrap().deleted(), 1);
        assert_eq!(code_of(c.lease_grant(10, None).await.unwrap_err()).0, Code::ResourceExhausted);

        node.router.alarms.set_quota(1 << 30);
        let (code, _) = code_of(c.put("k", "v", None).await.unwrap_err());
        assert_eq!(code, Code::ResourceExhausted, "the alarm stays up until disarmed");
        // The alarm is this member's: disarming it names the member (as
        // etcd's; etcdctl's `alarm disarm` lists and disarms each).
        let nobody = c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, None).await.unwrap();
        assert!(nobody.alarms().is_empty(), "no alarm for member 0 was up");
        let member = alarms.alarms()[0].member_id();
        let mut this_member = AlarmOptions::new();
        this_member.with_member(member);
        let disarmed = c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(this_member)).await.unwrap();
        assert_eq!(disarmed.alarms().len(), 1);
        c.put("k", "v", None).await.unwrap();
        assert!(c.alarm(AlarmAction::Get, AlarmType::None, None).await.unwrap().alarms().is_empty());

        c.defragment().await.unwrap();
        let status = c.status().await.unwrap();
        c.move_leader(status.leader()).await.unwrap();
        let (code, msg) = code_of(c.move_leader(status.leader() + 1).await.unwrap_err());
        assert_eq!((code, msg.as_str()), (Code::FailedPrecondition, "etcdserver: bad leader transferee"));
        node.stop().await;
    })
    .await;
}

/// `GET path` over HTTP/1.1; (status line, body).
async fn http_get(endpoint: &str, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// etcd's /health, /version and /metrics answer on the client port, beside gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_version_and_metrics_over_http_on_the_client_port() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let (status, body) = http_get(&node.endpoint, "/health").await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", r#"{"health":"true"}"#));
        let (_, body) = http_get(&node.endpoint, "/version").await;
        assert_eq!(body, r#"{"etcdserver":"3.5.13","etcdcluster":"3.5.0"}"#);
        let (_, body) = http_get(&node.endpoint, "/metrics").await;
        assert!(body.contains("tessera_region_lease_valid{region=\"1\"} 1"), "{body}");
        // gRPC still works on the same port.
        node.client().await.put("a", "1", None).await.unwrap();
        node.stop().await;
    })
    .await;
}

/// etcd's /livez and /readyz (plain "ok"; `?verbose` lists the checks; a
/// CORRUPT alarm fails /readyz's data_corruption with 503), and metrics
/// under etcd's names: the server's, the disk histograms with etcd's
/// buckets, and gRPC calls by method and status code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_readyz_and_metrics_under_etcds_names() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let (status, body) = http_get(&node.endpoint, "/livez").await;
        assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
        let (_, body) = http_get(&node.endpoint, "/readyz?verbose").await;
        let checks = "[+]serializable_read ok\n[+]data_corruption ok\n[+]linearizable_read ok\nreadyz check passed\n";
        assert_eq!(body, checks);

        let mut c = node.client().await;
        c.put("k", "v", None).await.unwrap();
        let future = c.get("k", Some(GetOptions::new().with_revision(1 << 40))).await.unwrap_err();
        assert_eq!(code_of(future).0, Code::OutOfRange);
        let member = c.status().await.unwrap().header().unwrap().member_id();
        let mut corrupt = AlarmOptions::new();
        corrupt.with_member(member);
        c.alarm(AlarmAction::Activate, AlarmType::Corrupt, Some(corrupt.clone())).await.unwrap();
        let (status, body) = http_get(&node.endpoint, "/readyz").await;
        assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
        assert!(body.contains("[-]data_corruption failed: alarm activated: CORRUPT\n"), "{body}");
        assert!(body.ends_with("readyz check failed\n"), "{body}");
        let (status, _) = http_get(&node.endpoint, "/livez").await;
        assert_eq!(status, "HTTP/1.1 200 OK", "alive all the same");
        c.alarm(AlarmAction::Deactivate, AlarmType::Corrupt, Some(corrupt)).await.unwrap();
        assert_eq!(http_get(&node.endpoint, "/readyz").await.1, "ok");

        let (_, metrics) = http_get(&node.endpoint, "/metrics").await;
        for line in [
            "etcd_server_has_leader 1",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"}",
            "etcd_disk_backend_commit_duration_seconds_bucket{le=\"8.192\"}",
            "etcd_mvcc_db_total_size_in_bytes ",
            "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
            "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
            "grpc_server_handled_total{grpc_code=\"OutOfRange\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}",
        ] {
            assert!(metrics.contains(line), "/metrics lacks {line}");
        }
        node.stop().await;
    })
    .await;
}

/// grpc.health.v1 on the client port: SERVING for the server and its etcd
/// services, NOT_FOUND for an unknown name; Watch sends the status at once
/// (SERVICE_UNKNOWN for an unknown name, as grpc-go) and ends on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_checks_answer_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let channel = tonic::transport::Endpoint::from_shared(node.endpoint.clone()).unwrap().connect().await.unwrap();
        let mut h = HealthClient::new(channel);
        for service in ["", "etcdserverpb.KV"] {
            let r = h.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
        }
        let err = h.check(HealthCheckRequest { service: "nope".into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let mut unknown = h.watch(HealthCheckRequest { service: "nope".into() }).await.unwrap().into_inner();
        assert_eq!(unknown.message().await.unwrap().unwrap().status, ServingStatus::ServiceUnknown as i32);
        let mut stream = h.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
        // A graceful stop ends open Watch streams rather than waiting for them.
        node.stop().await;
        for s in [&mut stream, &mut unknown] {
            let end = tokio::time::timeout(std::time::Duration::from_secs(5), s.message()).await;
            assert!(matches!(end, Ok(Ok(None)) | Ok(Err(_))), "the stream outlived the server: {end:?}");
        }
    })
    .await;
}
