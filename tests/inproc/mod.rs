//! An in-process tessera (store + router + gRPC server) on a port-0
//! loopback listener, for integration tests through real etcd clients.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tessera::raftstore::{Store, StoreConfig};
use tessera::router::Router;
use tessera::server::{self, Limits};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Progress notifications come this often in tests (etcd: 10 minutes).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(300);

/// How long any in-process test may run.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Waits (at most 20 s, else the test fails) until `done`.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited 20 s for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a test body, failing it if it takes longer than [`TEST_TIMEOUT`].
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f).await.expect("test timed out");
}

/// The gRPC code and message of an etcd-client error that must be a status.
pub fn code_of(e: etcd_client::Error) -> (tonic::Code, String) {
    match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

pub const LIMITS: Limits = Limits { max_request_bytes: 1536 * 1024, max_txn_ops: 128 };

pub struct InProc {
    pub endpoint: String,
    pub store: Arc<Store>,
    pub router: Arc<Router>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl InProc {
    /// Starts a store with regions cut at `split_keys`.
    pub async fn start(split_keys: &[&str]) -> InProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut node = InProc::start_in(dir.path(), split_keys, |_| {}).await;
        node._dir = Some(dir);
        node
    }

    /// Starts on `dir` (which the caller owns, e.g. to restart on it), with
    /// `tweak` applied to the store's config.
    pub async fn start_in(dir: &std::path::Path, split_keys: &[&str], tweak: impl FnOnce(&mut StoreConfig)) -> InProc {
        let mut cfg = StoreConfig::new(dir);
        cfg.initial_split_keys = split_keys.iter().map(|k| k.as_bytes().to_vec()).collect();
        cfg.pollers = 2;
        tweak(&mut cfg);
        let store = tokio::task::spawn_blocking(move || {
            let store = Store::open(cfg).expect("open store");
            store.wait_ready(Duration::from_secs(30)).expect("regions elect leaders");
            store
        })
        .await
        .expect("open task");
        let router = Arc::new(Router::new(store.clone()).expect("router"));
        router.recover().await.expect("txn recovery");
        router.start_lease_expiry();
        let server_router = router.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let member = server::MemberInfo { name: "inproc".into(), client_urls: Vec::new(), peer_urls: Vec::new() };
            let cfg = server::ServerConfig {
                progress_notify_interval: PROGRESS_INTERVAL,
                ..server::ServerConfig::new(LIMITS, member)
            };
            server::serve(router, cfg, listener, tessera::tls::incoming::Accept::plain(), async {
                let _ = stopped.await;
            })
            .await
            .expect("server");
        });
        InProc { endpoint, store, router: server_router, stop: Some(stop), server: Some(server), _dir: None }
    }

    pub async fn client(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint.as_str()], None).await.expect("connect")
    }

    /// A raw tonic client of our own generated types (for requests the
    /// etcd-client crate cannot express, e.g. an unknown sort enum).
    pub async fn raw_kv(&self) -> tessera::proto::etcdserverpb::kv_client::KvClient<tonic::transport::Channel> {
        tessera::proto::etcdserverpb::kv_client::KvClient::connect(self.endpoint.clone()).await.expect("connect")
    }

    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.store.shutdown();
    }
}

pub mod cluster;
pub mod watched_writes;
