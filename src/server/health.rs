//! grpc.health.v1, served by `tonic-health`: SERVING while every region
//! has its leader here (the same test as `/health`), NOT_SERVING
//! otherwise. Only the server as a whole ("") and the etcd services are
//! known names. The status is set by a task every second and again at
//! each Check (so a Check answers the status of now); Watch streams send
//! it at once and whenever it changes. What tonic-health does differently
//! from grpc-go's health server, this wrapper does as grpc-go: a Watch of
//! an unknown name gets SERVICE_UNKNOWN on its stream instead of an error.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::Reply;
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

/// How often the status is set from the store.
const UPDATE_EVERY: Duration = Duration::from_secs(1);

pub struct HealthService {
    inner: tonic_health::server::HealthService,
    reporter: HealthReporter,
    store: Arc<Store>,
    /// Watch streams end when this turns true (a graceful stop does not
    /// wait for them).
    stopping: watch::Receiver<bool>,
}

/// The service, and its task setting the status until `stopping`.
pub fn service(store: Arc<Store>, mut stopping: watch::Receiver<bool>) -> HealthServer<HealthService> {
    let reporter = HealthReporter::new();
    let inner = tonic_health::server::HealthService::from_health_reporter(reporter.clone());
    let (task_store, task_reporter) = (store.clone(), reporter.clone());
    let task_stopping = stopping.clone();
    tokio::spawn(async move {
        loop {
            report(&task_store, &task_reporter).await;
            tokio::select! {
                _ = tokio::time::sleep(UPDATE_EVERY) => {}
                _ = async { drop(stopping.wait_for(|s| *s).await) } => return,
            }
        }
    });
    HealthServer::new(HealthService { inner, reporter, store, stopping: task_stopping })
}

/// Sets every known name's status from the store (watchers hear of a change only).
async fn report(store: &Store, reporter: &HealthReporter) {
    let status = if store.healthy() { ServingStatus::Serving } else { ServingStatus::NotServing };
    for name in KNOWN {
        reporter.set_service_status(name, status).await;
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(&self, request: Request<HealthCheckRequest>) -> Reply<HealthCheckResponse> {
        report(&self.store, &self.reporter).await;
        self.inner.check(request).await
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(&self, request: Request<HealthCheckRequest>) -> Reply<Self::WatchStream> {
        let statuses: Self::WatchStream = if KNOWN.contains(&request.get_ref().service.as_str()) {
            Box::pin(self.inner.watch(request).await?.into_inner())
        } else {
            // Sent once; the stream then stays open, as grpc-go's does.
            let unknown = HealthCheckResponse { status: WireStatus::ServiceUnknown as i32 };
            Box::pin(tokio_stream::once(Ok(unknown)).chain(tokio_stream::pending()))
        };
        let stop = WatchStream::new(self.stopping.clone()).filter(|stopping| *stopping).map(|_| None);
        Ok(Response::new(Box::pin(statuses.map(Some).merge(stop).map_while(|item| item))))
    }
}
