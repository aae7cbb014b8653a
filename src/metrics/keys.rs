//! `etcd_debugging_mvcc_keys_total`: etcd keeps its key index in memory
//! and counts it for free; tessera counts keys by reading every version
//! (`MvccReader::count_keys`), so a store counts at most once per
//! [`RECOUNT`] and scrapes in between report the last count.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How old a count may be before a scrape counts again.
pub const RECOUNT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct KeyCount {
    last: Mutex<Option<(Instant, u64)>>,
}

impl KeyCount {
    /// The last count, or `count()` when there is none younger than
    /// [`RECOUNT`] (concurrent scrapes wait for one count). A failed count
    /// keeps the last one.
    pub fn get(&self, count: impl FnOnce() -> Option<u64>) -> u64 {
        let mut last = self.last.lock();
        match *last {
            Some((at, n)) if at.elapsed() < RECOUNT => n,
            before => match count() {
                Some(n) => {
                    *last = Some((Instant::now(), n));
                    n
                }
                None => before.map_or(0, |(_, n)| n),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_once_per_recount_period() {
        let k = KeyCount::default();
        assert_eq!(k.get(|| Some(3)), 3);
        assert_eq!(k.get(|| panic!("counted again within RECOUNT")), 3);
        *k.last.lock() = Some((Instant::now() - RECOUNT, 3));
        assert_eq!(k.get(|| None), 3, "a failed count keeps the last");
        assert_eq!(k.get(|| Some(5)), 5);
    }
}
