//! Evaluation of etcd writes into effects: inputs in, decisions out.
//!
//! The region leader evaluates each write against its latest state (applied
//! data plus its own proposals still in flight), decides the outcome, takes
//! a revision only when something changes (as etcd does: a delete that
//! matches nothing or a txn branch that only reads takes none), and proposes
//! the resulting [`Effect`]s. Followers and restarts apply effects; they
//! never evaluate. The same code evaluates read-only txns against a snapshot.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::KeyValue;
use crate::proto::tesserapb::Effect;
use crate::region::range::finish_range;

/// A read-only view of one region's keys at one point.
pub trait KvView {
    /// The live value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>>;
    /// Every live key in `[start, end)` in key order (`end = None`: no end).
    fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<KeyValue>>;
    /// The live keys of `key`/`end` (as [`range_end`] gives) at an earlier
    /// `revision`, with etcd's errors for a compacted or future revision.
    fn range_at(&self, key: &[u8], end: Option<Option<Vec<u8>>>, revision: i64) -> Result<Vec<KeyValue>>;
    /// Whether etcd lease `id` exists (a put may attach to it).
    fn lease_exists(&self, id: i64) -> bool;
}

/// A write request routed to one region.
#[derive(Debug, Clone)]
pub enum WriteRequest {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    /// Deletes those of `keys` still attached to etcd lease `lease` (the
    /// second step of a lease revoke or expiry).
    DeleteLeased {
        lease: i64,
        keys: Vec<Vec<u8>>,
    },
}

#[derive(Debug, Clone)]
pub enum WriteResponse {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    /// How many keys were deleted.
    DeleteLeased(usize),
}

/// What a write decided.
#[derive(Debug)]
pub struct Evaluation {
    /// The revision taken, if anything changed.
    pub revision: Option<u64>,
    /// The changes, in order, each key at most once.
    pub effects: Vec<Effect>,
    /// The response, headers not yet filled.
    pub response: WriteResponse,
}

impl Evaluation {
    /// The etcd leases the write attaches keys to.
    pub fn leases(&self) -> Vec<i64> {
        let mut leases: Vec<i64> =
            self.effects.iter().filter_map(|e| e.kv.as_ref().map(|kv| kv.lease)).filter(|l| *l != 0).collect();
        leases.sort_unstable();
        leases.dedup();
        leases
    }
}

/// The end of a request's range: `None` for a single key, `Some(None)` for
/// "to the end of the keyspace" (`range_end == "\0"`), `Some(Some(end))`.
pub fn range_end(key: &[u8], end: &[u8]) -> Option<Option<Vec<u8>>> {
    match end {
        [] => None,
        [0] => Some(None),
        _ if end <= key => Some(Some(key.to_vec())), // empty range
        _ => Some(Some(end.to_vec())),
    }
}

/// Evaluates `req` against `base`; `alloc` is called at most once, the first
/// time the write turns out to change something.
pub fn evaluate(req: &WriteRequest, base: &dyn KvView, alloc: &mut dyn FnMut() -> u64) -> Result<Evaluation> {
    let mut ev = Evaluator { base, pending: BTreeMap::new(), order: Vec::new(), revision: None, alloc };
    let response = match req {
        WriteRequest::Put(r) => WriteResponse::Put(ev.put(r)?),
        WriteRequest::DeleteRange(r) => WriteResponse::DeleteRange(ev.delete_range(r)?),
        WriteRequest::Txn(r) => WriteResponse::Txn(ev.txn(r)?),
        WriteRequest::DeleteLeased { lease, keys } => WriteResponse::DeleteLeased(ev.delete_leased(*lease, keys)?),
    };
    let Evaluator { mut pending, order, revision, .. } = ev;
    let effects = order
        .into_iter()
        .enumerate()
        .map(|(sub, (key, prev_lease))| {
            let kv = pending.remove(&key).expect("every ordered key is pending");
            Effect { key, kv, sub: sub as u32, prev_lease }
        })
        .collect();
    Ok(Evaluation { revision, effects, response })
}

