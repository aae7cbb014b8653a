//! The etcd Cluster service: MemberList shows every store of the cluster;
//! membership changes are not built yet and say so.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Reply;

use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::router::Router;

/// What MemberList says about this store.
#[derive(Debug, Clone, Default)]
pub struct MemberInfo {
    pub name: String,
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
}

pub struct ClusterService {
    pub router: Arc<Router>,
    pub member: MemberInfo,
}

fn fixed_members(method: &str) -> Status {
    Status::failed_precondition(format!(
        "tessera: {method}: membership changes are not supported yet; a cluster's members are fixed by --initial-cluster"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, _r: Request<MemberListRequest>) -> Reply<MemberListResponse> {
        let header = self.router.current_header();
        let store = self.router.store();
        let me = Member {
            id: header.member_id,
            name: self.member.name.clone(),
            peer_ur_ls: self.member.peer_urls.clone(),
            client_ur_ls: self.member.client_urls.clone(),
            is_learner: false,
        };
        let mut members = vec![me];
        for m in store.members.iter().filter(|m| m.store_id != store.store_id) {
            // Client URLs as the member told us on its first raft batch
            // (empty until it has: etcd shows an unstarted member so too).
            let info = store.transport().and_then(|t| t.info(m.store_id));
            members.push(Member {
                id: store.member_id_of(m.store_id),
                name: m.name.clone(),
                peer_ur_ls: vec![m.peer_url.clone()],
                client_ur_ls: info.map(|i| i.client_urls).unwrap_or_default(),
                is_learner: false,
            });
        }
        // In --initial-cluster order on every member.
        members.sort_by_key(|m| store.members.iter().position(|x| x.name == m.name));
        Ok(Response::new(MemberListResponse { header: Some(header), members }))
    }
    async fn member_add(&self, _r: Request<MemberAddRequest>) -> Reply<MemberAddResponse> {
        Err(fixed_members("MemberAdd"))
    }
    async fn member_remove(&self, _r: Request<MemberRemoveRequest>) -> Reply<MemberRemoveResponse> {
        Err(fixed_members("MemberRemove"))
    }
    async fn member_update(&self, _r: Request<MemberUpdateRequest>) -> Reply<MemberUpdateResponse> {
        Err(fixed_members("MemberUpdate"))
    }
    async fn member_promote(&self, _r: Request<MemberPromoteRequest>) -> Reply<MemberPromoteResponse> {
        Err(fixed_members("MemberPromote"))
    }
}
