//! tessera's own Admin service (proto/tessera/admin.proto) on the client
//! port: regions, split, merge, transfer-leader. The work is in
//! src/router/admin.rs.

use std::sync::Arc;

use tonic::{Request, Response};

use super::Reply;
use crate::proto::tesserapb::admin_server::Admin;
use crate::proto::tesserapb::*;
use crate::router::Router;

pub struct AdminService {
    pub router: Arc<Router>,
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn regions(&self, _request: Request<RegionsRequest>) -> Reply<RegionsResponse> {
        let regions = self.router.regions_info().await?;
        Ok(Response::new(RegionsResponse { regions }))
    }

    async fn split(&self, request: Request<SplitRequest>) -> Reply<SplitResponse> {
        let req = request.into_inner();
        if !req.keys.is_empty() {
            let done = self.router.split_at_keys(req.keys).await?;
            return Ok(Response::new(SplitResponse {
                left: done.first,
                right: done.last,
                created: done.created,
                skipped: done.skipped,
                commands: done.commands,
            }));
        }
        let key = (!req.key.is_empty()).then_some(req.key);
        let region = (req.region_id != 0).then_some(req.region_id);
        let (left, right) = self.router.split(key, region).await?;
        Ok(Response::new(SplitResponse { left: Some(left), right: Some(right), ..Default::default() }))
    }

    async fn merge(&self, request: Request<MergeRequest>) -> Reply<MergeResponse> {
        let req = request.into_inner();
        let region = self.router.merge(req.left, req.right).await?;
        Ok(Response::new(MergeResponse { region: Some(region) }))
    }

    async fn transfer_leader(&self, request: Request<TransferLeaderRequest>) -> Reply<TransferLeaderResponse> {
        let req = request.into_inner();
        let region = self.router.transfer_leader(req.region_id, req.to_store).await?;
        Ok(Response::new(TransferLeaderResponse { region: Some(region) }))
    }
}
