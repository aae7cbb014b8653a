//! N stores of one cluster in this process, each with its own RocksDB, its
//! peer port and client port on loopback (real gRPC between them), and a
//! transport filter per store for partitions (docs/cluster.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera::proto::tesserapb::StoreMember;
use tessera::raftstore::{Store, StoreConfig};
use tessera::router::Router;
use tessera::server::{self, MemberInfo, ServerConfig};
use tessera::tls::incoming::Accept;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct Member {
    pub store: Arc<Store>,
    pub router: Arc<Router>,
    pub endpoint: String,
}

pub struct InProcCluster {
    pub members: Vec<Member>,
    stop: watch::Sender<bool>,
    _dirs: Vec<tempfile::TempDir>,
}

impl InProcCluster {
    /// Starts `n` stores with regions cut at `split_keys`.
    pub async fn start(n: usize, split_keys: &[&str]) -> InProcCluster {
        let mut peer_listeners = Vec::new();
        let mut client_listeners = Vec::new();
        for _ in 0..n {
            peer_listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
            client_listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
        }
        let members: Vec<StoreMember> = peer_listeners
            .iter()
            .enumerate()
            .map(|(i, l)| StoreMember {
                store_id: i as u64 + 1,
                name: format!("n{}", i + 1),
                peer_url: format!("http://{}", l.local_addr().unwrap()),
                member_id: 0,
            })
            .collect();
        let (stop, stopping) = watch::channel(false);
        let mut dirs = Vec::new();
        let mut started = Vec::new();
        for (i, (peer, client)) in peer_listeners.into_iter().zip(client_listeners).enumerate() {
            let dir = tempfile::tempdir().expect("temp dir");
            let endpoint = format!("http://{}", client.local_addr().unwrap());
            let mut cfg = StoreConfig::new(dir.path());
            cfg.initial_split_keys = split_keys.iter().map(|k| k.as_bytes().to_vec()).collect();
            cfg.pollers = 1;
            cfg.store_id = i as u64 + 1;
            cfg.members = members.clone();
            cfg.name = members[i].name.clone();
            cfg.client_urls = vec![endpoint.clone()];
            let store = tokio::task::spawn_blocking(move || Store::open(cfg).expect("open store")).await.unwrap();
            let router = Arc::new(Router::new(store.clone()).unwrap());
            router.start_leadership();
            router.start_lease_expiry();
            let info = MemberInfo {
                name: members[i].name.clone(),
                client_urls: vec![endpoint.clone()],
                peer_urls: vec![members[i].peer_url.clone()],
            };
            let cfg = ServerConfig::new(super::LIMITS, info);
            for (listener, peer_port) in [(peer, true), (client, false)] {
                let (router, cfg, mut stopping) = (router.clone(), cfg.clone(), stopping.clone());
                tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stopping.wait_for(|s| *s).await;
                    };
                    let served = if peer_port {
                        server::serve_peer(router, cfg, listener, Accept::plain(), stopped).await
                    } else {
                        server::serve(router, cfg, listener, Accept::plain(), stopped).await
                    };
                    served.expect("server");
                });
            }
            started.push(Member { store, router, endpoint });
            dirs.push(dir);
        }
        InProcCluster { members: started, stop, _dirs: dirs }
    }

    /// Waits (bounded) for a leader store that serves; its index.
    pub async fn leader(&self) -> usize {
        self.leader_other_than(usize::MAX).await
    }

    /// Waits (bounded) for a member other than `old` to serve as the leader
    /// store; its index.
    pub async fn leader_other_than(&self, old: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = (0..self.members.len()).find(|&i| i != old && self.members[i].store.is_serving()) {
                return i;
            }
            assert!(Instant::now() < deadline, "no leader store within 30 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Drops every raft message between member `i` and the others.
    pub fn isolate(&self, i: usize) {
        let cut = self.members[i].store.store_id;
        for m in &self.members {
            let me = m.store.store_id;
            let filter: tessera::raftstore::transport::Filter =
                Arc::new(move |to, _region, _msg| me != cut && to != cut);
            m.store.transport().expect("a cluster store has a transport").set_filter(Some(filter));
        }
    }

    /// Waits (bounded) until every store has `regions` regions and the same
    /// data (HashKV, answered by each member itself).
    pub async fn wait_agree(&self, regions: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let l = self.leader().await;
        let mut c = etcd_client::Client::connect([self.members[l].endpoint.as_str()], None).await.unwrap();
        let revision = c.put("sync", "", None).await.unwrap().header().unwrap().revision();
        loop {
            let counts: Vec<usize> = self.members.iter().map(|m| m.store.regions().len()).collect();
            let mut hashes = Vec::new();
            for m in &self.members {
                let mut c = etcd_client::Client::connect([m.endpoint.as_str()], None).await.unwrap();
                hashes.push(c.hash_kv(revision).await.map(|h| h.hash()).ok());
            }
            if counts.iter().all(|n| *n == regions) && hashes.iter().all(|h| h.is_some() && *h == hashes[0]) {
                return;
            }
            assert!(Instant::now() < deadline, "stores disagree: regions {counts:?}, hashes at {revision}: {hashes:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes every filter.
    pub fn heal(&self) {
        for m in &self.members {
            m.store.transport().expect("transport").set_filter(None);
        }
    }
}

impl Drop for InProcCluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for m in &self.members {
            m.store.shutdown();
        }
    }
}
