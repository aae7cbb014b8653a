//! Writes through any store (docs/serve-anywhere.md, "Writes through any
//! store"), with real processes and etcd-client: a put, a delete or a txn
//! with writes sent to a member other than the leader store goes from that
//! member straight to its region's leader, not through the leader store
//! (counted by `tessera_forwarded_calls_total`); what needs the leader
//! store (a write across regions, a write that changes nothing, a read)
//! is still passed on there and answered as before; and a linearizable
//! read through any member right after a put sees it (DESIGN 1, real-time
//! order). Linearizable Ranges through a member other than the leader
//! store are served by the regions' leaders at a read point (docs/
//! serve-anywhere.md, "Reads at region leaders"), each whole read one
//! snapshot (DESIGN 2) even while txns across regions commit.

mod common;

use common::connect;
use common::http::metric;
use common::spread::spread;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};

const FORWARDED: &str = "tessera_forwarded_calls_total";

#[test]
fn puts_through_another_store_go_straight_to_region_leaders() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = spread(&rt);
    let (n2, n3) = (cluster.endpoint(1), cluster.endpoint(2));
    let forwarded = || metric(&n2, FORWARDED).expect("the counter");
    rt.block_on(async {
        let mut via_n2 = connect(&n2).await;
        let mut via_n3 = connect(&n3).await;
        let before = forwarded();
        let mut last = 0;
        // Keys over every region (split at b, m and t).
        for i in 0..40u8 {
            let key = format!("{}/{i}", (b'a' + i % 26) as char);
            let put = via_n2.put(key.clone(), format!("v{i}"), None).await.expect("a put through n2");
            let revision = put.header().unwrap().revision();
            assert!(revision > last, "revisions grow: {revision} after {last}");
            last = revision;
            if i % 8 == 0 {
                // Read right after, through the third member: it sees the put.
                let got = via_n3.get(key.clone(), None).await.expect("a get through n3");
                assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(format!("v{i}").as_bytes()), "{key}");
                assert!(got.header().unwrap().revision() >= revision, "a read after the put answers at or above it");
            }
        }
        assert_eq!(forwarded() - before, 0, "n2 passed none of its single-region puts on to the leader store");

        // A delete that finds nothing changes nothing: answered by the
        // leader store, at or above every write acknowledged before it.
        let before = forwarded();
        let del = via_n2.delete("b/absent", None).await.expect("a delete through n2");
        assert_eq!(del.deleted(), 0);
        assert!(del.header().unwrap().revision() >= last, "an unchanged write answers at or above the last put");
        assert_eq!(forwarded() - before, 1, "the unchanged delete went to the leader store");

        // A failed compare-and-set in one region, then a txn across two.
        let before = forwarded();
        let cas = Txn::new()
            .when([Compare::value("a/0", CompareOp::Equal, "not-v0")])
            .and_then([TxnOp::put("a/0", "never", None)]);
        let resp = via_n2.txn(cas).await.expect("a failed compare-and-set through n2");
        assert!(!resp.succeeded());
        let across = Txn::new().and_then([TxnOp::put("a/across", "1", None), TxnOp::put("z/across", "1", None)]);
        let resp = via_n2.txn(across).await.expect("a txn across regions through n2");
        let revision = resp.header().unwrap().revision();
        assert!(revision > last, "the txn took a new revision");
        assert_eq!(forwarded() - before, 2, "both txns went to the leader store");
        for key in ["a/across", "z/across"] {
            let got = via_n3.get(key, None).await.unwrap();
            assert_eq!(got.kvs()[0].mod_revision(), revision, "{key} written by the txn, at one revision");
        }
        assert_eq!(via_n3.get("a/0", None).await.unwrap().kvs()[0].value(), b"v0", "the failed CAS wrote nothing");
    });
}

const LEASE_READS: &str = "tessera_region_lease_reads_total";
const READ_POINT_REQUESTS: &str = "tessera_read_point_requests_total";
const READ_INDEX_READS: &str = "tessera_read_index_reads_total";

