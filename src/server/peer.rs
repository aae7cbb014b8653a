//! The peer port: the store-to-store transport's receiving end
//! (docs/cluster.md, "Transport").

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::Reply;
use crate::error::Error;
use crate::proto::etcdserverpb::RangeResponse;
use crate::proto::tesserapb::peer_transport_server::PeerTransport;
use crate::proto::tesserapb::region_request::Kind;
use crate::proto::tesserapb::region_response::Result as Answer;
use crate::proto::tesserapb::{
    AllocateRequest, AllocateResponse, JoinRequest, JoinResponse, RaftBatch, RaftDone, ReadPointRequest,
    ReadPointResponse, RegionRequest, RegionResponse, RevisionAsk, SnapshotChunk,
};
use crate::raftstore::transport::REMOVED;
use crate::raftstore::{remote, revisions, wire, PieceRead, Store};

/// The largest snapshot message taken (a region of `--region-max-bytes`
/// with all its history is far below).
const MAX_SNAPSHOT: usize = 4 << 30;

pub struct PeerService {
    pub store: Arc<Store>,
}

#[tonic::async_trait]
impl PeerTransport for PeerService {
    async fn raft(&self, request: Request<Streaming<RaftBatch>>) -> Reply<RaftDone> {
        let mut stream = request.into_inner();
        while let Some(mut batch) = stream.message().await? {
            if self.store.was_removed(batch.from_store) {
                // It stops when told (docs/cluster.md, "Membership changes").
                return Err(Status::failed_precondition(format!("tessera: store {} {REMOVED}", batch.from_store)));
            }
            if let Some(t) = self.store.transport() {
                t.heard_from(batch.from_store);
                if let Some(info) = batch.sender.take() {
                    t.learn(info);
                }
            }
            let messages = wire::unpack(self.store.store_id, batch)
                .map_err(|e| Status::invalid_argument(format!("tessera: {e}")))?;
            for (region, msg) in messages {
                self.store.deliver(region, msg);
            }
        }
        Ok(Response::new(RaftDone {}))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Reply<JoinResponse> {
        let req = request.into_inner();
        let members = self.store.members();
        if !members.members.iter().any(|m| m.peer_url == req.peer_url) {
            let url = &req.peer_url;
            return Err(Status::not_found(format!(
                "tessera: no member has peer URL {url}; add it first: etcdctl member add {} --peer-urls={url}",
                req.name
            )));
        }
        Ok(Response::new(JoinResponse { cluster_id: self.store.cluster_id, members: Some(members) }))
    }

    /// A region request for this store's peer (never passed on: a peer
    /// that does not lead answers so, and the asking router retries).
    async fn region(&self, request: Request<RegionRequest>) -> Reply<RegionResponse> {
        let req = request.into_inner();
        let (region, epoch) = (req.region_id, req.epoch_version);
        let store = &self.store;
        let answer = match req.kind {
            Some(Kind::Write(w)) => match remote::decode_write(w) {
                Some(w) => store.write_here(region, epoch, w, req.router_store).await.map(remote::encode_outcome),
                None => return Err(Status::invalid_argument("tessera: a region write without an operation")),
            },
            Some(Kind::Command(cmd)) => store
                .propose_here(region, epoch, cmd)
                .await
                .map(|took| RegionResponse { result: Some(Answer::TookEffect(took)), ..Default::default() }),
            Some(Kind::Compact(revision)) => store.compact_here(region, revision).await.map(|()| Default::default()),
            Some(Kind::TransferTo(to)) => store.transfer_here(region, to).map(|()| Default::default()),
            Some(Kind::Read(read)) => {
                let req = read.request.unwrap_or_default();
                let piece = PieceRead {
                    region,
                    epoch_version: epoch,
                    revision: read.revision,
                    req: &req,
                    start: &read.start,
                    end: read.end.as_deref(),
                };
                store.read_here(&piece).await.map(|(kvs, count)| RegionResponse {
                    result: Some(Answer::Read(RangeResponse { kvs, count: count as i64, ..Default::default() })),
                    ..Default::default()
                })
            }
            None => return Err(Status::invalid_argument("tessera: an empty region request")),
        };
        Ok(Response::new(
            answer.unwrap_or_else(|e| RegionResponse { error: Some(remote::encode_error(&e)), ..Default::default() }),
        ))
    }

    /// The region leaders of another store ask this (the leader) store's
    /// sequencer for revisions, and give unused ones back.
    async fn allocate(&self, request: Request<AllocateRequest>) -> Reply<AllocateResponse> {
        let req = request.into_inner();
        let sequencer = &self.store.sequencer;
        for v in req.voids {
            if sequencer.release(v.revision, v.term) {
                let (from, r) = (req.from_store, v.revision);
                tracing::debug!(target: "tessera::revisions", from, r, "voided by the store it went to");
            }
        }
        if req.asks.is_empty() {
            return Ok(Response::new(AllocateResponse::default()));
        }
        if crate::failpoint::is_armed("allocate-slow") {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if !self.store.is_evaluating() {
            return Err(Error::NotLeader { region: self.store.meta_region }.into());
        }
        let grants = req.asks.iter().map(|ask| revisions::encode_grant(self.grant(ask))).collect();
        Ok(Response::new(AllocateResponse { grants, term: sequencer.term() }))
    }

    /// Another store's linearizable reads take their revision here.
    async fn read_point(&self, _request: Request<ReadPointRequest>) -> Reply<ReadPointResponse> {
        let (revision, compacted) = self.store.read_point().await?;
        Ok(Response::new(ReadPointResponse { revision, compacted }))
    }

    async fn snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Reply<RaftDone> {
        use protobuf::Message as _;
        let mut stream = request.into_inner();
        let (mut bytes, mut region) = (Vec::new(), 0);
        while let Some(chunk) = stream.message().await? {
            region = chunk.region_id;
            bytes.extend_from_slice(&chunk.data);
            if bytes.len() > MAX_SNAPSHOT {
                return Err(Status::resource_exhausted("tessera: snapshot too large"));
            }
        }
        let msg = raft::prelude::Message::parse_from_bytes(&bytes)
            .map_err(|e| Status::invalid_argument(format!("tessera: bad snapshot message: {e}")))?;
        if msg.to != self.store.store_id {
            return Err(Status::invalid_argument(format!("tessera: a snapshot for store {}", msg.to)));
        }
        // Creating a region from it writes (and syncs) its data.
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.deliver(region, msg))
            .await
            .map_err(|e| Status::internal(format!("tessera: {e}")))?;
        Ok(Response::new(RaftDone {}))
    }
}

/// How long a joining store keeps asking the members it was given.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Asks the members at `urls` (peer URLs) for the cluster a store at
/// `peer_url` was added to, until one answers (a member that has not
/// applied the MemberAdd yet says "no member has peer URL").
pub async fn join(
    dialer: &crate::tls::client::Dialer,
    urls: &[String],
    peer_url: &str,
    name: &str,
) -> Result<JoinResponse, String> {
    use crate::proto::tesserapb::peer_transport_client::PeerTransportClient;
    let deadline = std::time::Instant::now() + JOIN_TIMEOUT;
    let mut last = String::from("no member to ask");
    loop {
        for url in urls {
            let request = JoinRequest { peer_url: peer_url.to_string(), name: name.to_string() };
            let endpoint = tonic::transport::Endpoint::from_shared(url.clone()).map_err(|e| e.to_string())?;
            let answer = match dialer.connect(endpoint.connect_timeout(std::time::Duration::from_secs(2))).await {
                Ok(channel) => {
                    PeerTransportClient::new(channel).join(request).await.map_err(|s| s.message().to_string())
                }
                Err(e) => Err(crate::tls::client::error_chain(&e)),
            };
            match answer {
                Ok(r) => return Ok(r.into_inner()),
                Err(e) => {
                    let e = format!("{url}: {e}");
                    if e != last {
                        tracing::warn!("joining: {e}");
                    }
                    last = e;
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

impl PeerService {
    /// One region leader's ask: a range of revisions, refused (and voided)
    /// if a lease its writes attach to is gone.
    fn grant(&self, ask: &RevisionAsk) -> Result<(u64, u64), Error> {
        let sequencer = &self.store.sequencer;
        let (first, count) = sequencer.take_range(ask.region_id, ask.term, ask.seq, ask.count as u64)?;
        let last = first + count;
        let (region, term, seq) = (ask.region_id, ask.term, ask.seq);
        tracing::debug!(target: "tessera::revisions", region, term, seq, first, count, "granted");
        if count > 0 && revisions::acknowledged_once_handed_out(ask.router_store, self.store.store_id) {
            sequencer.acknowledge(last - 1);
        }
        if count > 0 && !self.store.lessor.all_exist(&ask.leases) {
            tracing::debug!(target: "tessera::revisions", region, first, count, "voided: a lease of the ask is gone");
            for r in first..last {
                sequencer.finish(r);
            }
            return Err(Error::LeaseNotFound);
        }
        Ok((first, count))
    }
}
