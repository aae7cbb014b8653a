//! Requests to other stores beside raft's messages (docs/cluster.md,
//! "Region leaders on every store"): a region request to the store whose
//! peer leads the region, and a region leader's asks for revisions to the
//! leader store. Their wire forms and errors live here.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::msg::WriteOutcome;
use super::transport::Transport;
use crate::error::{Error, Result};
use crate::proto::tesserapb::peer_transport_client::PeerTransportClient;
use crate::proto::tesserapb::region_response::Result as Answer;
use crate::proto::tesserapb::region_write::Op;
use crate::proto::tesserapb::{
    AllocateRequest, AllocateResponse, DeleteLeased, ReadPointRequest, ReadPointResponse, RegionError, RegionRequest,
    RegionResponse, RegionWrite,
};
use crate::region::eval::{WriteRequest, WriteResponse};

/// How long a batch of asks for revisions may take before its writes are refused
/// (and retried by the router).
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a region request may wait for its answer (a write's own
/// deadline is the router's, about as long).
const REGION_TIMEOUT: Duration = Duration::from_secs(10);

impl Transport {
    fn client(&self, store: u64) -> Option<PeerTransportClient<Channel>> {
        if let Some(c) = self.clients.get(&store) {
            return Some(c.clone());
        }
        let url = self.urls.get(&store)?.clone();
        let _context = self.runtime.as_ref()?.enter();
        let channel =
            self.dialer().connect_lazy(Endpoint::from_shared(url).ok()?.connect_timeout(Duration::from_secs(1)));
        let client = PeerTransportClient::new(channel).max_decoding_message_size(usize::MAX);
        self.clients.insert(store, client.clone());
        Some(client)
    }

    /// Sends a region request to `store` (where the region's leader is).
    /// A request that may have reached it and got no answer fails with
    /// `Timeout` (its outcome is unknown: a write must not be made twice)
    /// unless `repeatable`; one that never left (no connection) fails with
    /// `NotLeader`, and the router asks again.
    pub async fn region(&self, store: u64, req: RegionRequest, repeatable: bool) -> Result<RegionResponse> {
        let region = req.region_id;
        let mut client = self.client(store).ok_or(Error::NotLeader { region })?;
        let Ok(answer) = tokio::time::timeout(REGION_TIMEOUT, client.region(req)).await else {
            return Err(if repeatable { Error::NotLeader { region } } else { Error::Timeout });
        };
        match answer {
            Ok(resp) => {
                let resp = resp.into_inner();
                match resp.error {
                    Some(e) => Err(decode_error(e)),
                    None => Ok(resp),
                }
            }
            Err(status) => {
                tracing::debug!(region, store, "region request: {status}");
                let never_left = status.code() == tonic::Code::Unavailable && status.message().contains("connect");
                if repeatable || never_left {
                    Err(Error::NotLeader { region })
                } else {
                    Err(Error::Timeout)
                }
            }
        }
    }

    /// Sends a batch of asks for revisions and voids to leader store `to`
    /// (see [`super::revisions`]).
    pub async fn allocate(&self, to: u64, req: AllocateRequest) -> Result<AllocateResponse> {
        let mut client = self.client(to).ok_or(Error::ProposalDropped { region: 0 })?;
        let asks = !req.asks.is_empty();
        match tokio::time::timeout(ASK_TIMEOUT, client.allocate(req)).await {
            Ok(Ok(_)) if asks && crate::failpoint::dropped("ask-answer-lost") => Err(Error::Timeout),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => {
                tracing::debug!(to, "asking for revisions: {status}");
                Err(Error::ProposalDropped { region: 0 })
            }
            Err(_) => Err(Error::Timeout),
        }
    }

    /// Asks leader store `to` for a read point (see `router/read_point.rs`).
    pub async fn read_point(&self, to: u64, req: ReadPointRequest) -> Result<ReadPointResponse> {
        let not_there = || Error::NotLeader { region: 0 };
        let mut client = self.client(to).ok_or_else(not_there)?;
        match tokio::time::timeout(ASK_TIMEOUT, client.read_point(req)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => {
                tracing::debug!(to, "asking for a read point: {status}");
                Err(not_there())
            }
            Err(_) => Err(not_there()),
        }
    }
}

/// A region request's error; kind 0 is an error for the client, the others
/// routing conditions (see [`decode_error`]).
pub fn encode_error(e: &Error) -> RegionError {
    let (kind, region) = match e {
        Error::NotLeader { region } => (1, *region),
        Error::EpochNotMatch { region } => (2, *region),
        Error::ProposalDropped { region } => (3, *region),
        Error::Locked { region } => (4, *region),
        Error::TxnAborted => (5, 0),
        Error::RegionNotFound => (6, 0),
        Error::Timeout => (7, 0),
        Error::Stopped => (8, 0),
        Error::RegionBusy { region } => (9, *region),
        _ => (0, 0),
    };
    let status = tonic::Status::from(e.clone());
    RegionError { kind, region_id: region, code: status.code() as i32, message: status.message().to_string() }
}

pub fn decode_error(e: RegionError) -> Error {
    let region = e.region_id;
    match e.kind {
        1 => Error::NotLeader { region },
        2 => Error::EpochNotMatch { region },
        3 => Error::ProposalDropped { region },
        4 => Error::Locked { region },
        5 => Error::TxnAborted,
        6 => Error::RegionNotFound,
        7 => Error::Timeout,
        8 => Error::Stopped,
        9 => Error::RegionBusy { region },
        _ => Error::Remote { code: e.code, message: e.message },
    }
}

pub fn encode_write(req: WriteRequest) -> RegionWrite {
    let op = match req {
        WriteRequest::Put(r) => Op::Put(r),
        WriteRequest::DeleteRange(r) => Op::DeleteRange(r),
        WriteRequest::Txn(r) => Op::Txn(r),
        WriteRequest::DeleteLeased { lease, keys } => Op::DeleteLeased(DeleteLeased { lease, keys }),
    };
    RegionWrite { op: Some(op) }
}

pub fn decode_write(w: RegionWrite) -> Option<WriteRequest> {
    Some(match w.op? {
        Op::Put(r) => WriteRequest::Put(r),
        Op::DeleteRange(r) => WriteRequest::DeleteRange(r),
        Op::Txn(r) => WriteRequest::Txn(r),
        Op::DeleteLeased(d) => WriteRequest::DeleteLeased { lease: d.lease, keys: d.keys },
    })
}

pub fn encode_outcome(o: WriteOutcome) -> RegionResponse {
    let result = match o.response {
        WriteResponse::Put(r) => Answer::Put(r),
        WriteResponse::DeleteRange(r) => Answer::DeleteRange(r),
        WriteResponse::Txn(r) => Answer::Txn(r),
        WriteResponse::DeleteLeased(n) => Answer::Deleted(n as u64),
    };
    RegionResponse { revision: o.revision.unwrap_or(0), result: Some(result), ..Default::default() }
}

pub fn decode_outcome(r: RegionResponse) -> Result<WriteOutcome> {
    let response = match r.result {
        Some(Answer::Put(p)) => WriteResponse::Put(p),
        Some(Answer::DeleteRange(d)) => WriteResponse::DeleteRange(d),
        Some(Answer::Txn(t)) => WriteResponse::Txn(t),
        Some(Answer::Deleted(n)) => WriteResponse::DeleteLeased(n as usize),
        _ => return Err(Error::Storage("a region answered a write with no write response".into())),
    };
    Ok(WriteOutcome { revision: (r.revision > 0).then_some(r.revision), response })
}
