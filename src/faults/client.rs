//! One etcd client of a fault run: a connection to every member, the
//! member it talks to now (it moves on after an unknown outcome, as etcd's
//! clients do), and the translation of [`Op`]s to etcd requests and of the
//! answers to [`Outcome`]s.

use std::time::Duration;

use tonic::transport::Channel;
use tonic::Code;

use super::history::{Compare, Kv, Op, Outcome, Reply};
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::mvccpb;

/// How long one request may take before its outcome counts as unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A lazily connected channel to each member.
pub fn channels(endpoints: &[String]) -> Vec<Channel> {
    endpoints
        .iter()
        .map(|e| {
            Channel::from_shared(e.clone())
                .expect("endpoint URL")
                .connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .connect_lazy()
        })
        .collect()
}

pub struct Client {
    channels: Vec<Channel>,
    current: usize,
}

impl Client {
    pub fn new(channels: Vec<Channel>, first: usize) -> Client {
        let current = first % channels.len();
        Client { channels, current }
    }

    /// Sends `op` to the current member; moves to the next member after an
    /// unknown outcome.
    pub async fn run(&mut self, op: &Op) -> Outcome {
        let channel = self.channels[self.current].clone();
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, send(channel, op)).await {
            Ok(Ok(reply)) => Outcome::Ok(reply),
            Ok(Err(status)) => classify(&status),
            Err(_) => Outcome::Unknown("client timeout".into()),
        };
        if matches!(outcome, Outcome::Unknown(_)) {
            self.current = (self.current + 1) % self.channels.len();
        }
        outcome
    }
}

/// etcd's definite refusals did nothing; everything else may have happened.
fn classify(status: &tonic::Status) -> Outcome {
    let text = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::NotFound
        | Code::OutOfRange
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::Unauthenticated => Outcome::Failed(text),
        _ => Outcome::Unknown(text),
    }
}

fn revision(h: Option<pb::ResponseHeader>) -> i64 {
    h.map_or(0, |h| h.revision)
}

pub fn kv_of(kv: mvccpb::KeyValue) -> Kv {
    Kv {
        key: kv.key,
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

async fn send(channel: Channel, op: &Op) -> Result<Reply, tonic::Status> {
    let mut kv = KvClient::new(channel.clone());
    Ok(match op {
        Op::Put { key, value, lease } => {
            let req = pb::PutRequest { key: key.clone(), value: value.clone(), lease: *lease, ..Default::default() };
            Reply::Put { revision: revision(kv.put(req).await?.into_inner().header) }
        }
        Op::Range { range, serializable } => {
            let req = pb::RangeRequest {
                key: range.key.clone(),
                range_end: range.range_end.clone(),
                serializable: *serializable,
                ..Default::default()
            };
            let resp = kv.range(req).await?.into_inner();
            Reply::Range { revision: revision(resp.header), kvs: resp.kvs.into_iter().map(kv_of).collect() }
        }
        Op::Delete { range } => {
            let req =
                pb::DeleteRangeRequest { key: range.key.clone(), range_end: range.range_end.clone(), prev_kv: false };
            let resp = kv.delete_range(req).await?.into_inner();
            Reply::Delete { revision: revision(resp.header), deleted: resp.deleted }
        }
        Op::Cas { compares, puts } => {
            let req = pb::TxnRequest {
                compare: compares.iter().map(compare).collect(),
                success: puts
                    .iter()
                    .map(|(k, v)| pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: k.clone(),
                            value: v.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect(),
                failure: Vec::new(),
            };
            let resp = kv.txn(req).await?.into_inner();
            Reply::Cas { revision: revision(resp.header), succeeded: resp.succeeded }
        }
        Op::LeaseGrant { id, ttl } => {
            let req = pb::LeaseGrantRequest { id: *id, ttl: *ttl };
            let resp = LeaseClient::new(channel).lease_grant(req).await?.into_inner();
            if !resp.error.is_empty() {
                return Err(tonic::Status::failed_precondition(resp.error));
            }
            Reply::LeaseGrant { revision: revision(resp.header) }
        }
        Op::LeaseRevoke { id } => {
            let resp = LeaseClient::new(channel).lease_revoke(pb::LeaseRevokeRequest { id: *id }).await?.into_inner();
            Reply::LeaseRevoke { revision: revision(resp.header) }
        }
    })
}

fn compare(c: &Compare) -> pb::Compare {
    let (target, union) = match &c.value {
        Some(v) => (CompareTarget::Value, TargetUnion::Value(v.clone())),
        None => (CompareTarget::Version, TargetUnion::Version(0)),
    };
    pb::Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: c.key.clone(),
        target_union: Some(union),
        range_end: Vec::new(),
    }
}
