//! etcd's request checks, with etcd's errors, before anything is routed.

use std::collections::HashSet;

use prost::Message;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::*;

/// Request limits (etcd's --max-request-bytes and --max-txn-ops).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
}

/// gRPC framing allowance on top of --max-request-bytes, as etcd allows.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

impl Limits {
    /// The largest gRPC message accepted (etcd: max request bytes + 512 KiB).
    pub fn max_message_bytes(&self) -> usize {
        self.max_request_bytes + GRPC_OVERHEAD_BYTES
    }

    pub fn size(&self, req: &impl Message) -> Result<()> {
        let len = req.encoded_len();
        if len > self.max_message_bytes() {
            return Err(Error::MessageTooLarge { len, max: self.max_message_bytes() });
        }
        if len > self.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        Ok(())
    }
}

pub fn range(r: &RangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<()> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn txn(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    ops(r, max_txn_ops)?;
    intervals(&r.success)?;
    intervals(&r.failure)?;
    Ok(())
}

fn ops(r: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    let widest = r.compare.len().max(r.success.len()).max(r.failure.len());
    if widest > max_txn_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        match &op.request {
            Some(Request::RequestRange(q)) => range(q)?,
            Some(Request::RequestPut(q)) => put(q)?,
            Some(Request::RequestDeleteRange(q)) => delete_range(q)?,
            Some(Request::RequestTxn(t)) => ops(t, max_txn_ops)?,
            None => {}
        }
    }
    Ok(())
}

/// A deleted interval `[start, end)`; `end = None` for one key.
type Interval = (Vec<u8>, Option<Vec<u8>>);

/// etcd compares the interval's bytes literally here: a `"\0"` end ("to the
/// end of the keyspace" everywhere else) covers no key but `""`, so etcd
/// accepts a put next to a `--from-key` delete.
fn hits(dels: &[Interval], key: &[u8]) -> bool {
    dels.iter().any(|(s, e)| match e {
        None => s.as_slice() == key,
        Some(e) => key >= s.as_slice() && key < e.as_slice(),
    })
}

/// etcd's duplicate-key rule for one branch: a key may be put once and not
/// also deleted; a nested txn's then/else may put the same key.
fn intervals(reqs: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Interval>)> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => {
                Some((d.key.clone(), (!d.range_end.is_empty()).then(|| d.range_end.clone())))
            }
            _ => None,
        })
        .collect();
    let mut puts = HashSet::new();
    for op in reqs {
        let Some(Request::RequestTxn(t)) = &op.request else { continue };
        let (puts_then, dels_then) = intervals(&t.success)?;
        let (puts_else, dels_else) = intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || hits(&dels, &k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        let Some(Request::RequestPut(p)) = &op.request else { continue };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(PutRequest { key: k.into(), ..Default::default() })) }
    }
    fn d(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }
    fn nested(then: Vec<RequestOp>, otherwise: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest { compare: vec![], success: then, failure: otherwise })),
        }
    }

    #[test]
    fn duplicate_puts_and_put_in_deleted_range_are_refused() {
        let t = |ops| TxnRequest { compare: vec![], success: ops, failure: vec![] };
        assert_eq!(txn(&t(vec![p("a"), p("a")]), 128), Err(Error::DuplicateKey));
        assert_eq!(txn(&t(vec![d("a", "c"), p("b")]), 128), Err(Error::DuplicateKey));
        assert_eq!(txn(&t(vec![p("a"), p("b"), d("c", "")]), 128), Ok(()));
        assert_eq!(txn(&t(vec![p("b"), d("a", "\0")]), 128), Ok(()), "etcd 3.4 accepts this");
        // then/else of a nested txn exclude each other.
        assert_eq!(txn(&t(vec![nested(vec![p("a")], vec![p("a")])]), 128), Ok(()));
        assert_eq!(txn(&t(vec![nested(vec![p("a")], vec![]), p("a")]), 128), Err(Error::DuplicateKey));
    }

    #[test]
    fn too_many_ops_and_bad_ranges() {
        let ops: Vec<RequestOp> = (0..129).map(|i| p(&format!("k{i}"))).collect();
        let t = TxnRequest { compare: vec![], success: ops, failure: vec![] };
        assert_eq!(txn(&t, 128), Err(Error::TooManyOps));
        assert_eq!(range(&RangeRequest::default()), Err(Error::EmptyKey));
        assert_eq!(
            range(&RangeRequest { key: b"a".to_vec(), sort_order: 7, ..Default::default() }),
            Err(Error::InvalidSortOption)
        );
        assert_eq!(
            put(&PutRequest { key: b"a".to_vec(), ignore_value: true, value: b"v".to_vec(), ..Default::default() }),
            Err(Error::ValueProvided)
        );
    }
}
