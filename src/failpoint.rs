//! Crash injection for tests: `TESSERA_FAILPOINT=name` (or `name:N`) makes
//! the process abort, as abruptly as kill -9, the first (or N-th) time it
//! reaches [`hit`]`("name")`. Unset, a failpoint costs one relaxed load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Armed {
    name: String,
    /// Hits left before the crash.
    left: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("TESSERA_FAILPOINT").ok().filter(|s| !s.is_empty())?;
            let (name, nth) = match spec.split_once(':') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            };
            Some(Armed { name, left: AtomicU64::new(nth) })
        })
        .as_ref()
}

/// Aborts the process here if the failpoint `name` is armed and due.
pub fn hit(name: &str) {
    let Some(a) = armed() else { return };
    if a.name == name && a.left.fetch_sub(1, Ordering::AcqRel) == 1 {
        eprintln!("tessera: failpoint {name} reached: aborting");
        std::process::abort();
    }
}
