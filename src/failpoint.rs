//! Crash injection for tests: `tessera serve --failpoint name` (or `name:N`)
//! makes the process abort, as abruptly as kill -9, the first (or N-th) time
//! it reaches [`hit`]`("name")`. Unarmed, a failpoint costs one load.
//!
//! Points: `txn-after-lock`, `txn-after-primary`, `txn-after-secondary`
//! (once per secondary region), `txn-before-forget` (src/router/txn.rs);
//! `lease-after-revoke` (src/router/lease.rs); `merge-after-prepare`
//! (src/router/admin.rs: every source peer applied the prepare, the commit
//! is not proposed yet); `merge-commit-apply` (src/raftstore/peer/admin.rs:
//! the target's leader applies a committed merge commit);
//! `member-add-after-meta` (src/router/members.rs: the meta group added
//! the member, no region has yet).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Armed {
    name: String,
    /// Hits left before the crash.
    left: AtomicU64,
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Arms one failpoint (`name` or `name:N`); call before any is reached.
pub fn arm(spec: &str) {
    let (name, nth) = match spec.split_once(':') {
        Some((name, n)) => (name, n.parse().unwrap_or(1)),
        None => (spec, 1),
    };
    let _ = ARMED.set(Armed { name: name.to_string(), left: AtomicU64::new(nth) });
}

fn armed() -> Option<&'static Armed> {
    ARMED.get()
}

/// Aborts the process here if the failpoint `name` is armed and due.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name == name && a.left.fetch_sub(1, Ordering::AcqRel) == 1 {
        eprintln!("tessera: failpoint {name} reached: aborting");
        std::process::abort();
    }
}
