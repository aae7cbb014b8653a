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
//!
//! Two points drop rather than abort ([`dropped`]): `ask-answer-lost`
//! (src/raftstore/remote.rs: the leader store's answer to a store's
//! request for revisions, with asks in it, is lost on the way back) and
//! `activation-recover-fails` (src/router/cluster.rs: a new leader store's
//! activation fails once after its sequencer restarted, 100 ms later, while
//! writes take revisions). One stalls
//! ([`stall`]), every time: `apply-before-write` (src/raftstore/poller.rs:
//! an apply round's effects are evaluated, not yet written), which widens
//! a window a test must see closed. One slows: `allocate-slow`
//! (src/server/peer.rs: the leader store answers each request for
//! revisions 50 ms late), which lets asks queue up behind it.

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

/// Whether the failpoint `name` is armed and reached for the N-th time now.
fn due(name: &str) -> bool {
    armed().is_some_and(|a| {
        a.name == name && a.left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| l.checked_sub(1)) == Ok(1)
    })
}

/// Whether the failpoint `name` is armed and was due once already (for
/// tests that must know their fault happened).
pub fn spent(name: &str) -> bool {
    armed().is_some_and(|a| a.name == name && a.left.load(Ordering::Acquire) == 0)
}

/// Aborts the process here if the failpoint `name` is armed and due.
pub fn hit(name: &str) {
    if due(name) {
        eprintln!("tessera: failpoint {name} reached: aborting");
        std::process::abort();
    }
}

/// Sleeps for `pause` here, every time, if the failpoint `name` is armed.
pub fn stall(name: &str, pause: std::time::Duration) {
    if is_armed(name) {
        std::thread::sleep(pause);
    }
}

/// Whether the failpoint `name` is armed (an async caller stalls itself).
pub fn is_armed(name: &str) -> bool {
    armed().is_some_and(|a| a.name == name)
}

/// Whether the failpoint `name` is armed and due: the caller then drops
/// what it was about to deliver (once).
pub fn dropped(name: &str) -> bool {
    let due = due(name);
    if due {
        eprintln!("tessera: failpoint {name} reached: dropping");
    }
    due
}
