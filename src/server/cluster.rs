//! The etcd Cluster service: MemberList shows every member as this store
//! applied the member set; MemberAdd and MemberRemove change it (served by
//! the leader store; docs/cluster.md, "Membership changes").

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Reply;

use crate::error::Error;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
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

impl ClusterService {
    /// Every member, in the order they joined. Another member's name and
    /// client URLs are what it told this store on its first raft batch
    /// (empty until it has: etcd shows an unstarted member so too).
    fn members(&self) -> Vec<Member> {
        let store = self.router.store();
        let set = store.members();
        let member = |m: &crate::proto::tesserapb::StoreMember| {
            if m.store_id == store.store_id {
                return Member {
                    id: m.member_id,
                    name: self.member.name.clone(),
                    peer_ur_ls: self.member.peer_urls.clone(),
                    client_ur_ls: self.member.client_urls.clone(),
                    is_learner: false,
                };
            }
            let info = store.transport().and_then(|t| t.info(m.store_id)).unwrap_or_default();
            Member {
                id: m.member_id,
                name: if m.name.is_empty() { info.name } else { m.name.clone() },
                peer_ur_ls: vec![m.peer_url.clone()],
                client_ur_ls: info.client_urls,
                is_learner: false,
            }
        };
        set.members.iter().map(member).collect()
    }

    /// MemberRemove of the leader store itself: the leader store moves to
    /// another member first, which then removes this one.
    async fn remove_self(&self, req: MemberRemoveRequest) -> Reply<MemberRemoveResponse> {
        let store = self.router.store();
        let Some(to) = store.active_members().into_iter().find(|s| *s != store.store_id) else {
            return Err(Error::Unhealthy.into());
        };
        store.move_leader_store(to).await?;
        let url = store.peer_url_of(to).ok_or(Error::MemberNotFound)?;
        let changed = |e: &dyn std::fmt::Display| Status::unavailable(format!("etcdserver: leader changed ({e})"));
        let endpoint = tonic::transport::Endpoint::from_shared(url).map_err(|e| changed(&e))?;
        let dialer = store.transport().ok_or_else(|| changed(&"no peer transport"))?.dialer();
        let mut client = ClusterClient::new(dialer.connect(endpoint).await.map_err(|e| changed(&e))?);
        let mut call = Request::new(req);
        call.metadata_mut().insert(super::forward::FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        client.member_remove(call).await
    }
}

fn unsupported(method: &str) -> Status {
    Error::Membership(format!("{method} is not supported; remove the member and add it again")).into()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, _r: Request<MemberListRequest>) -> Reply<MemberListResponse> {
        let header = self.router.current_header();
        Ok(Response::new(MemberListResponse { header: Some(header), members: self.members() }))
    }

    async fn member_add(&self, request: Request<MemberAddRequest>) -> Reply<MemberAddResponse> {
        let req = request.into_inner();
        let (added, _) = self.router.add_member(&req.peer_ur_ls, req.is_learner).await?;
        let member = Member {
            id: added.member_id,
            name: String::new(),
            peer_ur_ls: vec![added.peer_url],
            client_ur_ls: Vec::new(),
            is_learner: false,
        };
        let header = self.router.current_header();
        Ok(Response::new(MemberAddResponse { header: Some(header), member: Some(member), members: self.members() }))
    }

    async fn member_remove(&self, request: Request<MemberRemoveRequest>) -> Reply<MemberRemoveResponse> {
        let req = request.into_inner();
        let store = self.router.store();
        if store.clustered() && req.id == store.member_id_of(store.store_id) {
            return self.remove_self(req).await;
        }
        self.router.remove_member(req.id).await?;
        let header = self.router.current_header();
        Ok(Response::new(MemberRemoveResponse { header: Some(header), members: self.members() }))
    }

    async fn member_update(&self, _r: Request<MemberUpdateRequest>) -> Reply<MemberUpdateResponse> {
        Err(unsupported("MemberUpdate (changing a member's peer URLs)"))
    }

    async fn member_promote(&self, _r: Request<MemberPromoteRequest>) -> Reply<MemberPromoteResponse> {
        Err(Error::Membership("learner members are not supported, so there is none to promote".into()).into())
    }
}
