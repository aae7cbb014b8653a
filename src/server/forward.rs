//! Client calls on a store that is not the leader store go, as they are
//! (unary or stream), to the leader store's peer port, where the same etcd
//! services are served (docs/cluster.md, "Requests on any store").

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dashmap::DashMap;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;
use tower_service::Service as _;

use crate::raftstore::Store;

/// Marks a call a store forwarded, so that it is not forwarded again.
pub const FORWARDED: &str = "tessera-forwarded";

/// How long a call waits for a leader store to be known (an election).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Calls every member answers itself: its own status, data, membership view
/// and health, and the peer transport.
const LOCAL: &[&str] = &[
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Maintenance/Defragment",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.Cluster/MemberList",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/tesserapb.PeerTransport/Raft",
    "/tesserapb.PeerTransport/Snapshot",
    "/tesserapb.PeerTransport/Join",
    "/tesserapb.PeerTransport/Region",
    "/tesserapb.PeerTransport/Allocate",
    "/health",
    "/version",
    "/metrics",
];

pub struct Forwarder {
    store: Arc<Store>,
    channels: DashMap<u64, Channel>,
}

enum Target {
    Here,
    Store(Channel),
}

impl Forwarder {
    pub fn new(store: Arc<Store>) -> Arc<Forwarder> {
        Arc::new(Forwarder { store, channels: DashMap::new() })
    }

    /// Where a call goes: here once this store serves; else the leader
    /// store, unless the call was forwarded already (then it waits here).
    async fn target(&self, forwarded: bool) -> Result<Target, Status> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if self.store.is_serving() {
                return Ok(Target::Here);
            }
            let leader = self.store.leader_store();
            if !forwarded && leader != 0 && leader != self.store.store_id {
                if let Some(ch) = self.channel(leader) {
                    return Ok(Target::Store(ch));
                }
            }
            if Instant::now() >= deadline {
                return Err(Status::unavailable(if leader == 0 {
                    "etcdserver: no leader"
                } else {
                    "etcdserver: leader changed"
                }));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn channel(&self, store: u64) -> Option<Channel> {
        if let Some(ch) = self.channels.get(&store) {
            return Some(ch.clone());
        }
        let url = self.store.peer_url_of(store)?;
        let endpoint = Endpoint::from_shared(url).ok()?;
        let ch = endpoint.connect_timeout(Duration::from_secs(1)).tcp_nodelay(true).connect_lazy();
        self.channels.insert(store, ch.clone());
        Some(ch)
    }
}

/// The axum middleware in front of every client route.
pub async fn forward(State(f): State<Arc<Forwarder>>, req: Request, next: Next) -> Response {
    if f.store.is_serving() || LOCAL.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let forwarded = req.headers().contains_key(FORWARDED);
    let mut channel = match f.target(forwarded).await {
        Ok(Target::Here) => return next.run(req).await,
        Ok(Target::Store(ch)) => ch,
        Err(status) => return status.into_http(),
    };
    let (mut parts, body) = req.into_parts();
    parts.headers.insert(FORWARDED, axum::http::HeaderValue::from_static("1"));
    let req = axum::http::Request::from_parts(parts, tonic::body::Body::new(body));
    if std::future::poll_fn(|cx| channel.poll_ready(cx)).await.is_err() {
        return Status::unavailable("etcdserver: leader changed").into_http();
    }
    match channel.call(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => {
            tracing::debug!("forwarding to the leader store: {e}");
            Status::unavailable("etcdserver: leader changed").into_http()
        }
    }
}
