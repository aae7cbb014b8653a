//! The v3lock service (what `etcdctl lock` and clients' Lock call): a lock
//! named N is held by the oldest key under `N/` (see [`super::concurrency`]).

use std::sync::Arc;

use tonic::{Request, Response};

use super::concurrency::{create_once, owner_key, wait_turn};
use super::Reply;
use crate::proto::etcdserverpb::DeleteRangeRequest;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::*;
use crate::router::Router;

pub struct LockService {
    pub router: Arc<Router>,
}

#[tonic::async_trait]
impl Lock for LockService {
    /// Waits until the caller holds the lock; the key it holds is returned
    /// and lives as long as the caller's lease (or until Unlock).
    async fn lock(&self, request: Request<LockRequest>) -> Reply<LockResponse> {
        let req = request.into_inner();
        let key = owner_key(&req.name, req.lease);
        let (rev, _) = create_once(&self.router, &key, b"", req.lease).await?;
        let header = wait_turn(&self.router, &req.name, &key, rev).await?;
        Ok(Response::new(LockResponse { header: Some(header), key }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Reply<UnlockResponse> {
        let key = request.into_inner().key;
        let resp = self.router.delete_range(DeleteRangeRequest { key, ..Default::default() }).await?;
        Ok(Response::new(UnlockResponse { header: resp.header }))
    }
}