#[test]
fn reads_through_another_store_are_served_by_region_leaders() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = spread(&rt);
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    let (n1, n2, n3) = (&endpoints[0], &endpoints[1], &endpoints[2]);
    let sum = |name: &str| endpoints.iter().map(|e| metric(e, name).unwrap_or(0)).collect::<Vec<_>>();
    rt.block_on(async {
        let mut via_n1 = connect(n1).await;
        let mut via_n2 = connect(n2).await;
        let mut via_n3 = connect(n3).await;
        // One key in each region (split at b, m and t).
        let keys = ["a/k", "c/k", "n/k", "x/k"];
        let mut last = 0;
        for k in keys {
            last = via_n1.put(k, "v", None).await.unwrap().header().unwrap().revision();
        }
        let (forwarded2, forwarded3) = (metric(n2, FORWARDED).unwrap(), metric(n3, FORWARDED).unwrap());
        let (lease_before, index_before) = (sum(LEASE_READS), sum(READ_INDEX_READS));
        let points_before = metric(n2, READ_POINT_REQUESTS).unwrap();
        for k in keys {
            for via in [&mut via_n2, &mut via_n3] {
                let got = via.get(k, None).await.expect("a linearizable get");
                assert_eq!(got.kvs()[0].value(), b"v", "{k}");
                assert!(got.header().unwrap().revision() >= last, "at or above the last put");
            }
        }
        // A prefix read over every region, whole and with a limit.
        let all = via_n2.get("", Some(GetOptions::new().with_from_key())).await.unwrap();
        let listed: Vec<&[u8]> = all.kvs().iter().map(|kv| kv.key()).collect();
        assert_eq!(listed, keys.iter().map(|k| k.as_bytes()).collect::<Vec<_>>(), "every region's key, in order");
        let limited = via_n3.get("", Some(GetOptions::new().with_from_key().with_limit(3))).await.unwrap();
        assert_eq!((limited.kvs().len(), limited.more(), limited.count()), (3, true, 4));
        assert_eq!(metric(n2, FORWARDED).unwrap(), forwarded2, "n2 passed no linearizable read on");
        assert_eq!(metric(n3, FORWARDED).unwrap(), forwarded3, "n3 passed no linearizable read on");
        // Pieces served at region leaders, by store: under the region's
        // lease, or after a ReadIndex round where it had lapsed (a loaded
        // machine). No read here went through the leader store's own path.
        let (lease_after, index_after) = (sum(LEASE_READS), sum(READ_INDEX_READS));
        let leased: Vec<u64> = lease_after.iter().zip(&lease_before).map(|(a, b)| a - b).collect();
        let indexed: Vec<u64> = index_after.iter().zip(&index_before).map(|(a, b)| a - b).collect();
        let served: Vec<u64> = leased.iter().zip(&indexed).map(|(a, b)| a + b).collect();
        println!("pieces served under region leases {leased:?}, after ReadIndex {indexed:?}");
        assert!(served.iter().sum::<u64>() >= 8 + 8, "every get's piece and every prefix read's pieces: {served:?}");
        assert!(leased.iter().sum::<u64>() > 0, "region leases served pieces: {leased:?}");
        assert!(served.iter().filter(|n| **n > 0).count() >= 2, "leaders on several stores served: {served:?}");
        let points = metric(n2, READ_POINT_REQUESTS).unwrap() - points_before;
        assert!(points >= 1 && points <= 5, "n2 asked one read point per read at most: {points}");

        // A serializable read is still the leader store's.
        via_n2.get("a/k", Some(GetOptions::new().with_serializable())).await.unwrap();
        assert_eq!(metric(n2, FORWARDED).unwrap(), forwarded2 + 1, "a serializable read went to the leader store");
    });
}

/// While txns across all four regions rewrite one key in each (and puts
/// elsewhere move the read point past them as they commit), every
/// prefix read through the other members sees all four at one revision:
/// a read's pieces at the region leaders are one snapshot (DESIGN 2).
#[test]
fn a_read_over_regions_at_leaders_is_one_snapshot_while_txns_commit() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cluster = spread(&rt);
    let (n1, n2, n3) = (cluster.endpoint(0), cluster.endpoint(1), cluster.endpoint(2));
    rt.block_on(async {
        let keys = ["a/s", "c/s", "n/s", "x/s"];
        let mut writer = connect(&n1).await;
        let write = move |i: u32| Txn::new().and_then(keys.map(|k| TxnOp::put(k, format!("{i}"), None)));
        writer.txn(write(0)).await.unwrap();
        let writes = tokio::spawn(async move {
            for i in 1..=40 {
                writer.txn(write(i)).await.expect("a txn across regions");
            }
        });
        // Puts alongside (acknowledged above a txn's revision while it
        // commits, so that read points fall between its regions' commits).
        let mut putter = connect(&n2).await;
        let puts = tokio::spawn(async move {
            for i in 0..200 {
                putter.put("q/other", format!("{i}"), None).await.expect("a put");
            }
        });
        let mut reads = 0;
        for via in [n2, n3].iter().cycle().take(60) {
            let mut c = connect(via).await;
            let got = c.get("", Some(GetOptions::new().with_from_key())).await.expect("a prefix read");
            let seen: Vec<(&[u8], i64)> = got
                .kvs()
                .iter()
                .filter(|kv| kv.key().ends_with(b"/s"))
                .map(|kv| (kv.value(), kv.mod_revision()))
                .collect();
            assert_eq!(seen.len(), 4, "all four keys: {seen:?}");
            assert!(seen.iter().all(|s| *s == seen[0]), "one txn's writes in every region: {seen:?}");
            assert!(got.header().unwrap().revision() >= seen[0].1);
            reads += 1;
        }
        writes.await.unwrap();
        puts.await.unwrap();
        println!("{reads} consistent reads");
    });
}
