//! Writes across regions commit atomically at one revision (two-phase
//! commit): a bank-transfer invariant under concurrent compare-and-set
//! transfers, whole-range readers, range-locking txns and single-region
//! writers, against an in-process tessera with 4 regions (split at b, m, t).

mod inproc;

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use inproc::InProc;
use rand::{Rng, SeedableRng};

const SPLITS: &[&str] = &["b", "m", "t"];
const TIMEOUT: Duration = Duration::from_secs(180);
const ACCOUNTS: usize = 16;
const OPENING: i64 = 100;

/// Account `i`, spread over the four regions by its first letter.
fn account(i: usize) -> String {
    format!("{}acct{i:02}", ['a', 'c', 'n', 'u'][i % 4] as char)
}

fn is_account(key: &[u8]) -> bool {
    key.get(1..5) == Some(b"acct")
}

fn balance(v: &[u8]) -> i64 {
    std::str::from_utf8(v).unwrap().parse().unwrap()
}

/// The sum and number of accounts in a range response's key-values.
fn total(kvs: &[etcd_client::KeyValue]) -> (i64, usize) {
    let accounts: Vec<_> = kvs.iter().filter(|kv| is_account(kv.key())).collect();
    (accounts.iter().map(|kv| balance(kv.value())).sum(), accounts.len())
}

fn whole() -> GetOptions {
    GetOptions::new().with_from_key()
}

/// Moves a random amount between two random accounts with one
/// compare-and-set txn, retried until it applies. Returns the attempts.
async fn transfer(c: &mut Client, rng: &mut impl Rng) -> usize {
    let from = rng.random_range(0..ACCOUNTS);
    let to = (from + rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
    let (a, b) = (account(from), account(to));
    for attempt in 1..=200 {
        let read = c.txn(Txn::new().and_then([TxnOp::get(a.clone(), None), TxnOp::get(b.clone(), None)])).await;
        let read = read.unwrap();
        let kv = |i: usize| match &read.op_responses()[i] {
            TxnOpResponse::Get(g) => g.kvs()[0].clone(),
            other => panic!("expected a get, got {other:?}"),
        };
        let (ka, kb) = (kv(0), kv(1));
        let amount = rng.random_range(0..=balance(ka.value()).min(20));
        let cas = Txn::new()
            .when([
                Compare::mod_revision(a.clone(), CompareOp::Equal, ka.mod_revision()),
                Compare::mod_revision(b.clone(), CompareOp::Equal, kb.mod_revision()),
            ])
            .and_then([
                TxnOp::put(a.clone(), (balance(ka.value()) - amount).to_string(), None),
                TxnOp::put(b.clone(), (balance(kb.value()) + amount).to_string(), None),
            ]);
        let resp = c.txn(cas).await.unwrap();
        if resp.succeeded() {
            let rev = resp.header().unwrap().revision();
            let after = c.get(a.clone(), None).await.unwrap();
            assert!(after.header().unwrap().revision() >= rev, "a read after the ack is behind it");
            return attempt;
        }
    }
    panic!("transfer {a} -> {b} never applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_transfers_across_regions_keep_every_snapshot_total() {
    let seed: u64 = std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("seed: {seed}");
    tokio::time::timeout(TIMEOUT, async {
        let node = InProc::start(SPLITS).await;
        let mut c = node.client().await;
        let open = Txn::new()
            .and_then((0..ACCOUNTS).map(|i| TxnOp::put(account(i), OPENING.to_string(), None)).collect::<Vec<_>>());
        let opened = c.txn(open).await.unwrap().header().unwrap().revision();
        let want = (OPENING * ACCOUNTS as i64, ACCOUNTS);

        let mut tasks = Vec::new();
        // Transfers: pairs in one region take the one-round path, pairs in
        // two regions two-phase commit.
        for t in 0..8u64 {
            let mut c = node.client().await;
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ t);
                let mut attempts = 0;
                for _ in 0..25 {
                    attempts += transfer(&mut c, &mut rng).await;
                }
                attempts
            }));
        }
        // Txns that read every account and write one key lock the whole
        // range in all regions; what they read is one snapshot too.
        {
            let mut c = node.client().await;
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    let txn = Txn::new().and_then([
                        TxnOp::get("a", Some(GetOptions::new().with_range("z"))),
                        TxnOp::put(format!("nzz{i}"), "x", None),
                    ]);
                    let resp = c.txn(txn).await.unwrap();
                    let TxnOpResponse::Get(g) = &resp.op_responses()[0] else { panic!("expected a get") };
                    assert_eq!(total(g.kvs()), want, "a write txn's read is one snapshot");
                }
                0
            }));
        }
        // Single-region writes next to (and sometimes blocked by) the locks.
        {
            let mut c = node.client().await;
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    c.put(format!("czz{}", i % 7), i.to_string(), None).await.unwrap();
                }
                0
            }));
        }
        // Readers: the current state and random earlier revisions.
        let mut readers = Vec::new();
        for r in 0..3u64 {
            let mut c = node.client().await;
            readers.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (100 + r));
                let mut checked = 0;
                for _ in 0..60 {
                    let now = c.get("\0", Some(whole())).await.unwrap();
                    assert_eq!(total(now.kvs()), want, "snapshot at {}", now.header().unwrap().revision());
                    let current = now.header().unwrap().revision();
                    let at = rng.random_range(opened..=current);
                    let then = c.get("\0", Some(whole().with_revision(at))).await.unwrap();
                    assert_eq!(total(then.kvs()), want, "snapshot at revision {at}");
                    let serializable = c.get("\0", Some(whole().with_serializable())).await.unwrap();
                    assert_eq!(total(serializable.kvs()), want, "serializable snapshot");
                    checked += 3;
                }
                checked
            }));
        }
        let mut attempts = 0;
        for t in tasks {
            attempts += t.await.unwrap();
        }
        for r in readers {
            assert_eq!(r.await.unwrap(), 180);
        }
        println!("200 transfers took {attempts} attempts");
        let end = c.get("\0", Some(whole())).await.unwrap();
        assert_eq!(total(end.kvs()), want);
        // Every write took exactly one revision: the opening txn, 200
        // transfers, 20 range-locking txns and 100 puts.
        assert_eq!(end.header().unwrap().revision(), opened + 200 + 20 + 100);
        node.stop().await;
    })
    .await
    .expect("test timed out");
}