/// Evaluates a txn without writes (compares and ranges only) against `view`.
pub fn evaluate_read_txn(req: &TxnRequest, view: &dyn KvView) -> Result<TxnResponse> {
    let mut no_alloc = || unreachable!("a read-only txn takes no revision");
    let mut ev =
        Evaluator { base: view, pending: BTreeMap::new(), order: Vec::new(), revision: None, alloc: &mut no_alloc };
    ev.txn(req)
}

/// `base` (live keys of `[start, end)` in key order) with the newer writes
/// of `overlay` in that range laid over it; `kv_of` gives a write's new
/// value (`None`: deleted).
pub fn overlay_range<V>(
    base: Vec<KeyValue>,
    overlay: &BTreeMap<Vec<u8>, V>,
    start: &[u8],
    end: Option<&[u8]>,
    kv_of: impl Fn(&V) -> Option<&KeyValue>,
) -> Vec<KeyValue> {
    use std::ops::Bound;
    let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec()));
    let mut writes = overlay.range((Bound::Included(start.to_vec()), upper)).peekable();
    if writes.peek().is_none() {
        return base;
    }
    let mut merged: BTreeMap<Vec<u8>, KeyValue> = base.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
    for (k, v) in writes {
        match kv_of(v) {
            Some(kv) => merged.insert(k.clone(), kv.clone()),
            None => merged.remove(k),
        };
    }
    merged.into_values().collect()
}

/// Whether a txn (with nested txns) contains any put.
pub fn txn_puts(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) => true,
        Some(Request::RequestTxn(t)) => txn_puts(t),
        _ => false,
    })
}

/// Whether a txn (with nested txns) contains any put or delete.
pub fn txn_writes(req: &TxnRequest) -> bool {
    req.success.iter().chain(&req.failure).any(|op| match &op.request {
        Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => true,
        Some(Request::RequestTxn(t)) => txn_writes(t),
        _ => false,
    })
}

struct Evaluator<'a> {
    base: &'a dyn KvView,
    /// This write's own changes so far: later ops of a txn see earlier ones.
    pending: BTreeMap<Vec<u8>, Option<KeyValue>>,
    /// Keys of `pending` in first-write order, with the lease each was
    /// attached to before this write.
    order: Vec<(Vec<u8>, i64)>,
    revision: Option<u64>,
    alloc: &'a mut dyn FnMut() -> u64,
}

