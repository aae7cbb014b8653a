//! The bounded form of the fault harness that CI runs (docs/faults.md):
//! fixed seeds on one and three tessera members, and the same harness
//! against etcd 3.4, which must find nothing. `scripts/faults.sh` runs many
//! seeds and keeps the ledger.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `tessera faults ARGS`, bounded by `within`; its exit status and output.
fn faults(args: &[&str], within: Duration) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("faults")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tessera faults");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let text = format!("{}\n{stdout}", reader.join().unwrap_or_default());
    println!("{text}");
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("timed out after {within:?}\n{text}")),
    }
}

#[test]
fn fault_runs_on_one_member_find_no_anomaly() {
    let (ok, text) =
        faults(&["--members", "1", "--seed", "101", "--runs", "2", "--duration", "20s"], Duration::from_secs(240));
    assert!(ok, "{text}");
}

/// Three members, every fault kind the seeds draw (the ledger holds many
/// more seeds: scripts/faults.sh).
#[test]
fn fault_runs_on_three_members_find_no_anomaly() {
    let (ok, text) =
        faults(&["--members", "3", "--seed", "301", "--runs", "2", "--duration", "30s"], Duration::from_secs(360));
    assert!(ok, "{text}");
}

#[test]
fn fault_harness_finds_no_anomaly_in_etcd() {
    common::require_etcd();
    let args = ["--members", "3", "--seed", "7", "--runs", "1", "--duration", "20s", "--etcd", common::ETCD_BIN];
    let (ok, text) = faults(&args, Duration::from_secs(240));
    assert!(ok, "{text}");
}
