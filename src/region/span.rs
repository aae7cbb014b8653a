//! Spans: the key ranges a request touches, in one canonical form.
//!
//! etcd names a range as `(key, range_end)`: an empty end is the single key,
//! `"\0"` is "to the end of the keyspace". A [`Span`] is always `[start, end)`
//! with an empty `end` meaning no end, so a single key `k` is `[k, k\0)`.
//! Cross-region locks are spans, and a write conflicts with a lock when one
//! of its spans overlaps one of the lock's.

use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::TxnRequest;
use crate::proto::tesserapb::Span;
use crate::region::eval::WriteRequest;

/// The span of an etcd `(key, range_end)`; `None` for an empty range.
pub fn span_of(key: &[u8], range_end: &[u8]) -> Option<Span> {
    match range_end {
        [] => {
            let mut end = Vec::with_capacity(key.len() + 1);
            end.extend_from_slice(key);
            end.push(0);
            Some(Span { start: key.to_vec(), end })
        }
        [0] => Some(Span { start: key.to_vec(), end: Vec::new() }),
        _ if range_end <= key => None,
        _ => Some(Span { start: key.to_vec(), end: range_end.to_vec() }),
    }
}

/// The end of a span as an `Option` (`None`: no end).
pub fn end_of(span: &Span) -> Option<&[u8]> {
    (!span.end.is_empty()).then_some(span.end.as_slice())
}

pub fn overlaps(a: &Span, b: &Span) -> bool {
    let before_end = |key: &[u8], s: &Span| end_of(s).is_none_or(|e| key < e);
    before_end(&a.start, b) && before_end(&b.start, a)
}

/// Every etcd `(key, range_end)` a write touches, through all branches and
/// nested txns (compares and reads included).
pub fn write_key_ranges(req: &WriteRequest) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    match req {
        WriteRequest::Put(r) => out.push((r.key.clone(), Vec::new())),
        WriteRequest::DeleteRange(r) => out.push((r.key.clone(), r.range_end.clone())),
        WriteRequest::Txn(t) => txn_key_ranges(t, &mut out),
        WriteRequest::DeleteLeased { keys, .. } => out.extend(keys.iter().map(|k| (k.clone(), Vec::new()))),
    }
    out
}

/// Every etcd `(key, range_end)` a txn touches, through all branches and nested txns.
pub fn txn_key_ranges(req: &TxnRequest, out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    for c in &req.compare {
        out.push((c.key.clone(), c.range_end.clone()));
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => out.push((r.key.clone(), r.range_end.clone())),
            Some(Request::RequestPut(r)) => out.push((r.key.clone(), Vec::new())),
            Some(Request::RequestDeleteRange(r)) => out.push((r.key.clone(), r.range_end.clone())),
            Some(Request::RequestTxn(t)) => txn_key_ranges(t, out),
            None => {}
        }
    }
}

/// The spans of a write (empty ranges dropped).
pub fn write_spans(req: &WriteRequest) -> Vec<Span> {
    write_key_ranges(req).iter().filter_map(|(k, e)| span_of(k, e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start: &[u8], end: &[u8]) -> Span {
        Span { start: start.to_vec(), end: end.to_vec() }
    }

    #[test]
    fn etcd_ranges_become_spans() {
        assert_eq!(span_of(b"k", b""), Some(s(b"k", b"k\0")));
        assert_eq!(span_of(b"k", b"\0"), Some(s(b"k", b"")));
        assert_eq!(span_of(b"k", b"m"), Some(s(b"k", b"m")));
        assert_eq!(span_of(b"k", b"a"), None);
    }

    #[test]
    fn overlap_respects_half_open_ends() {
        assert!(overlaps(&s(b"a", b"c"), &s(b"b", b"d")));
        assert!(!overlaps(&s(b"a", b"b"), &s(b"b", b"c")));
        assert!(overlaps(&s(b"a", b""), &s(b"z", b"z\0")));
        assert!(!overlaps(&s(b"k", b"k\0"), &s(b"k\0", b"")));
        assert!(overlaps(&s(b"k", b"k\0"), &s(b"", b"")));
    }
}
