//! Client calls on a store that is not the leader store go, as they are
//! (unary or stream), to the leader store's peer port, where the same etcd
//! services are served (docs/cluster.md, "Requests on any store").
//!
//! A forwarded stream (a watch, lease keep-alives, an election observer)
//! ends with etcd's "leader changed" (UNAVAILABLE) once this store sees
//! another leader store, or loses the link to it: clients resume on that
//! error (a watch from its last revision + 1), whereas a stream to a
//! deposed leader store that is paused or cut off would stay open and
//! silent (docs/cluster.md, "Watches when the leader store changes").

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use dashmap::DashMap;
use http_body::Frame;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;
use tower_service::Service as _;

use crate::error::NEEDS_LEADER_STORE;
use crate::raftstore::Store;

/// Marks a call a store forwarded, so that it is not forwarded again.
pub const FORWARDED: &str = "tessera-forwarded";

/// How long a call waits for a leader store to be known (an election).
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// How often a forwarded stream looks whether its store is still the
/// leader store.
const LEADER_CHECK: Duration = Duration::from_millis(20);

/// Streaming calls: their answers end when the leader store changes.
const STREAMS: &[&str] =
    &["/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive", "/v3electionpb.Election/Observe"];

/// Calls every store routes itself, straight to their regions' leaders
/// (docs/serve-anywhere.md, "Writes through any store" and "Reads at
/// region leaders"), passing on to the leader store what needs it.
const ROUTED_HERE: &[&str] =
    &["/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.KV/DeleteRange", "/etcdserverpb.KV/Txn"];

/// The largest call kept to be passed on: above any request the KV
/// service takes (etcd's --max-request-bytes is at most a few MiB).
const MAX_CALL_BYTES: usize = 64 << 20;

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
    "/tesserapb.PeerTransport/ReadPoint",
    "/health",
    "/livez",
    "/readyz",
    "/version",
    "/metrics",
];

pub struct Forwarder {
    store: Arc<Store>,
    channels: DashMap<u64, Channel>,
}

enum Target {
    Here,
    /// The leader store (its store id) through this channel.
    Store(Channel, u64),
}

impl Forwarder {
    pub fn new(store: Arc<Store>) -> Arc<Forwarder> {
        Arc::new(Forwarder { store, channels: DashMap::new() })
    }

    /// Where a call goes: here once this store serves; else the leader
    /// store, unless the call was forwarded already (then it waits here
    /// while this store may become the leader store, and is refused once
    /// another is: the forwarding store learns it soon, and a retry goes
    /// there).
    async fn target(&self, forwarded: bool) -> Result<Target, Status> {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if self.store.is_serving() {
                return Ok(Target::Here);
            }
            let leader = self.store.leader_store();
            let elsewhere = leader != 0 && leader != self.store.store_id;
            if elsewhere && forwarded {
                return Err(leader_changed());
            }
            if elsewhere {
                if let Some(ch) = self.channel(leader) {
                    return Ok(Target::Store(ch, leader));
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
        let endpoint = Endpoint::from_shared(url).ok()?.connect_timeout(Duration::from_secs(1));
        let ch = self.store.transport()?.dialer().connect_lazy(endpoint);
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
    if !forwarded && ROUTED_HERE.contains(&req.uri().path()) {
        return routed_here_first(&f, req, next).await;
    }
    pass_on(&f, req, forwarded, next).await
}

/// A call is routed by this store's own router; if that answers that it
/// needs the leader store (before a write proposed anything), the call's
/// kept bytes go there instead.
async fn routed_here_first(f: &Forwarder, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_CALL_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Status::resource_exhausted(format!("grpc: received message larger than max ({e})")).into_http()
        }
    };
    let again = head_of(&parts);
    let resp = next.clone().run(Request::from_parts(parts, Body::from(bytes.clone()))).await;
    if !resp.headers().contains_key(NEEDS_LEADER_STORE) {
        return resp;
    }
    pass_on(f, Request::from_parts(again, Body::from(bytes)), false, next).await
}

/// A copy of a call's head (its extensions left out).
fn head_of(parts: &axum::http::request::Parts) -> axum::http::request::Parts {
    let mut head = axum::http::Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    head.into_parts().0
}

/// Sends a call to the leader store and passes its answer back (or serves
/// it here, `next`, once this store is the leader store).
async fn pass_on(f: &Forwarder, req: Request, forwarded: bool, next: Next) -> Response {
    let (mut channel, target) = match f.target(forwarded).await {
        Ok(Target::Here) => return next.run(req).await,
        Ok(Target::Store(ch, store)) => (ch, store),
        Err(status) => return status.into_http(),
    };
    crate::metrics::METRICS.forwarded_calls.inc();
    let stream = STREAMS.contains(&req.uri().path());
    let (mut parts, body) = req.into_parts();
    parts.headers.insert(FORWARDED, axum::http::HeaderValue::from_static("1"));
    let req = axum::http::Request::from_parts(parts, tonic::body::Body::new(body));
    if std::future::poll_fn(|cx| channel.poll_ready(cx)).await.is_err() {
        return leader_changed().into_http();
    }
    match channel.call(req).await {
        // A trailers-only answer (an error) has no stream to guard.
        Ok(resp) if stream && !resp.headers().contains_key("grpc-status") => {
            resp.map(|inner| Body::new(Guarded::new(inner, f.store.clone(), target)))
        }
        Ok(resp) => resp.map(Body::new),
        Err(e) => {
            tracing::debug!("forwarding to the leader store: {e}");
            leader_changed().into_http()
        }
    }
}

/// etcd's answer when the leader moved under a request (clients retry it;
/// a watch resumes). Not "no leader": clientv3 gives a watch up on that.
fn leader_changed() -> Status {
    Status::unavailable("etcdserver: leader changed")
}

/// The body of a forwarded stream's answer, passed on as it comes until
/// this store sees a leader store other than `target`, or the link to it
/// breaks: then it ends with [`leader_changed`] trailers.
struct Guarded {
    inner: tonic::body::Body,
    store: Arc<Store>,
    target: u64,
    check: tokio::time::Interval,
    ended: bool,
}

impl Guarded {
    fn new(inner: tonic::body::Body, store: Arc<Store>, target: u64) -> Guarded {
        let mut check = tokio::time::interval(LEADER_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Guarded { inner, store, target, check, ended: false }
    }

    fn moved(&self) -> bool {
        let leader = self.store.leader_store();
        (leader != 0 && leader != self.target) || self.store.is_serving()
    }

    fn end(&mut self) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.ended = true;
        let mut trailers = axum::http::HeaderMap::new();
        match leader_changed().add_header(&mut trailers) {
            Ok(()) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Err(status) => Poll::Ready(Some(Err(status))),
        }
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.ended = frame.is_trailers();
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!("a forwarded stream broke: {e}");
                return this.end();
            }
            Poll::Ready(None) => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        while this.check.poll_tick(cx).is_ready() {
            if this.moved() {
                return this.end();
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }
}
