//! The etcd KV API through the Rust `etcd-client` crate against an
//! in-process tessera with 4 regions (split at b, m, t).

mod inproc;

use std::collections::{BTreeMap, HashSet};

use etcd_client::{Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};
use inproc::{bounded, code_of, InProc};
use tessera::proto::etcdserverpb::{RangeRequest, RangeResponse};
use tonic::Code;

const SPLITS: &[&str] = &["b", "m", "t"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_across_regions_get_gapless_revisions() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let empty = c.get("a", None).await.unwrap();
        assert_eq!(empty.header().unwrap().revision(), 1, "an empty store is at revision 1, as etcd");
        let mut expected = 1;
        for key in ["a", "c", "n", "x", "b", "m", "t", "\u{1}", "zz"] {
            let resp = c.put(key, format!("v-{key}"), None).await.unwrap();
            expected += 1;
            assert_eq!(resp.header().unwrap().revision(), expected, "put {key}");
        }
        let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        assert_eq!(all.count(), 9);
        assert_eq!(all.header().unwrap().revision(), expected);
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_options_merge_across_regions() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        // Keys in every region, written in an order unlike key order.
        let keys = ["s2", "a1", "n3", "c4", "z5", "b6", "t7", "m8"];
        let mut rev_of = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let r = c.put(*k, format!("{}", 9 - i), None).await.unwrap();
            rev_of.insert(k.to_string(), r.header().unwrap().revision());
        }
        let head = *rev_of.values().max().unwrap();
        let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        let got: Vec<&str> = all.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        assert_eq!(got, vec!["a1", "b6", "c4", "m8", "n3", "s2", "t7", "z5"]);
        assert_eq!(all.count(), 8);
        assert!(!all.more());
        assert_eq!(all.header().unwrap().revision(), head);

        // limit spans a boundary: more and total count are global.
        let lim = c.get("a", Some(GetOptions::new().with_range("zz").with_limit(3))).await.unwrap();
        let got: Vec<&str> = lim.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        assert_eq!(got, vec!["a1", "b6", "c4"]);
        assert!(lim.more());
        assert_eq!(lim.count(), 8);

        // Sorted descending by key with a limit.
        let desc = c
            .get(
                "\0",
                Some(GetOptions::new().with_from_key().with_sort(SortTarget::Key, SortOrder::Descend).with_limit(2)),
            )
            .await
            .unwrap();
        let got: Vec<&str> = desc.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        assert_eq!(got, vec!["z5", "t7"]);
        assert!(desc.more());

        // Sorted by value (ascending is the default for a non-key target).
        let by_value = c
            .get("\0", Some(GetOptions::new().with_from_key().with_sort(SortTarget::Value, SortOrder::None)))
            .await
            .unwrap();
        let values: Vec<&str> = by_value.kvs().iter().map(|kv| kv.value_str().unwrap()).collect();
        assert_eq!(values, vec!["2", "3", "4", "5", "6", "7", "8", "9"]);

        // By mod revision descending = reverse write order.
        let by_mod = c
            .get("\0", Some(GetOptions::new().with_from_key().with_sort(SortTarget::Mod, SortOrder::Descend)))
            .await
            .unwrap();
        let got: Vec<&str> = by_mod.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        let mut written: Vec<&str> = keys.to_vec();
        written.reverse();
        assert_eq!(got, written);

        // Prefix, keys-only, count-only.
        let pre = c.get("b", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
        assert_eq!(pre.kvs().len(), 1);
        assert!(pre.kvs()[0].value().is_empty());
        let count = c.get("\0", Some(GetOptions::new().with_from_key().with_count_only())).await.unwrap();
        assert_eq!((count.count(), count.kvs().len()), (8, 0));

        // Revision filters apply after reading, count stays the range's.
        let newer =
            c.get("\0", Some(GetOptions::new().with_from_key().with_min_mod_revision(rev_of["b6"]))).await.unwrap();
        let got: HashSet<&str> = newer.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
        assert_eq!(got, HashSet::from(["b6", "t7", "m8"]));
        assert_eq!(newer.count(), 8);

        // Serializable reads see the same data once writes are resolved.
        let ser = c.get("\0", Some(GetOptions::new().with_from_key().with_serializable())).await.unwrap();
        assert_eq!(ser.kvs().len(), 8);
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_history_and_compaction() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let r1 = c.put("k", "v1", None).await.unwrap().header().unwrap().revision();
        let r2 = c.put("k", "v2", Some(PutOptions::new().with_prev_key())).await.unwrap();
        assert_eq!(r2.prev_key().unwrap().value_str().unwrap(), "v1");
        let r2 = r2.header().unwrap().revision();
        let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
        assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (r1, r2, 2));

        let d = c.delete("k", Some(DeleteOptions::new().with_prev_key())).await.unwrap();
        assert_eq!(d.deleted(), 1);
        assert_eq!(d.prev_kvs()[0].value_str().unwrap(), "v2");
        let r3 = d.header().unwrap().revision();
        assert_eq!(r3, r2 + 1);
        assert!(c.get("k", None).await.unwrap().kvs().is_empty());
        // Deleting nothing takes no revision.
        let none = c.delete("k", None).await.unwrap();
        assert_eq!((none.deleted(), none.header().unwrap().revision()), (0, r3));

        let r4 = c.put("k", "v3", None).await.unwrap().header().unwrap().revision();
        let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
        assert_eq!((kv.create_revision(), kv.version()), (r4, 1), "a put after a delete starts a new life");

        // History.
        let at = |rev| GetOptions::new().with_revision(rev);
        assert_eq!(c.get("k", Some(at(r1))).await.unwrap().kvs()[0].value_str().unwrap(), "v1");
        assert_eq!(c.get("k", Some(at(r2))).await.unwrap().kvs()[0].value_str().unwrap(), "v2");
        assert!(c.get("k", Some(at(r3))).await.unwrap().kvs().is_empty());
        let future = c.get("k", Some(at(r4 + 10))).await.unwrap_err();
        assert_eq!(
            code_of(future),
            (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into())
        );

        // Compaction.
        c.compact(r2, None).await.unwrap();
        let gone = c.get("k", Some(at(r1))).await.unwrap_err();
        assert_eq!(code_of(gone), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
        assert_eq!(c.get("k", Some(at(r2))).await.unwrap().kvs()[0].value_str().unwrap(), "v2");
        let again = c.compact(r2, None).await.unwrap_err();
        assert_eq!(code_of(again), (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".into()));
        let ahead = c.compact(r4 + 10, None).await.unwrap_err();
        assert_eq!(
            code_of(ahead),
            (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".into())
        );
        c.compact(r4, None).await.unwrap();
        assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value_str().unwrap(), "v3");
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn txns_in_one_region_and_across_regions() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let rev = c.put("c1", "0", None).await.unwrap().header().unwrap().revision();
        let cas = |expect: i64, value: &str| {
            Txn::new()
                .when([Compare::mod_revision("c1", CompareOp::Equal, expect)])
                .and_then([TxnOp::put("c1", value, None), TxnOp::get("c1", None)])
                .or_else([TxnOp::get("c1", None)])
        };
        let ok = c.txn(cas(rev, "1")).await.unwrap();
        assert!(ok.succeeded());
        assert_eq!(ok.header().unwrap().revision(), rev + 1);
        let stale = c.txn(cas(rev, "2")).await.unwrap();
        assert!(!stale.succeeded());
        assert_eq!(stale.header().unwrap().revision(), rev + 1, "a failed compare takes no revision");

        // A read-only txn may span regions.
        let read = Txn::new()
            .when([Compare::version("a", CompareOp::Equal, 0)])
            .and_then([TxnOp::get("\0", Some(GetOptions::new().with_from_key()))]);
        let resp = c.txn(read).await.unwrap();
        assert!(resp.succeeded());

        // A write spanning regions (2 and 4) commits whole at one revision.
        let x1 = c.put("x1", "keep", None).await.unwrap().header().unwrap().revision();
        let spanning = Txn::new().and_then([TxnOp::put("c2", "new", None), TxnOp::delete("x1", None)]);
        let resp = c.txn(spanning).await.unwrap();
        assert_eq!(resp.header().unwrap().revision(), x1 + 1);
        let c2 = c.get("c2", None).await.unwrap();
        assert_eq!((c2.kvs()[0].mod_revision(), c2.header().unwrap().revision()), (x1 + 1, x1 + 1));
        assert!(c.get("x1", None).await.unwrap().kvs().is_empty());
        // A delete over every region: one revision, every key gone.
        let wide = c.delete("a", Some(DeleteOptions::new().with_range("z"))).await.unwrap();
        assert_eq!((wide.deleted(), wide.header().unwrap().revision()), (2, x1 + 2));
        assert_eq!(c.get("a", Some(GetOptions::new().with_range("z"))).await.unwrap().count(), 0);
        let again = c.delete("a", Some(DeleteOptions::new().with_range("z"))).await.unwrap();
        assert_eq!(
            (again.deleted(), again.header().unwrap().revision()),
            (0, x1 + 2),
            "deleting nothing takes no revision"
        );
        let history = c.get("c1", Some(GetOptions::new().with_revision(x1 + 1))).await.unwrap();
        assert_eq!(history.kvs()[0].value_str().unwrap(), "1");
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_etcd_errors_and_the_server_keeps_serving() {
    use tessera::proto::etcdserverpb as pb;
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        c.put("ok", "1", None).await.unwrap();
        let invalid = |msg: &str| (Code::InvalidArgument, msg.to_string());

        assert_eq!(code_of(c.put("", "v", None).await.unwrap_err()), invalid("etcdserver: key is not provided"));
        assert_eq!(code_of(c.get("", None).await.unwrap_err()), invalid("etcdserver: key is not provided"));
        let big = vec![b'x'; 1536 * 1024 + 1];
        assert_eq!(code_of(c.put("big", big, None).await.unwrap_err()), invalid("etcdserver: request is too large"));
        let huge = vec![b'x'; 3 << 20];
        assert_eq!(code_of(c.put("huge", huge, None).await.unwrap_err()).0, Code::ResourceExhausted);

        let many: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("c{i}"), "v", None)).collect();
        assert_eq!(
            code_of(c.txn(Txn::new().and_then(many)).await.unwrap_err()),
            invalid("etcdserver: too many operations in txn request")
        );
        let dup = Txn::new().and_then([TxnOp::put("c", "1", None), TxnOp::put("c", "2", None)]);
        assert_eq!(code_of(c.txn(dup).await.unwrap_err()), invalid("etcdserver: duplicate key given in txn request"));
        let lease = c.put("c", "v", Some(PutOptions::new().with_lease(123))).await.unwrap_err();
        assert_eq!(code_of(lease), (Code::NotFound, "etcdserver: requested lease not found".into()));
        let ignore = c.put("missing", "", Some(PutOptions::new().with_ignore_value())).await.unwrap_err();
        assert_eq!(code_of(ignore), invalid("etcdserver: key not found"));

        let mut raw = node.raw_kv().await;
        let bad_sort =
            raw.range(pb::RangeRequest { key: b"a".to_vec(), sort_order: 9, ..Default::default() }).await.unwrap_err();
        assert_eq!((bad_sort.code(), bad_sort.message()), (Code::InvalidArgument, "etcdserver: invalid sort option"));
        // range_end below key: an empty result, as etcd.
        let inverted = raw
            .range(pb::RangeRequest { key: b"z".to_vec(), range_end: b"a".to_vec(), ..Default::default() })
            .await
            .unwrap();
        assert!(inverted.into_inner().kvs.is_empty());

        // Nothing was lost, and the server still serves.
        let kv = c.get("ok", None).await.unwrap();
        assert_eq!(kv.kvs()[0].value_str().unwrap(), "1");
        assert_eq!(kv.header().unwrap().revision(), 2, "failed requests took no revision");
        node.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_stream_is_unimplemented_and_auth_is_disabled() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        // etcd 3.7's KV.RangeStream: UNIMPLEMENTED, so that Kubernetes falls back to Range.
        let channel = tonic::transport::Channel::from_shared(node.endpoint.clone()).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/RangeStream");
        let codec = tonic_prost::ProstCodec::<RangeRequest, RangeResponse>::default();
        let req = tonic::Request::new(RangeRequest { key: b"a".to_vec(), ..Default::default() });
        let err = grpc.server_streaming(req, path, codec).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        // No authentication yet: etcd's answer for a cluster without it.
        let (code, msg) = code_of(c.user_add("root", "pw", None).await.unwrap_err());
        assert_eq!((code, msg.as_str()), (Code::FailedPrecondition, "etcdserver: authentication is not enabled"));
        let (code, _) = code_of(c.auth_enable().await.unwrap_err());
        assert_eq!(code, Code::FailedPrecondition);
        // Still serving.
        c.put("a", "1", None).await.unwrap();
        node.stop().await;
    })
    .await;
}

