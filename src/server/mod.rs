//! The thin edge: tonic services for the etcd contract and an HTTP metrics
//! endpoint. Handlers validate, route, await, and map errors once
//! (`From<Error> for Status`).

pub mod admin;
pub mod auth;
pub mod cluster;
mod concurrency;
pub mod election;
mod forward;
mod front;
mod grpc_metrics;
pub mod health;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod peer;
mod probes;
pub mod validate;
pub mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;

use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::tesserapb::admin_server::AdminServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::router::Router;
use crate::tls::incoming::{self, Accept};
pub use cluster::MemberInfo;
pub use validate::Limits;

/// What the gRPC edge needs besides the router.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: Limits,
    pub member: MemberInfo,
    /// How often watchers that asked for progress notifications get one
    /// (etcd's --experimental-watch-progress-notify-interval, 10 minutes).
    pub progress_notify_interval: Duration,
}

impl ServerConfig {
    pub fn new(limits: Limits, member: MemberInfo) -> ServerConfig {
        ServerConfig { limits, member, progress_notify_interval: Duration::from_secs(600) }
    }
}

/// What a unary gRPC handler returns.
pub type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

/// The answer of a method tessera does not serve yet, naming it.
pub fn not_yet(method: &str) -> tonic::Status {
    tonic::Status::unimplemented(format!("tessera: {method} is not implemented yet"))
}

/// What tonic itself accepts. Messages between the etcd limit
/// ([`Limits::max_message_bytes`]) and this get etcd's own ResourceExhausted
/// answer from the handler; tonic refuses larger ones before decoding.
const DECODE_LIMIT_BYTES: usize = 64 << 20;

/// Serves the etcd gRPC API on `listener` (a client URL), plain or TLS as
/// `accept` says, until `shutdown` resolves.
pub async fn serve(
    router: Arc<Router>,
    cfg: ServerConfig,
    listener: TcpListener,
    accept: Accept,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_on(router, cfg, (listener, accept), shutdown, false).await
}

/// Serves the peer port: the store-to-store transport, and the etcd API for
/// calls other stores forward here (docs/cluster.md).
pub async fn serve_peer(
    router: Arc<Router>,
    cfg: ServerConfig,
    listener: TcpListener,
    accept: Accept,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_on(router, cfg, (listener, accept), shutdown, true).await
}

async fn serve_on(
    router: Arc<Router>,
    cfg: ServerConfig,
    (listener, accept): (TcpListener, Accept),
    shutdown: impl Future<Output = ()>,
    peer_port: bool,
) -> Result<(), tonic::transport::Error> {
    let limits = cfg.limits;
    // Watch streams live until their client leaves; they end on shutdown so
    // that the graceful stop does not wait for them.
    let (stop_streams, stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_streams.send(true);
    };
    let watch = WatchServer::new(watch::WatchService {
        router: router.clone(),
        progress_interval: cfg.progress_notify_interval,
        max_response_bytes: limits.max_request_bytes,
        stopping: stopping.clone(),
    })
    .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService { router: router.clone() });
    let cluster = ClusterServer::new(cluster::ClusterService { router: router.clone(), member: cfg.member });
    let kv = KvServer::new(kv::KvService { router: router.clone(), limits })
        .max_decoding_message_size(DECODE_LIMIT_BYTES.max(limits.max_message_bytes()))
        .max_encoding_message_size(usize::MAX);
    let mut grpc = tonic::service::RoutesBuilder::default();
    grpc.add_service(kv)
        .add_service(watch)
        .add_service(LeaseServer::new(lease::LeaseService { router: router.clone(), stopping: stopping.clone() }))
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(AuthServer::new(auth::AuthService { router: router.clone() }))
        .add_service(
            // A split at many keys carries them all (100,000 keys of 10 bytes: 1.2 MB).
            AdminServer::new(admin::AdminService { router: router.clone() })
                .max_decoding_message_size(DECODE_LIMIT_BYTES)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(LockServer::new(lock::LockService { router: router.clone() }))
        .add_service(ElectionServer::new(election::ElectionService {
            router: router.clone(),
            stopping: stopping.clone(),
        }))
        .add_service(health::service(router.store().clone(), stopping.clone()));
    if peer_port {
        grpc.add_service(
            crate::proto::tesserapb::peer_transport_server::PeerTransportServer::new(peer::PeerService {
                store: router.store().clone(),
            })
            .max_decoding_message_size(DECODE_LIMIT_BYTES * 4),
        );
    }
    // etcd's plain HTTP paths on the client port, beside gRPC.
    let store = router.store().clone();
    let mut routes = http::PATHS.iter().fold(grpc.routes().into_axum_router(), |routes, path| {
        let router = router.clone();
        routes.route(
            path,
            axum::routing::get(move |axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
                http::answer_path(path, query.as_deref().unwrap_or(""), &router).await
            }),
        )
    });
    if store.clustered() {
        let forwarder = forward::Forwarder::new(store.clone());
        routes = routes.layer(axum::middleware::from_fn_with_state(forwarder, forward::forward));
    }
    // Outermost: every etcd call this member receives, forwarded or not.
    let routes = routes.layer(axum::middleware::from_fn(grpc_metrics::count));
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes.into())
        // Every connection is read through the front (front.rs), after TLS.
        .serve_with_incoming_shutdown(
            incoming::incoming(listener, accept).map(|conn| conn.map(front::Front::new)),
            shutdown,
        )
        .await
}
