//! The node `etcd3` client (1.1.2, installed by scripts/setup-clients.sh)
//! against the real binary with 4 regions: tests/clients/node_etcd3.js
//! checks KV and txns across regions, watches, leases, locks and elections,
//! and prints "ALL OK".

mod common;

#[test]
fn node_etcd3_client_works() {
    let dir = std::env::var("TESSERA_NODE_DIR")
        .unwrap_or_else(|_| format!("{}/.cache/tessera-node", std::env::var("HOME").unwrap_or_default()));
    let modules = format!("{dir}/node_modules");
    assert!(
        std::path::Path::new(&format!("{modules}/etcd3/package.json")).is_file(),
        "{modules}/etcd3 is missing: run scripts/setup-clients.sh (test.sh does)"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/node_etcd3.js");
    common::run_client_checks("node", script, &[("TESSERA_NODE_MODULES", &modules)]);
}
