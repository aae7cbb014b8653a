//! The peer port: the store-to-store transport's receiving end
//! (docs/cluster.md, "Transport").

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::Reply;
use crate::proto::tesserapb::peer_transport_server::PeerTransport;
use crate::proto::tesserapb::{RaftBatch, RaftDone};
use crate::raftstore::{wire, Store};

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
}
