//! A store's read points (docs/serve-anywhere.md, "Reads at region
//! leaders"): the revision a linearizable read is served at, at or above
//! every write acknowledged before the read started, from the leader
//! store's sequencer. The leader store takes its own; another store asks
//! it, with at most one request in flight: the reads that start while one
//! is in flight wait for the next, which serves them all (a read must not
//! take a point asked for before it started).

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::proto::tesserapb::ReadPointRequest;
use crate::raftstore::Store;

/// A read point: the revision, and the compacted revision with it.
pub type ReadPoint = (u64, i64);

pub struct ReadPoints {
    store: Arc<Store>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<oneshot::Sender<Result<ReadPoint>>>,
    /// A request is in flight (its task sends the next one).
    sending: bool,
}

impl ReadPoints {
    pub fn new(store: Arc<Store>) -> Arc<ReadPoints> {
        Arc::new(ReadPoints { store, queue: Mutex::new(Queue::default()) })
    }

    /// The read point of a read starting now.
    pub async fn get(self: &Arc<Self>) -> Result<ReadPoint> {
        if self.store.is_serving() {
            return self.store.read_point().await;
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock();
            q.waiting.push(tx);
            !std::mem::replace(&mut q.sending, true)
        };
        if start {
            tokio::spawn(self.clone().send_all());
        }
        rx.await.map_err(|_| Error::Stopped)?
    }

    /// Sends one request for everything queued, until nothing is.
    async fn send_all(self: Arc<Self>) {
        loop {
            let waiting = {
                let mut q = self.queue.lock();
                if q.waiting.is_empty() {
                    q.sending = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let result = self.ask(waiting.len()).await;
            for w in waiting {
                let _ = w.send(result.clone());
            }
        }
    }

    /// One request to the leader store, for `reads` reads.
    async fn ask(&self, reads: usize) -> Result<ReadPoint> {
        let store = &self.store;
        let leader = store.leader_store();
        let no_leader_store = Error::NotLeader { region: store.meta_region };
        let Some(transport) = store.transport().filter(|_| leader != 0 && leader != store.store_id) else {
            // No leader store known yet, or this one before it serves: the
            // router tries again.
            return Err(no_leader_store);
        };
        METRICS.read_point_requests.inc();
        let req = ReadPointRequest { from_store: store.store_id, reads: reads as u32 };
        let resp = transport.read_point(leader, req).await.map_err(|_| no_leader_store)?;
        Ok((resp.revision, resp.compacted))
    }
}
