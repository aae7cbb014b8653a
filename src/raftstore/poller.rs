//! One poll round of the raftstore (see the module doc for the threads).

use std::sync::Arc;
use std::time::Instant;

use rocksdb::WriteBatch;

use super::batch::PollHandler;
use super::peer::{ApplyContext, PeerFsm};
use super::transport::Transport;
use crate::engine::Engine;
use crate::metrics::etcd::ETCD;
use crate::metrics::METRICS;
use crate::region::mvcc::MvccReader;
use crate::sequencer::Sequencer;

/// Messages one peer may handle per round, so one busy region cannot starve
/// the others of the batch.
const MESSAGES_PER_ROUND: usize = 4096;

pub struct RaftPoller {
    pub engine: Engine,
    pub sequencer: Arc<Sequencer>,
    pub transport: Option<Arc<Transport>>,
}

/// Persistence failures leave raft's state unknown: stop the process rather
/// than answer from it (a restart recovers from the synced log).
fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    tracing::error!("fatal storage error while {what}: {e}");
    eprintln!("tessera: fatal storage error while {what}: {e}");
    std::process::abort();
}

impl PollHandler<PeerFsm> for RaftPoller {
    fn handle(&mut self, fsm: &mut PeerFsm) {
        fsm.handle(MESSAGES_PER_ROUND);
    }

    fn end(&mut self, batch: &mut [Box<PeerFsm>]) {
        METRICS.poll_rounds.inc();
        let mut wb = WriteBatch::default();
        let mut entries = 0;
        for fsm in batch.iter_mut() {
            match fsm.collect_persist(&mut wb) {
                Ok(n) => entries += n,
                Err(e) => fatal("collecting raft state", e),
            }
        }
        if !wb.is_empty() {
            let started = Instant::now();
            if let Err(e) = self.engine.write(wb, true) {
                fatal("persisting raft state", e);
            }
            METRICS.fsync_seconds.observe(started.elapsed());
            ETCD.wal_fsync.observe(started.elapsed());
            METRICS.fsyncs.inc();
            METRICS.entries_persisted.add(entries as u64);
        }
        let mut ctx = ApplyContext::default();
        for fsm in batch.iter_mut() {
            if let Err(e) = fsm.on_persisted(&mut ctx) {
                fatal("applying", e);
            }
        }
        if !ctx.wb.is_empty() {
            crate::failpoint::stall("apply-before-write", std::time::Duration::from_millis(20));
            let started = Instant::now();
            if let Err(e) = self.engine.write(std::mem::take(&mut ctx.wb), false) {
                fatal("writing applied data", e);
            }
            ETCD.backend_commit.observe(started.elapsed());
        }
        for (region, revision) in ctx.compactions.drain(..) {
            let mut wb = WriteBatch::default();
            let reader = MvccReader::new(&self.engine.db, self.engine.mvcc(), None);
            let end = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
            match reader.compact(&region.start_key, end, revision, &mut wb) {
                Ok(removed) => {
                    if let Err(e) = self.engine.write(wb, false) {
                        fatal("compacting", e);
                    }
                    tracing::info!(region = region.id, revision, removed, "compacted");
                }
                Err(e) => fatal("compacting", e),
            }
        }
        for r in ctx.revisions.drain(..) {
            self.sequencer.finish(r);
        }
        for (region, term) in ctx.terms_started.drain(..) {
            self.sequencer.term_started(region, term);
        }
        for (region, revision) in ctx.restored.drain(..) {
            self.sequencer.restored(region, revision);
        }
        for ack in ctx.acks.drain(..) {
            ack();
        }
        if let Some(t) = &self.transport {
            t.send_round(std::mem::take(&mut ctx.messages));
        }
    }
}
