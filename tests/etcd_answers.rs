//! Answers an etcd client sees, compared with etcd 3.4 on the same calls
//! (issue [ops], item 4): the Rust `etcd-client` crate sends each call to a
//! real etcd and to the tessera binary, and the two answers must agree.

mod common;

use std::time::Duration;

use common::{Etcd, Tessera};
use etcd_client::{AlarmAction, AlarmOptions, AlarmType, Client, LockOptions};

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
    /// What each call of [`ALARM_CALLS`] answered.
    alarms: Vec<Vec<(Member, i32)>>,
}

/// A member id as the comparison sees it: this server's own or another.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    Me,
    Id(u64),
}

/// Alarm calls, in order: (action, member: `None` for the server's own, type).
const ALARM_CALLS: [(AlarmAction, Option<u64>, AlarmType); 10] = [
    (AlarmAction::Activate, Some(0), AlarmType::Nospace),
    (AlarmAction::Activate, Some(0), AlarmType::Nospace),
    (AlarmAction::Activate, None, AlarmType::Nospace),
    (AlarmAction::Get, Some(0), AlarmType::None),
    (AlarmAction::Get, Some(0), AlarmType::Corrupt),
    (AlarmAction::Deactivate, Some(0), AlarmType::None),
    (AlarmAction::Deactivate, Some(0), AlarmType::Nospace),
    (AlarmAction::Deactivate, Some(0), AlarmType::Nospace),
    (AlarmAction::Deactivate, None, AlarmType::Nospace),
    (AlarmAction::Get, Some(0), AlarmType::None),
];

/// Runs [`ALARM_CALLS`]: each answer's alarms, sorted (etcd lists them in
/// map order).
async fn alarm_answers(c: &mut Client, me: u64) -> Vec<Vec<(Member, i32)>> {
    let mut out = Vec::new();
    for (action, member, kind) in ALARM_CALLS {
        let mut options = AlarmOptions::new();
        options.with_member(member.unwrap_or(me));
        let resp = c.alarm(action, kind, Some(options)).await.expect("alarm");
        let mut alarms: Vec<(Member, i32)> = resp
            .alarms()
            .iter()
            .map(|a| (if a.member_id() == me { Member::Me } else { Member::Id(a.member_id()) }, a.alarm() as i32))
            .collect();
        alarms.sort();
        out.push(alarms);
    }
    out
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
    // Last: a NOSPACE alarm refuses writes while it is up.
    let alarms = alarm_answers(&mut c, me).await;
    Answers {
        lock_without_lease,
        campaign_without_lease,
        defragment_has_header,
        move_leader_has_header,
        member_has_peer_url,
        alarms,
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
