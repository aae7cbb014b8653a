//! TLS on the peer port (issue 17 item 2, docs/security.md): three members
//! with certificates of one CA and `--peer-cert-allowed-cn` form a cluster,
//! serve and fail over; a member whose certificate is of another CA, or
//! names another CN, can neither join nor have calls served on the peer
//! port (where members forward client calls); one with a good certificate
//! joins.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::{Ca, Pem};
use common::load::wait_same_hash;
use common::{etcdctl, free_ports, Tessera};

const ALLOWED_CN: &str = "member";

fn peer_args(name: &str, initial_cluster: &str, pem: &Pem, ca: &Path) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--initial-cluster={initial_cluster}"),
        format!("--peer-cert-file={}", pem.cert.display()),
        format!("--peer-key-file={}", pem.key.display()),
        format!("--peer-trusted-ca-file={}", ca.display()),
        "--peer-client-cert-auth".to_string(),
        format!("--peer-cert-allowed-cn={ALLOWED_CN}"),
    ]
}

fn start(dir: &Path, args: Vec<String>) -> std::thread::JoinHandle<Tessera> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || Tessera::start_in(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>()))
}

/// Retries `etcdctl ARGS` on `endpoint` until it succeeds (a new leader
/// may take an election), at most 30 s; its stdout.
fn until_ok(endpoint: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (out, err, code) = etcdctl(endpoint, args, None);
        if code == 0 {
            return out;
        }
        assert!(Instant::now() < deadline, "etcdctl {args:?} on {endpoint} kept failing: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A member process started by hand (it is not expected to get ready),
/// its output in a file; killed on drop.
struct Stranger {
    child: Child,
    log: PathBuf,
}

impl Stranger {
    fn start(dir: &Path, args: &[String]) -> Stranger {
        let log = dir.with_extension("log");
        let out = File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen-client-urls", "http://127.0.0.1:0", "--initial-cluster-state", "existing"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Stranger { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 30 s) until `cond` holds.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "waited 30 s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn members_with_peer_tls_form_serve_fail_over_and_keep_strangers_out() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "peers");
    let foreign_ca = Ca::new(dir.path(), "foreign");
    let ports = free_ports(4);
    let url = |i: usize| format!("https://127.0.0.1:{}", ports[i]);
    let initial = (0..3).map(|i| format!("n{}={}", i + 1, url(i))).collect::<Vec<_>>().join(",");
    let pems: Vec<Pem> = (0..4).map(|i| ca.issue(&format!("n{}", i + 1), ALLOWED_CN, &["127.0.0.1"])).collect();
    let dirs: Vec<PathBuf> = (0..6).map(|i| dir.path().join(format!("data-{i}"))).collect();
    let starting: Vec<_> =
        (0..3).map(|i| start(&dirs[i], peer_args(&format!("n{}", i + 1), &initial, &pems[i], &ca.ca_file()))).collect();
    let mut nodes: Vec<Option<Tessera>> = starting.into_iter().map(|h| Some(h.join().unwrap())).collect();
    let ep = |nodes: &[Option<Tessera>], i: usize| nodes[i].as_ref().unwrap().endpoint().to_string();

    // Forms and serves: a write through n2 is read through n3.
    assert_eq!(until_ok(&ep(&nodes, 1), &["put", "k", "v1"]).trim(), "OK");
    assert_eq!(until_ok(&ep(&nodes, 2), &["get", "k", "--print-value-only"]).trim(), "v1");
    let members = until_ok(&ep(&nodes, 0), &["member", "list"]);
    assert_eq!(members.matches("https://127.0.0.1:").count(), 3, "{members}");

    // The peer port serves forwarded etcd calls to members only.
    let peer_ep = url(1);
    let with = |pem: &Pem, ca: &Path| pem.etcdctl_args(ca);
    let intruder = ca.issue("intruder", "intruder", &["127.0.0.1"]);
    let foreign = foreign_ca.issue("foreign", ALLOWED_CN, &["127.0.0.1"]);
    let mut get = with(&pems[3], &ca.ca_file());
    get.extend(["--dial-timeout=2s".into(), "get".into(), "k".into(), "--print-value-only".into()]);
    let (out, err, code) = etcdctl(&peer_ep, &get.iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!((out.trim(), code), ("v1", 0), "a member's certificate on the peer port: {err}");
    // Each trusts our CA (the refusal is the server's, not the client's).
    for (what, pem) in [("another CN", &intruder), ("another CA", &foreign)] {
        let mut args = with(pem, &ca.ca_file());
        args.extend([
            "--dial-timeout=2s".into(),
            "--command-timeout=3s".into(),
            "put".into(),
            "k".into(),
            "stolen".into(),
        ]);
        let (_, _, code) = etcdctl(&peer_ep, &args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        assert_ne!(code, 0, "{what} was served on the peer port");
    }
    assert_eq!(until_ok(&ep(&nodes, 2), &["get", "k", "--print-value-only"]).trim(), "v1");

    // n4 is added; a process with a foreign CA's certificate, then one
    // with another CN, cannot join as n4; one with a member's certificate can.
    let (out, err, code) = etcdctl(&ep(&nodes, 1), &["member", "add", "n4", &format!("--peer-urls={}", url(3))], None);
    assert_eq!(code, 0, "member add: {out}{err}");
    let with_n4 = format!("{initial},n4={}", url(3));
    // (n2 refused the intruder's etcdctl above; n3 has seen no intruder yet.)
    let n3_log = || nodes[2].as_ref().unwrap().log_tail(1 << 20);
    let mut args = peer_args("n4", &with_n4, &foreign, &ca.ca_file());
    let stranger = Stranger::start(&dirs[3], &args);
    wait_for("the foreign member to be refused", || n3_log().contains("UnknownIssuer"));
    assert!(!stranger.log().contains("serving clients on"), "{}", stranger.log());
    assert!(stranger.log().contains("joining"), "the stranger says why it cannot join:\n{}", stranger.log());
    drop(stranger);
    args = peer_args("n4", &with_n4, &intruder, &ca.ca_file());
    let stranger = Stranger::start(&dirs[4], &args);
    wait_for("the CN outside the allowed one to be refused", || n3_log().contains("is not the allowed"));
    assert!(!stranger.log().contains("serving clients on"), "{}", stranger.log());
    drop(stranger);
    nodes.push(Some(
        start(&dirs[5], {
            let mut a = peer_args("n4", &with_n4, &pems[3], &ca.ca_file());
            a.extend(["--initial-cluster-state".into(), "existing".into()]);
            a
        })
        .join()
        .unwrap(),
    ));

    // n4 holds every region before one of four goes (else three of four
    // would not be a quorum of caught-up voters).
    let revision: i64 = {
        let out = until_ok(&ep(&nodes, 1), &["put", "joined", "1", "-w", "json"]);
        let at = out.find("\"revision\":").expect("a header revision") + 11;
        out[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let same = rt.block_on(wait_same_hash(&[ep(&nodes, 1), ep(&nodes, 3)], revision));
    assert!(same.is_ok(), "n4 differs at {revision}: {same:?}");

    // Fails over: n1 killed, writes go on and reach the new member.
    nodes[0].take().unwrap().kill9();
    assert_eq!(until_ok(&ep(&nodes, 1), &["put", "k", "v2"]).trim(), "OK");
    assert_eq!(until_ok(&ep(&nodes, 3), &["get", "k", "--print-value-only"]).trim(), "v2");
}
