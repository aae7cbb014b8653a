//! Writes through any store (docs/serve-anywhere.md, "Writes through any
//! store"), with real processes and etcd-client: a put, a delete or a txn
//! with writes sent to a member other than the leader store goes from that
//! member straight to its region's leader, not through the leader store
//! (counted by `tessera_forwarded_calls_total`); what needs the leader
//! store (a write across regions, a write that changes nothing, a read)
//! is still passed on there and answered as before; and a linearizable
//! read through any member right after a put sees it (DESIGN 1, real-time
//! order).

mod common;

use common::connect;
use common::http::metric;
use common::spread::spread;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

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
