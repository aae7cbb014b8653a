//! The peer port: the store-to-store transport's receiving end
//! (docs/cluster.md, "Transport").

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::Reply;
use crate::proto::tesserapb::peer_transport_server::PeerTransport;
use crate::proto::tesserapb::{RaftBatch, RaftDone, SnapshotChunk};
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
            if let (Some(info), Some(t)) = (batch.sender.take(), self.store.transport()) {
                t.learn(info);
            }
            let messages = wire::unpack(self.store.store_id, batch)
                .map_err(|e| Status::invalid_argument(format!("tessera: {e}")))?;
            for (region, msg) in messages {
                self.store.deliver(region, msg);
            }
        }
        Ok(Response::new(RaftDone {}))
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