/// DESIGN invariants 1 and 2 under concurrency: 64 writers over 4 regions get
/// gapless revisions, and every whole-range read returns exactly the keys
/// whose puts have a revision at or below its header revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_gapless_revisions_and_consistent_snapshots() {
    bounded(async {
        let seed: u64 = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        println!("seed: {seed}");
        let node = InProc::start(SPLITS).await;
        let writers = 64;
        let per_writer = 20;
        let mut tasks = Vec::new();
        for w in 0..writers {
            let mut c = node.client().await;
            // A second connection: a read that starts after an acknowledged
            // write reflects it wherever it arrives (DESIGN invariant 3).
            let mut reader = node.client().await;
            tasks.push(tokio::spawn(async move {
                use rand::{Rng, SeedableRng};
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ w);
                let mut acked = Vec::new();
                for i in 0..per_writer {
                    let first = b"abmtz"[rng.random_range(0..5)] as char;
                    let key = format!("{first}-{w}-{i}");
                    let rev = c.put(key.clone(), "v", None).await.unwrap().header().unwrap().revision();
                    let seen = reader.get(key.clone(), None).await.unwrap();
                    assert!(seen.header().unwrap().revision() >= rev, "read after ack behind the write");
                    assert_eq!(
                        seen.kvs().first().map(|kv| kv.mod_revision()),
                        Some(rev),
                        "{key} not visible after ack"
                    );
                    acked.push((key, rev));
                }
                acked
            }));
        }
        let reader = {
            let mut c = node.client().await;
            tokio::spawn(async move {
                let mut snapshots = Vec::new();
                for _ in 0..40 {
                    let r = c.get("\0", Some(GetOptions::new().with_from_key().with_keys_only())).await.unwrap();
                    let keys: HashSet<String> = r.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect();
                    snapshots.push((r.header().unwrap().revision(), keys));
                }
                snapshots
            })
        };
        let mut rev_of = BTreeMap::new();
        for t in tasks {
            for (k, r) in t.await.unwrap() {
                rev_of.insert(k, r);
            }
        }
        let snapshots = reader.await.unwrap();
        let mut revs: Vec<i64> = rev_of.values().copied().collect();
        revs.sort();
        let expected: Vec<i64> = (2..2 + (writers * per_writer) as i64).collect();
        assert_eq!(revs, expected, "revisions are one gapless global sequence");
        for (at, keys) in snapshots {
            let want: HashSet<String> = rev_of.iter().filter(|(_, r)| **r <= at).map(|(k, _)| k.clone()).collect();
            assert_eq!(keys, want, "the read at header revision {at} is a consistent snapshot");
        }
        node.stop().await;
    })
    .await;
}

