//! The peer port: the store-to-store transport's receiving end
//! (docs/cluster.md, "Transport").

use std::sync::Arc;

use protobuf::Message as _;
use tonic::{Request, Response, Status, Streaming};

use super::Reply;
use crate::proto::tesserapb::peer_transport_server::PeerTransport;
use crate::proto::tesserapb::{RaftBatch, RaftDone};
use crate::raftstore::Store;

pub struct PeerService {
    pub store: Arc<Store>,
}

#[tonic::async_trait]
impl PeerTransport for PeerService {
    async fn raft(&self, request: Request<Streaming<RaftBatch>>) -> Reply<RaftDone> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            if let (Some(info), Some(t)) = (batch.sender, self.store.transport()) {
                t.learn(info);
            }
            for env in batch.messages {
                let msg = raft::prelude::Message::parse_from_bytes(&env.message)
                    .map_err(|e| Status::invalid_argument(format!("tessera: bad raft message: {e}")))?;
                self.store.deliver(env.region_id, msg);
            }
        }
        Ok(Response::new(RaftDone {}))
    }
}
