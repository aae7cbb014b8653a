//! The peer port: the store-to-store transport's receiving end
//! (docs/cluster.md, "Transport").

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::Reply;
use crate::proto::tesserapb::peer_transport_server::PeerTransport;
use crate::proto::tesserapb::{JoinRequest, JoinResponse, RaftBatch, RaftDone, SnapshotChunk};
use crate::raftstore::transport::REMOVED;
use crate::raftstore::{wire, Store};

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
pub async fn join(urls: &[String], peer_url: &str, name: &str) -> Result<JoinResponse, String> {
    use crate::proto::tesserapb::peer_transport_client::PeerTransportClient;
    let deadline = std::time::Instant::now() + JOIN_TIMEOUT;
    let mut last = String::from("no member to ask");
    loop {
        for url in urls {
            let request = JoinRequest { peer_url: peer_url.to_string(), name: name.to_string() };
            let answer = match PeerTransportClient::connect(url.clone()).await {
                Ok(mut client) => client.join(request).await.map_err(|s| s.message().to_string()),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(r) => return Ok(r.into_inner()),
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(last);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
