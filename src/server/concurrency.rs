//! What the Lock and Election services share, as etcd's concurrency
//! package does it: a waiter owns the key `<name>/<lease in hex>` (created
//! with its lease) and holds the lock (leads the election) once no key
//! under `<name>/` is older (smaller create revision) than its own.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::*;
use crate::proto::mvccpb::KeyValue;
use crate::router::Router;

/// The key a waiter with `lease` owns under `name`.
pub fn owner_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix(name);
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// `name/`: the keys of every waiter.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// The end of the range of keys starting with `p` (etcd's prefix end).
pub fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut end = p.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Creates `key` with `value` and `lease` unless it exists; returns its
/// create revision and its current value (as found when it existed). A
/// lease that does not exist fails as etcd's services fail it
/// ([`Error::SessionLeaseNotFound`]).
pub async fn create_once(router: &Arc<Router>, key: &[u8], value: &[u8], lease: i64) -> Result<(i64, KeyValue)> {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        }],
        success: vec![
            op(Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
                ..Default::default()
            })),
            op(Request::RequestRange(RangeRequest { key: key.to_vec(), ..Default::default() })),
        ],
        failure: vec![op(Request::RequestRange(RangeRequest { key: key.to_vec(), ..Default::default() }))],
    };
    let resp = router.txn(txn).await.map_err(|e| match e {
        Error::LeaseNotFound => Error::SessionLeaseNotFound,
        e => e,
    })?;
    let kv = resp
        .responses
        .iter()
        .filter_map(|r| match &r.response {
            Some(Response::ResponseRange(g)) => g.kvs.first().cloned(),
            _ => None,
        })
        .next()
        .ok_or(Error::SessionLeaseNotFound)?;
    Ok((kv.create_revision, kv))
}

fn op(request: Request) -> RequestOp {
    RequestOp { request: Some(request) }
}

/// The waiters' keys under `name/`, oldest first.
pub async fn waiters(router: &Router, name: &[u8]) -> Result<(Vec<KeyValue>, ResponseHeader)> {
    let p = prefix(name);
    let req = RangeRequest {
        key: p.clone(),
        range_end: prefix_end(&p),
        sort_order: range_request::SortOrder::Ascend as i32,
        sort_target: range_request::SortTarget::Create as i32,
        ..Default::default()
    };
    let resp = router.range(&req).await?;
    Ok((resp.kvs, resp.header.unwrap_or_default()))
}

/// Waits until the waiter whose key `key` was created at `rev` is the
/// oldest under `name/`; fails with `session expired` if its key goes
/// (its lease ended). Returns the header of the read that saw it first.
pub async fn wait_turn(router: &Router, name: &[u8], key: &[u8], rev: i64) -> Result<ResponseHeader> {
    let mut resolved = router.feed().subscribe();
    loop {
        let (kvs, header) = waiters(router, name).await?;
        if !kvs.iter().any(|kv| kv.key == key) {
            return Err(Error::SessionExpired);
        }
        if kvs.first().is_some_and(|kv| kv.create_revision == rev) {
            return Ok(header);
        }
        // Something changed once the resolved revision moves; the periodic
        // wake-up is only a safety net.
        let _ = tokio::time::timeout(Duration::from_secs(1), resolved.changed()).await;
    }
}
