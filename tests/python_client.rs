//! The python `etcd3` client (0.12, installed by scripts/setup-clients.sh)
//! against the real binary with 4 regions: tests/clients/python_etcd3.py
//! checks KV, txns and deletes across regions, watches, leases (with
//! expiry), locks, members and status, and prints "ALL OK".

mod common;

use std::process::Command;
use std::time::Duration;

use common::Tessera;

#[test]
fn python_etcd3_client_works() {
    let venv = std::env::var("TESSERA_PY_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/tessera-py", std::env::var("HOME").unwrap_or_default()));
    let python = format!("{venv}/bin/python");
    assert!(
        std::path::Path::new(&python).is_file(),
        "{python} is missing: run scripts/setup-clients.sh (test.sh does)"
    );
    let node = Tessera::start(&[]);
    let port = node.endpoint().rsplit(':').next().unwrap().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_etcd3.py");
    // The script bounds itself (a 120 s watchdog); `timeout` bounds it again.
    let out = Command::new("timeout")
        .args([&Duration::from_secs(150).as_secs().to_string(), &python, script, &port, "127.0.0.1"])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "python etcd3 checks failed ({:?}):\n{stdout}\n{stderr}\n--- tessera ---\n{}",
        out.status,
        node.log_tail(8 << 10)
    );
}
