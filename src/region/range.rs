//! etcd's Range: reading a request's pieces at a revision, and the
//! post-processing (revision filters, sort, limit, `more`, `count`,
//! keys-only), pure, so the router applies it once over the merged result
//! of several regions and a txn applies it to its own reads.

use crate::error::Result;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};
use crate::proto::mvccpb::KeyValue;
use crate::region::eval::range_end;
use crate::region::mvcc::{MvccReader, ScanOptions};

/// Reads the pieces (`(start, end)`, `end` none: to the end of the
/// keyspace, or the key alone when `req` asks for one key) of `req` at
/// `at`, in key order: the live key-values (as many as etcd's
/// post-processing may need) and their count.
pub fn scan_pieces<'a>(
    reader: &MvccReader,
    req: &RangeRequest,
    pieces: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    at: u64,
) -> Result<(Vec<KeyValue>, usize)> {
    let pushdown = if req.count_only { None } else { limit_pushdown(req) };
    let mut kvs: Vec<KeyValue> = Vec::new();
    let mut count = 0;
    for (start, end) in pieces {
        if end.is_none() && range_end(&req.key, &req.range_end).is_none() {
            // A single key.
            if let Some(kv) = reader.get(start, at)? {
                count += 1;
                if !req.count_only {
                    kvs.push(kv);
                }
            }
            continue;
        }
        let remaining = pushdown.map(|l| l.saturating_sub(kvs.len()));
        let opts = ScanOptions { limit: remaining.unwrap_or(0), count_only: req.count_only || remaining == Some(0) };
        let res = reader.scan(start, end, at, opts)?;
        count += res.count;
        kvs.extend(res.kvs);
    }
    Ok((kvs, count))
}

/// Whether `req` can take its `limit` from each region's key-ordered scan
/// (`limit + 1` each, for `more`) instead of reading everything first: etcd
/// reads everything when it sorts or filters.
pub fn limit_pushdown(req: &RangeRequest) -> Option<usize> {
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    if req.limit > 0 && req.sort_order == SortOrder::None as i32 && !filtered {
        Some(req.limit as usize + 1)
    } else {
        None
    }
}

/// Builds the response (without header) from the live key-values of the
/// requested range in key order and their total `count`.
pub fn finish_range(req: &RangeRequest, mut kvs: Vec<KeyValue>, count: usize) -> RangeResponse {
    if req.count_only {
        return RangeResponse { count: count as i64, ..Default::default() };
    }
    kvs.retain(|kv| {
        (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
    });
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    if target != SortTarget::Key && order == SortOrder::None {
        // etcd sorts ascending by default when the target is not the key.
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None {
        let descend = order == SortOrder::Descend;
        if target == SortTarget::Key {
            // Already in ascending key order; keys are unique.
            if descend {
                kvs.reverse();
            }
        } else {
            // A stable sort keeps key order between equal targets, in both
            // directions, as etcd shows.
            let cmp = |a: &KeyValue, b: &KeyValue| match target {
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Key | SortTarget::Value => a.value.cmp(&b.value),
            };
            kvs.sort_by(|a, b| if descend { cmp(b, a) } else { cmp(a, b) });
        }
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse { header: None, kvs, more, count: count as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, create: i64, modr: i64, version: i64, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: modr,
            version,
            value: value.into(),
            lease: 0,
        }
    }

    fn sample() -> Vec<KeyValue> {
        vec![kv("a", 2, 9, 3, "z"), kv("b", 3, 3, 1, "y"), kv("c", 4, 5, 2, "x")]
    }

    fn keys(resp: &RangeResponse) -> Vec<&[u8]> {
        resp.kvs.iter().map(|kv| &kv.key[..]).collect()
    }

    #[test]
    fn limit_sets_more_and_keeps_total_count() {
        let req = RangeRequest { limit: 2, ..Default::default() };
        let resp = finish_range(&req, sample(), 3);
        assert_eq!(keys(&resp), vec![b"a", b"b"]);
        assert!(resp.more);
        assert_eq!(resp.count, 3);
    }

    #[test]
    fn sort_targets_default_to_ascend() {
        let req = RangeRequest { sort_target: SortTarget::Mod as i32, ..Default::default() };
        assert_eq!(keys(&finish_range(&req, sample(), 3)), vec![b"b", b"c", b"a"]);
        let req = RangeRequest {
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Descend as i32,
            limit: 1,
            ..Default::default()
        };
        let resp = finish_range(&req, sample(), 3);
        assert_eq!(keys(&resp), vec![b"a"]);
        assert!(resp.more);
        let req = RangeRequest { sort_order: SortOrder::Descend as i32, ..Default::default() };
        assert_eq!(keys(&finish_range(&req, sample(), 3)), vec![b"c", b"b", b"a"]);
    }

    #[test]
    fn ties_keep_key_order_in_both_directions() {
        let same = vec![kv("a", 1, 1, 1, "v"), kv("b", 2, 2, 1, "v"), kv("c", 3, 3, 2, "w")];
        let req = RangeRequest {
            sort_target: SortTarget::Value as i32,
            sort_order: SortOrder::Descend as i32,
            ..Default::default()
        };
        assert_eq!(keys(&finish_range(&req, same.clone(), 3)), vec![b"c", b"a", b"b"]);
        let req = RangeRequest {
            sort_target: SortTarget::Version as i32,
            sort_order: SortOrder::Descend as i32,
            ..Default::default()
        };
        assert_eq!(keys(&finish_range(&req, same, 3)), vec![b"c", b"a", b"b"]);
    }

    #[test]
    fn filters_count_only_and_keys_only() {
        let req = RangeRequest { min_mod_revision: 4, max_create_revision: 3, ..Default::default() };
        assert_eq!(keys(&finish_range(&req, sample(), 3)), vec![b"a"]);
        let req = RangeRequest { count_only: true, ..Default::default() };
        let resp = finish_range(&req, sample(), 3);
        assert!(resp.kvs.is_empty() && resp.count == 3 && !resp.more);
        let req = RangeRequest { keys_only: true, ..Default::default() };
        assert!(finish_range(&req, sample(), 3).kvs.iter().all(|kv| kv.value.is_empty()));
    }

    #[test]
    fn pushdown_only_for_plain_limits() {
        assert_eq!(limit_pushdown(&RangeRequest { limit: 5, ..Default::default() }), Some(6));
        assert_eq!(limit_pushdown(&RangeRequest::default()), None);
        let sorted = RangeRequest { limit: 5, sort_order: SortOrder::Ascend as i32, ..Default::default() };
        assert_eq!(limit_pushdown(&sorted), None);
    }
}
