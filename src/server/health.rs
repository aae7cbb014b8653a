//! grpc.health.v1: SERVING while every region has its leader here (the
//! same test as `/health`), NOT_SERVING otherwise. Only the server as a
//! whole ("") and the etcd services are known names.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Reply;
use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::health_server::Health;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};
use crate::raftstore::Store;

/// Service names a health check may ask about.
const KNOWN: [&str; 9] = [
    "",
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "v3lockpb.Lock",
    "v3electionpb.Election",
];

/// How often Watch re-checks the status.
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub struct HealthService {
    pub store: Arc<Store>,
    pub stopping: watch::Receiver<bool>,
}

fn status_of(store: &Store, service: &str) -> ServingStatus {
    if !KNOWN.contains(&service) {
        ServingStatus::ServiceUnknown
    } else if store.healthy() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Reply<HealthCheckResponse> {
        let service = request.into_inner().service;
        match status_of(&self.store, &service) {
            ServingStatus::ServiceUnknown => Err(Status::not_found(format!("unknown service {service:?}"))),
            status => Ok(Response::new(HealthCheckResponse { status: status as i32 })),
        }
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    /// Sends the status at once and again whenever it changes.
    async fn watch(&self, request: Request<HealthCheckRequest>) -> Reply<Self::WatchStream> {
        let service = request.into_inner().service;
        let (tx, rx) = mpsc::channel(4);
        let store = self.store.clone();
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let now = status_of(&store, &service);
                if last != Some(now) {
                    last = Some(now);
                    if tx.send(Ok(HealthCheckResponse { status: now as i32 })).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                    _ = tx.closed() => return,
                    _ = async { drop(stopping.wait_for(|s| *s).await) } => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