/// Without a valid leader lease of the meta group (the leader store's
/// lease) a linearizable read confirms leadership through a raft ReadIndex
/// round instead (and still sees every write).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_without_a_lease_go_through_read_index() {
    use tessera::metrics::METRICS;
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        c.put("c", "1", None).await.unwrap();
        // A single voter is its own quorum: its reads take the lease fast path.
        let fast = METRICS.lease_fast_path_reads.get();
        c.get("c", None).await.unwrap();
        assert!(METRICS.lease_fast_path_reads.get() > fast, "DESIGN invariant 7");
        let meta = node.store.peer(node.store.meta_region).unwrap();
        meta.shared.lease.expire();
        let before = METRICS.read_index_reads.get();
        let r = c.get("c", None).await.unwrap();
        assert_eq!(r.kvs()[0].value_str().unwrap(), "1");
        assert!(METRICS.read_index_reads.get() > before, "the read took the ReadIndex path");
        // A serializable read needs neither.
        let r = c.get("c", Some(GetOptions::new().with_serializable())).await.unwrap();
        assert_eq!(r.kvs()[0].value_str().unwrap(), "1");
        // The meta group's next apply in the leader's term restores the lease.
        c.lease_grant(60, None).await.unwrap();
        assert!(meta.shared.lease.is_valid());
        node.stop().await;
    })
    .await;
}

/// Maintenance.Status and Cluster.MemberList describe the one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_member_list_describe_the_single_store() {
    bounded(async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let before = c.status().await.unwrap();
        for k in ["a", "c", "n", "x"] {
            c.put(k, "v", None).await.unwrap();
        }
        let s = c.status().await.unwrap();
        assert_eq!(s.version(), "3.5.13", "a 3.5 version Kubernetes accepts");
        assert_eq!(s.leader(), s.header().unwrap().member_id(), "a single store leads");
        assert_eq!(s.header().unwrap().revision(), 5);
        assert!(s.raft_term() >= 1);
        assert!(s.raft_index() >= before.raft_index() + 4, "every applied entry counts");
        assert!(s.db_size() > 0);
        let members = c.member_list().await.unwrap();
        assert_eq!(members.members().len(), 1);
        let me = &members.members()[0];
        assert_eq!((me.id(), me.name()), (s.leader(), "inproc"));
        let (code, msg) = code_of(c.member_add(["http://127.0.0.1:2380"], None).await.unwrap_err());
        assert_eq!(code, Code::FailedPrecondition);
        assert!(msg.contains("a single store (started without --initial-cluster) cannot change its members"), "{msg}");
        node.stop().await;
    })
    .await;
}
