//! The etcd Maintenance service: Status for now; the other methods answer
//! UNIMPLEMENTED naming themselves until the etcd-surface issue builds them.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Reply;

use super::not_yet;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;
use crate::router::Router;

/// The etcd version tessera reports: Kubernetes enables its newer features
/// from 3.5.13 on, and tessera serves the 3.5 API.
pub const ETCD_VERSION: &str = "3.5.13";

pub struct MaintenanceService {
    pub router: Arc<Router>,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _request: Request<StatusRequest>) -> Reply<StatusResponse> {
        let store = self.router.store();
        let header = self.router.header(store.sequencer.last());
        let applied = store.applied_index();
        let size = store.db_size() as i64;
        let errors = if store.all_leading() { Vec::new() } else { vec!["a region has no leader".to_string()] };
        Ok(Response::new(StatusResponse {
            version: ETCD_VERSION.to_string(),
            db_size: size,
            db_size_in_use: size,
            // One store: it leads every region.
            leader: header.member_id,
            raft_index: applied,
            raft_term: header.raft_term,
            raft_applied_index: applied,
            errors,
            header: Some(header),
            ..Default::default()
        }))
    }

    async fn alarm(&self, _r: Request<AlarmRequest>) -> Reply<AlarmResponse> {
        Err(not_yet("etcdserverpb.Maintenance/Alarm"))
    }
    async fn defragment(&self, _r: Request<DefragmentRequest>) -> Reply<DefragmentResponse> {
        Err(not_yet("etcdserverpb.Maintenance/Defragment"))
    }
    async fn hash(&self, _r: Request<HashRequest>) -> Reply<HashResponse> {
        Err(not_yet("etcdserverpb.Maintenance/Hash"))
    }
    async fn hash_kv(&self, _r: Request<HashKvRequest>) -> Reply<HashKvResponse> {
        Err(not_yet("etcdserverpb.Maintenance/HashKV"))
    }
    type SnapshotStream = tokio_stream::Empty<Result<SnapshotResponse, Status>>;
    async fn snapshot(&self, _r: Request<SnapshotRequest>) -> Reply<Self::SnapshotStream> {
        Err(not_yet("etcdserverpb.Maintenance/Snapshot"))
    }
    async fn move_leader(&self, _r: Request<MoveLeaderRequest>) -> Reply<MoveLeaderResponse> {
        Err(not_yet("etcdserverpb.Maintenance/MoveLeader"))
    }
    async fn downgrade(&self, _r: Request<DowngradeRequest>) -> Reply<DowngradeResponse> {
        Err(not_yet("etcdserverpb.Maintenance/Downgrade"))
    }
}
