//! The python `etcd3` client (0.12, installed by scripts/setup-clients.sh)
//! against the real binary with 4 regions: tests/clients/python_etcd3.py
//! checks KV, txns and deletes across regions, watches, leases (with
//! expiry), locks, members and status, and prints "ALL OK".

mod common;

#[test]
fn python_etcd3_client_works() {
    let venv = std::env::var("TESSERA_PY_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/tessera-py", std::env::var("HOME").unwrap_or_default()));
    let python = format!("{venv}/bin/python");
    assert!(
        std::path::Path::new(&python).is_file(),
        "{python} is missing: run scripts/setup-clients.sh (test.sh does)"
    );
    common::run_client_checks(&python, concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_etcd3.py"), &[]);
}
