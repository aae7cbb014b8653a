//! The etcd Cluster service for a single store: MemberList shows it;
//! membership changes wait for the cluster issue and say so.

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

fn single_node(method: &str) -> Status {
    Status::failed_precondition(format!(
        "tessera: {method}: this is a single-node store; membership changes come with multi-node clusters"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, _r: Request<MemberListRequest>) -> Reply<MemberListResponse> {
        let header = self.router.current_header();
        let me = Member {
            id: header.member_id,
            name: self.member.name.clone(),
            peer_ur_ls: self.member.peer_urls.clone(),
            client_ur_ls: self.member.client_urls.clone(),
            is_learner: false,
        };
        Ok(Response::new(MemberListResponse { header: Some(header), members: vec![me] }))
    }
    async fn member_add(&self, _r: Request<MemberAddRequest>) -> Reply<MemberAddResponse> {
        Err(single_node("MemberAdd"))
    }
    async fn member_remove(&self, _r: Request<MemberRemoveRequest>) -> Reply<MemberRemoveResponse> {
        Err(single_node("MemberRemove"))
    }
    async fn member_update(&self, _r: Request<MemberUpdateRequest>) -> Reply<MemberUpdateResponse> {
        Err(single_node("MemberUpdate"))
    }
    async fn member_promote(&self, _r: Request<MemberPromoteRequest>) -> Reply<MemberPromoteResponse> {
        Err(single_node("MemberPromote"))
    }
}
