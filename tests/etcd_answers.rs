//! Answers an etcd client sees, compared with etcd 3.4 on the same calls
//! (issue [ops], item 4): the Rust `etcd-client` crate sends each call to a
//! real etcd and to the tessera binary, and the two answers must agree.

mod common;

use std::time::Duration;

use common::{Etcd, Tessera};
use etcd_client::{Client, LockOptions};

const TIMEOUT: Duration = Duration::from_secs(60);

async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.expect("connect")
}

/// A failed call as the client sees it: its gRPC code and message.
fn failure<T: std::fmt::Debug>(r: Result<T, etcd_client::Error>) -> (tonic::Code, String) {
    match r {
        Err(etcd_client::Error::GRpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// What one server answers to the calls compared here.
#[derive(Debug, PartialEq)]
struct Answers {
    lock_without_lease: (tonic::Code, String),
    campaign_without_lease: (tonic::Code, String),
    defragment_has_header: bool,
    move_leader_has_header: bool,
    /// Whether the one member lists a peer URL (etcd lists its advertised one).
    member_has_peer_url: bool,
}

async fn answers(endpoint: &str) -> Answers {
    let mut c = connect(endpoint).await;
    let missing = 0x7e57_0000_0001;
    let lock_without_lease = failure(c.lock("job", Some(LockOptions::new().with_lease(missing))).await);
    let campaign_without_lease = failure(c.campaign("vote", "alice", missing).await);
    let defragment_has_header = c.defragment().await.expect("defragment").header().is_some();
    let me = c.status().await.expect("status").header().expect("a status has a header").member_id();
    let move_leader_has_header = c.move_leader(me).await.expect("move-leader to itself").header().is_some();
    let members = c.member_list().await.expect("member list");
    let member_has_peer_url = members.members().iter().all(|m| !m.peer_urls().is_empty());
    Answers {
        lock_without_lease,
        campaign_without_lease,
        defragment_has_header,
        move_leader_has_header,
        member_has_peer_url,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_answers_match_etcd() {
    let etcd = Etcd::start();
    let tessera = Tessera::start(&[]);
    let compared = async {
        let expected = answers(etcd.endpoint()).await;
        let got = answers(tessera.endpoint()).await;
        println!("etcd: {expected:?}\ntessera: {got:?}");
        assert_eq!(got, expected, "tessera answers these calls unlike etcd");
    };
    tokio::time::timeout(TIMEOUT, compared).await.expect("test timed out");
}
