//! The node `etcd3` client (1.1.2, installed by scripts/setup-clients.sh)
//! against the real binary with 4 regions: tests/clients/node_etcd3.js
//! checks KV and txns across regions, watches, leases, locks and elections,
//! and prints "ALL OK".

mod common;

use std::process::Command;

use common::Tessera;

#[test]
fn node_etcd3_client_works() {
    let dir = std::env::var("TESSERA_NODE_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/tessera-node", std::env::var("HOME").unwrap_or_default()));
    let modules = format!("{dir}/node_modules");
    assert!(
        std::path::Path::new(&format!("{modules}/etcd3/package.json")).is_file(),
        "{modules}/etcd3 is missing: run scripts/setup-clients.sh (test.sh does)"
    );
    let node = Tessera::start(&[]);
    let port = node.endpoint().rsplit(':').next().unwrap().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/node_etcd3.js");
    // The script bounds itself (a 100 s timer); `timeout` bounds it again.
    let out = Command::new("timeout")
        .args(["130", "node", script, &port, "127.0.0.1"])
        .env("TESSERA_NODE_MODULES", &modules)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "node etcd3 checks failed ({:?}):\n{stdout}\n{stderr}\n--- tessera ---\n{}",
        out.status,
        node.log_tail(8 << 10)
    );
}
