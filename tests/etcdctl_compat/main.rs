//! etcdctl-level compatibility: every scenario is a sequence of etcdctl 3.4
//! invocations, run against a fresh reference etcd 3.4 and a fresh tessera;
//! stdout, stderr and exit code must be identical after normalising only what
//! legitimately differs between two clusters (cluster/member ids and raft term
//! in `-w json` / `-w fields` headers; the timestamp and client id in
//! etcdctl's retry warning line). The reference outputs are written down in
//! docs/etcd-reference.md.
//!
//! Each test fn starts one etcd and one tessera and runs its scenarios in the
//! same order on both, so revisions line up. Tessera runs with 4 regions
//! (split keys b, m, t); all keys written by the non-cross-region tests start
//! with a letter in c..l, i.e. stay inside region ["b", "m").
//!
//! Needs /usr/bin/etcd and /usr/bin/etcdctl (scripts/setup.sh installs them):
//! without them these tests fail, they do not skip.

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod kv;
mod other;

use harness::*;
use std::collections::HashMap;

// ---------------------------------------------------------------------------
// self-checks of the helpers (no processes)

#[test]
fn normalize_masks_only_cluster_specific_fields() {
    let json = r#"{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,"revision":7,"raft_term":2},"responses":[{"Response":{"ResponsePut":{"header":{"revision":37}}}}]}"#;
    assert_eq!(
        normalize(json),
        r#"{"header":{"cluster_id":<cluster_id>,"member_id":<member_id>,"revision":7,"raft_term":<raft_term>},"responses":[{"Response":{"ResponsePut":{"header":{"revision":37}}}}]}"#
    );
    let fields = "\"ClusterID\" : 151\n\"MemberID\" : 136\n\"Revision\" : 39\n\"RaftTerm\" : 2\n\"ClusterID\" : 0\n\"RaftTerm\" : 0\n";
    assert_eq!(
        normalize(fields),
        "\"ClusterID\" : <cluster_id>\n\"MemberID\" : <member_id>\n\"Revision\" : 39\n\"RaftTerm\" : <raft_term>\n\"ClusterID\" : 0\n\"RaftTerm\" : 0\n"
    );
    let warn = r#"{"level":"warn","ts":"2026-11-23T16:43:11.329Z","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-58166ce8-650f-4f8d-9c61-638b25c32490/127.0.0.1:23791","attempt":0,"error":"rpc error: code = NotFound desc = etcdserver: requested lease not found"}
Error: etcdserver: requested lease not found
"#;
    assert_eq!(
        normalize(warn),
        r#"{"level":"warn","ts":"<ts>","caller":"clientv3/retry_interceptor.go:62","msg":"retrying of unary invoker failed","target":"endpoint://client-<target>","attempt":0,"error":"rpc error: code = NotFound desc = etcdserver: requested lease not found"}
Error: etcdserver: requested lease not found
"#
    );
}

#[test]
fn scenario_helpers_work() {
    assert_eq!(split_words(r#"get "" --prefix"#), vec!["get", "", "--prefix"]);
    assert_eq!(split_words(r#"put "c/sp ace" 'v a l'"#), vec!["put", "c/sp ace", "v a l"]);
    let marks = HashMap::from([("r0", 10i64)]);
    assert_eq!(substitute("--rev={r0+2} {r0-1} {r0} {x}", &marks), "--rev=12 9 10 {x}");
    assert_eq!(header_revision(r#"{"header":{"cluster_id":1,"revision":42}}"#), Some(42));
    assert!(line_diff("a\nb\nc", "a\nx\nc").contains("  - b\n  + x\n"));
}

/// `etcdctl endpoint status`, `endpoint health` and `member list` describe
/// the one store, with the endpoint given both ways etcdctl takes it.
#[test]
fn endpoint_status_health_and_member_list() {
    let node = common::Tessera::start(&["--name", "solo"]);
    for ep in [node.endpoint(), node.endpoint().trim_start_matches("http://")] {
        let (out, err, code) = common::etcdctl(ep, &["endpoint", "status", "-w", "json"], None);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("\"version\":\"3.5.13\""), "{out}");
        assert!(out.contains("\"leader\":") && out.contains("\"raft_term\":"), "{out}");
        let (out, err, code) = common::etcdctl(ep, &["endpoint", "health"], None);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("is healthy") || out.contains("is healthy"), "{out}{err}");
    }
    let (out, err, code) = common::etcdctl(node.endpoint(), &["member", "list"], None);
    assert_eq!(code, 0, "{err}");
    // No --initial-advertise-peer-urls: etcd's default peer URL, as etcd lists it.
    assert!(out.contains(", started, solo, http://localhost:2380,"), "{out}");
    // Without --advertise-client-urls the member advertises where it listens
    // (clients that sync their endpoints from the member list find it).
    assert!(out.contains(&format!(", {}, false", node.endpoint())), "{out}");
}
