//! The etcd Lease service: grant, revoke, keep-alive stream, time-to-live,
//! list (see `src/router/lease.rs` and `src/lessor`).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Reply;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::*;
use crate::router::Router;

pub struct LeaseService {
    pub router: Arc<Router>,
    /// Becomes true when the server shuts down: keep-alive streams end.
    pub stopping: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Reply<LeaseGrantResponse> {
        let req = request.into_inner();
        self.router.alarms.check_write(0)?;
        let (id, ttl) = self.router.lease_grant(req.id, req.ttl).await?;
        Ok(Response::new(LeaseGrantResponse {
            header: Some(self.router.current_header()),
            id,
            ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(&self, request: Request<LeaseRevokeRequest>) -> Reply<LeaseRevokeResponse> {
        let deleted_at = self.router.lease_revoke(request.into_inner().id).await?;
        let header = deleted_at.map_or_else(|| self.router.current_header(), |r| self.router.header(r));
        Ok(Response::new(LeaseRevokeResponse { header: Some(header) }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Reply<Self::LeaseKeepAliveStream> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let router = self.router.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    msg = requests.message() => match msg {
                        Ok(Some(req)) => req,
                        _ => return,
                    },
                    _ = async { drop(stopping.wait_for(|s| *s).await) } => return,
                };
                let ttl = router.lease_keep_alive(req.id);
                let header = Some(router.current_header());
                let resp = LeaseKeepAliveResponse { header, id: req.id, ttl };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(&self, request: Request<LeaseTimeToLiveRequest>) -> Reply<LeaseTimeToLiveResponse> {
        let req = request.into_inner();
        // etcd answers an unknown lease with TTL -1, not an error.
        let resp = match self.router.lease_time_to_live(req.id, req.keys) {
            Some(t) => LeaseTimeToLiveResponse {
                header: Some(self.router.current_header()),
                id: req.id,
                ttl: t.remaining,
                granted_ttl: t.granted,
                keys: t.keys,
            },
            None => LeaseTimeToLiveResponse {
                header: Some(self.router.current_header()),
                id: req.id,
                ttl: -1,
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(&self, _request: Request<LeaseLeasesRequest>) -> Reply<LeaseLeasesResponse> {
        let leases = self.router.lease_ids().into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: Some(self.router.current_header()), leases }))
    }
}
