//! The etcd KV service: validate, route, answer.

use std::sync::Arc;

use prost::Message as _;
use tonic::{Request, Response, Status};

use super::validate::{self, Limits};
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::*;
use crate::router::Router;

pub struct KvService {
    pub router: Arc<Router>,
    pub limits: Limits,
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        self.limits.size(&req)?;
        validate::range(&req)?;
        Ok(Response::new(self.router.range(&req).await?))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        self.limits.size(&req)?;
        validate::put(&req)?;
        self.router.alarms.check_write(req.encoded_len())?;
        Ok(Response::new(self.router.put(req).await?))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let req = request.into_inner();
        self.limits.size(&req)?;
        validate::delete_range(&req)?;
        Ok(Response::new(self.router.delete_range(req).await?))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let req = request.into_inner();
        self.limits.size(&req)?;
        validate::txn(&req, self.limits.max_txn_ops)?;
        if crate::region::eval::txn_puts(&req) {
            self.router.alarms.check_write(req.encoded_len())?;
        }
        Ok(Response::new(self.router.txn(req).await?))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(self.router.compact(&req).await?))
    }
}
