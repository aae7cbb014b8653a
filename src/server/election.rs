//! The v3election service (what `etcdctl elect` and clients' Election
//! call): the leader of election N is the oldest key under `N/` (see
//! [`super::concurrency`]); its value is what the leader proclaims.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::concurrency::{create_once, owner_key, wait_turn, waiters};
use super::Reply;
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::*;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::*;
use crate::router::Router;

pub struct ElectionService {
    pub router: Arc<Router>,
    /// Becomes true when the server shuts down: Observe streams end.
    pub stopping: watch::Receiver<bool>,
}

/// A txn that does `then` only while `leader`'s key is the one it created.
fn while_leader(leader: &LeaderKey, then: Op) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: leader.key.clone(),
            target_union: Some(TargetUnion::CreateRevision(leader.rev)),
            range_end: Vec::new(),
        }],
        success: vec![RequestOp { request: Some(then) }],
        failure: Vec::new(),
    }
}

impl ElectionService {
    async fn proclaim_as(&self, leader: &LeaderKey, value: Vec<u8>) -> Result<ResponseHeader> {
        let put =
            Op::RequestPut(PutRequest { key: leader.key.clone(), value, lease: leader.lease, ..Default::default() });
        let resp = self.router.txn(while_leader(leader, put)).await?;
        if !resp.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(resp.header.unwrap_or_default())
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    /// Waits until the caller leads, then returns its leader key.
    async fn campaign(&self, request: Request<CampaignRequest>) -> Reply<CampaignResponse> {
        let req = request.into_inner();
        let key = owner_key(&req.name, req.lease);
        let (rev, kv) = create_once(&self.router, &key, &req.value, req.lease).await?;
        let leader = LeaderKey { name: req.name.clone(), key: key.clone(), rev, lease: req.lease };
        if kv.value != req.value {
            // Campaigning again with a new value: proclaim it, as etcd does.
            self.proclaim_as(&leader, req.value.clone()).await?;
        }
        let header = wait_turn(&self.router, &req.name, &key, rev).await?;
        Ok(Response::new(CampaignResponse { header: Some(header), leader: Some(leader) }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Reply<ProclaimResponse> {
        let req = request.into_inner();
        let leader = req.leader.ok_or(Error::MissingLeaderKey)?;
        let header = self.proclaim_as(&leader, req.value).await?;
        Ok(Response::new(ProclaimResponse { header: Some(header) }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Reply<LeaderResponse> {
        let (kvs, header) = waiters(&self.router, &request.into_inner().name).await?;
        let kv = kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
        Ok(Response::new(LeaderResponse { header: Some(header), kv: Some(kv) }))
    }

    type ObserveStream = ReceiverStream<Result<LeaderResponse, Status>>;

    /// Streams the leader each time it (or its value) changes.
    async fn observe(&self, request: Request<LeaderRequest>) -> Reply<Self::ObserveStream> {
        let name = request.into_inner().name;
        let (tx, rx) = mpsc::channel(16);
        let router = self.router.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut resolved = router.feed().subscribe();
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                match waiters(&router, &name).await {
                    Ok((kvs, header)) => {
                        if let Some(kv) = kvs.into_iter().next() {
                            let now = (kv.key.clone(), kv.mod_revision);
                            if last.as_ref() != Some(&now) {
                                last = Some(now);
                                if tx.send(Ok(LeaderResponse { header: Some(header), kv: Some(kv) })).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = resolved.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    _ = async { drop(stopping.wait_for(|s| *s).await) } => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Reply<ResignResponse> {
        let leader = request.into_inner().leader.ok_or(Error::MissingLeaderKey)?;
        let delete = Op::RequestDeleteRange(DeleteRangeRequest { key: leader.key.clone(), ..Default::default() });
        let resp = self.router.txn(while_leader(&leader, delete)).await?;
        Ok(Response::new(ResignResponse { header: resp.header }))
    }
}