impl Evaluator<'_> {
    fn revision(&mut self) -> u64 {
        if self.revision.is_none() {
            self.revision = Some((self.alloc)());
        }
        self.revision.expect("just set")
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.pending.get(key) {
            Some(kv) => Ok(kv.clone()),
            None => self.base.get(key),
        }
    }

    fn range(&self, key: &[u8], end: Option<Option<Vec<u8>>>) -> Result<Vec<KeyValue>> {
        let end = match end {
            None => return Ok(self.get(key)?.into_iter().collect()),
            Some(end) => end,
        };
        let base = self.base.range(key, end.as_deref())?;
        Ok(overlay_range(base, &self.pending, key, end.as_deref(), |kv| kv.as_ref()))
    }

    /// Records the write of `key`; `prev` is its value just before (as
    /// this write saw it).
    fn set(&mut self, key: &[u8], kv: Option<KeyValue>, prev: Option<&KeyValue>) {
        if self.pending.insert(key.to_vec(), kv).is_none() {
            // First write of the key here: `prev` is the state before the write.
            self.order.push((key.to_vec(), prev.map_or(0, |p| p.lease)));
        }
    }

    fn put(&mut self, r: &PutRequest) -> Result<PutResponse> {
        let prev = self.get(&r.key)?;
        if (r.ignore_value || r.ignore_lease) && prev.is_none() {
            return Err(Error::KeyNotFound);
        }
        let lease = if r.ignore_lease { prev.as_ref().map_or(0, |p| p.lease) } else { r.lease };
        if lease != 0 && !self.base.lease_exists(lease) {
            return Err(Error::LeaseNotFound);
        }
        let value =
            if r.ignore_value { prev.as_ref().map(|p| p.value.clone()).unwrap_or_default() } else { r.value.clone() };
        let rev = self.revision() as i64;
        let kv = KeyValue {
            key: r.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        self.set(&r.key, Some(kv), prev.as_ref());
        Ok(PutResponse { header: None, prev_kv: if r.prev_kv { prev } else { None } })
    }

    fn delete_range(&mut self, r: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let doomed = self.range(&r.key, range_end(&r.key, &r.range_end))?;
        if !doomed.is_empty() {
            self.revision();
        }
        for kv in &doomed {
            self.set(&kv.key, None, Some(kv));
        }
        let deleted = doomed.len() as i64;
        Ok(DeleteRangeResponse { header: None, deleted, prev_kvs: if r.prev_kv { doomed } else { Vec::new() } })
    }

    fn delete_leased(&mut self, lease: i64, keys: &[Vec<u8>]) -> Result<usize> {
        let mut deleted = 0;
        for key in keys {
            if let Some(kv) = self.get(key)?.filter(|kv| kv.lease == lease) {
                self.revision();
                self.set(key, None, Some(&kv));
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn read(&self, r: &RangeRequest) -> Result<RangeResponse> {
        let end = range_end(&r.key, &r.range_end);
        let kvs = if r.revision > 0 { self.base.range_at(&r.key, end, r.revision)? } else { self.range(&r.key, end)? };
        let count = kvs.len();
        Ok(finish_range(r, kvs, count))
    }

    fn txn(&mut self, r: &TxnRequest) -> Result<TxnResponse> {
        let mut succeeded = true;
        for c in &r.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &r.success } else { &r.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let mut response = match &op.request {
                Some(Request::RequestRange(q)) => Response::ResponseRange(self.read(q)?),
                Some(Request::RequestPut(q)) => Response::ResponsePut(self.put(q)?),
                Some(Request::RequestDeleteRange(q)) => Response::ResponseDeleteRange(self.delete_range(q)?),
                Some(Request::RequestTxn(q)) => Response::ResponseTxn(self.txn(q)?),
                None => continue,
            };
            // etcd gives each inner response the store revision as of that
            // op: this txn's once it has written, else (0 here, filled in by
            // the router) the revision before it.
            let header = Some(ResponseHeader { revision: self.revision.map_or(0, |r| r as i64), ..Default::default() });
            match &mut response {
                Response::ResponseRange(r) => r.header = header,
                Response::ResponsePut(r) => r.header = header,
                Response::ResponseDeleteRange(r) => r.header = header,
                Response::ResponseTxn(r) => r.header = header,
            }
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }

    fn compare(&self, c: &Compare) -> Result<bool> {
        let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
        let kvs = self.range(&c.key, range_end(&c.key, &c.range_end))?;
        if kvs.is_empty() {
            if target == CompareTarget::Value {
                return Ok(false);
            }
            return Ok(compare_kv(c, target, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
    }
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[][..]),
        (t, u) => {
            let want = match u {
                Some(TargetUnion::Version(x))
                | Some(TargetUnion::CreateRevision(x))
                | Some(TargetUnion::ModRevision(x))
                | Some(TargetUnion::Lease(x)) => *x,
                _ => 0,
            };
            let have = match t {
                CompareTarget::Version => kv.version,
                CompareTarget::Create => kv.create_revision,
                CompareTarget::Mod => kv.mod_revision,
                CompareTarget::Lease => kv.lease,
                CompareTarget::Value => unreachable!("handled above"),
            };
            have.cmp(&want)
        }
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A view over a map, for tests.
    struct MapView(BTreeMap<Vec<u8>, KeyValue>);
    impl KvView for MapView {
        fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
            Ok(self.0.get(key).cloned())
        }
        fn range(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<KeyValue>> {
            Ok(self
                .0
                .range(start.to_vec()..)
                .take_while(|(k, _)| end.is_none_or(|e| k.as_slice() < e))
                .map(|(_, v)| v.clone())
                .collect())
        }
        fn range_at(&self, _key: &[u8], _end: Option<Option<Vec<u8>>>, _revision: i64) -> Result<Vec<KeyValue>> {
            Err(Error::Compacted)
        }
        fn lease_exists(&self, id: i64) -> bool {
            id == 42
        }
    }

    fn view() -> MapView {
        let kv = |k: &str, c, m, v| KeyValue {
            key: k.into(),
            create_revision: c,
            mod_revision: m,
            version: v,
            value: b"old".to_vec(),
            lease: 0,
        };
        MapView(
            [("a", kv("a", 2, 5, 3)), ("b", kv("b", 4, 4, 1))]
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    fn put(k: &str, v: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest { key: k.into(), value: v.into(), ..Default::default() })),
        }
    }

    #[test]
    fn put_bumps_version_and_keeps_create_revision() {
        let mut alloc = || 10;
        let req = WriteRequest::Put(PutRequest {
            key: b"a".to_vec(),
            value: b"new".to_vec(),
            prev_kv: true,
            ..Default::default()
        });
        let ev = evaluate(&req, &view(), &mut alloc).unwrap();
        assert_eq!(ev.revision, Some(10));
        let kv = ev.effects[0].kv.clone().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 10, 4));
        let WriteResponse::Put(resp) = ev.response else { panic!() };
        assert_eq!(resp.prev_kv.unwrap().value, b"old");
    }

    #[test]
    fn delete_of_nothing_takes_no_revision() {
        let mut alloc = || panic!("must not allocate");
        let req = WriteRequest::DeleteRange(DeleteRangeRequest {
            key: b"x".to_vec(),
            range_end: b"z".to_vec(),
            ..Default::default()
        });
        let ev = evaluate(&req, &view(), &mut alloc).unwrap();
        assert!(ev.revision.is_none() && ev.effects.is_empty());
    }

    #[test]
    fn txn_sees_its_own_writes_and_compares_missing_keys_as_zero() {
        let mut alloc = || 7;
        let cmp = Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: b"new".to_vec(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: vec![],
        };
        let get = RequestOp {
            request: Some(Request::RequestRange(RangeRequest { key: b"new".to_vec(), ..Default::default() })),
        };
        let req =
            WriteRequest::Txn(TxnRequest { compare: vec![cmp], success: vec![put("new", "v"), get], failure: vec![] });
        let ev = evaluate(&req, &view(), &mut alloc).unwrap();
        let WriteResponse::Txn(resp) = ev.response else { panic!() };
        assert!(resp.succeeded);
        let Some(Response::ResponseRange(r)) = &resp.responses[1].response else { panic!() };
        assert_eq!(r.kvs[0].mod_revision, 7);
        assert_eq!(r.kvs[0].version, 1);
    }

    #[test]
    fn value_compare_on_missing_key_fails() {
        let cmp = Compare {
            result: CompareResult::NotEqual as i32,
            target: CompareTarget::Value as i32,
            key: b"missing".to_vec(),
            target_union: Some(TargetUnion::Value(b"x".to_vec())),
            range_end: vec![],
        };
        let resp = evaluate_read_txn(&TxnRequest { compare: vec![cmp], ..Default::default() }, &view()).unwrap();
        assert!(!resp.succeeded);
    }

    #[test]
    fn put_with_unknown_lease_is_refused() {
        let mut alloc = || 1;
        let req = WriteRequest::Put(PutRequest { key: b"k".to_vec(), lease: 5, ..Default::default() });
        assert_eq!(evaluate(&req, &view(), &mut alloc).unwrap_err(), Error::LeaseNotFound);
        let req = WriteRequest::Put(PutRequest { key: b"a".to_vec(), lease: 42, ..Default::default() });
        let ev = evaluate(&req, &view(), &mut alloc).unwrap();
        assert_eq!((ev.effects[0].prev_lease, ev.effects[0].kv.as_ref().unwrap().lease), (0, 42));
    }
}
