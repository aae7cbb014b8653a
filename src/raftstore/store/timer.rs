//! The store timer: every tick interval, a tick to each peer that wants
//! one. Peers say so through [`StoreContext::awake_changed`] only when that
//! changes, so a tick costs the awake peers, not every peer: 100,000 idle
//! regions (single-voter leaders) cost nothing (docs/design.md, "Idle
//! regions").

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Store;
use crate::raftstore::msg::PeerMsg;
use crate::raftstore::peer::StoreContext;

pub(super) fn start(store: &Arc<Store>, interval: Duration) -> JoinHandle<()> {
    let store = Arc::downgrade(store);
    let mut awake = Vec::new();
    std::thread::Builder::new()
        .name("store-timer".into())
        .spawn(move || loop {
            std::thread::sleep(interval);
            let Some(store) = store.upgrade() else { return };
            if store.stop.load(Ordering::Acquire) {
                return;
            }
            store.context.ticks.fetch_add(1, Ordering::Relaxed);
            tick(&store.context, &mut awake);
        })
        .expect("spawn store timer")
}

/// Sends a tick to every awake peer (`awake`: a buffer for their ids).
fn tick(context: &StoreContext, awake: &mut Vec<u64>) {
    awake.clear();
    awake.extend(context.awake.lock().iter().copied());
    for id in awake.iter() {
        match context.peers.get(id) {
            Some(p) if p.shared.awake.load(Ordering::Relaxed) => {
                let _ = p.mailbox.send(PeerMsg::Tick);
            }
            Some(_) => {}
            // Merged away.
            None => {
                context.awake.lock().remove(id);
            }
        }
    }
}

impl StoreContext {
    /// Peer `region` now wants ticks (`awake`), or no longer does.
    pub fn awake_changed(&self, region: u64, awake: bool) {
        let mut set = self.awake.lock();
        if awake {
            set.insert(region);
        } else {
            set.remove(&region);
        }
    }
}
