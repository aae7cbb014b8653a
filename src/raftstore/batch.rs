//! A small generic batch system: FSMs with mailboxes, driven by a fixed pool
//! of poller threads. No Raft inside.
//!
//! A mailbox's queue is an [`Inbox`]: a deque whose buffer is freed once
//! drained, so an idle FSM's queue holds no memory (a crossbeam list
//! channel keeps a block of 31 message slots per channel: with 100,000
//! regions that was 1.1 GB; docs/bench/regions-bulk-2026-12-03.md).
//!
//! Each FSM lives in a slot next to its mailbox. Sending a message to an idle
//! FSM moves it (once: an atomic idle/notified flag) onto the scheduler
//! queue; a poller takes a batch of scheduled FSMs, lets the
//! [`PollHandler`] handle each one's messages, then calls
//! [`PollHandler::end`] once for the whole batch (where the raftstore does
//! its one fsync), and puts the FSMs back. An FSM that received messages
//! meanwhile is scheduled again at once. An FSM nobody writes to costs
//! nothing.

use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

const IDLE: u8 = 0;
const NOTIFIED: u8 = 1;

/// A state machine driven by the batch system.
pub trait Fsm: Send + 'static {
    type Message: Send + 'static;
}

/// An FSM's message queue, shared by its mailboxes (which push) and the
/// FSM (which pops).
pub struct Inbox<M> {
    queue: Mutex<VecDeque<M>>,
}

impl<M> Inbox<M> {
    pub fn new() -> Arc<Inbox<M>> {
        Arc::new(Inbox { queue: Mutex::new(VecDeque::new()) })
    }

    fn push(&self, msg: M) {
        let mut queue = self.queue.lock();
        if queue.capacity() == 0 {
            // Most wake-ups bring one message: room for one, not four.
            queue.reserve_exact(1);
        }
        queue.push_back(msg);
    }

    /// The oldest message; `None` once drained, and then the queue's
    /// buffer is freed (an idle FSM holds none).
    pub fn pop(&self) -> Option<M> {
        let mut queue = self.queue.lock();
        let msg = queue.pop_front();
        if msg.is_none() && queue.capacity() > 0 {
            *queue = VecDeque::new();
        }
        msg
    }

    pub fn is_empty(&self) -> bool {
        self.queue.lock().is_empty()
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }
}

struct Slot<F: Fsm> {
    status: AtomicU8,
    fsm: Mutex<Option<Box<F>>>,
    /// The FSM's inbox, to see whether messages arrived while it was being
    /// polled.
    inbox: Arc<Inbox<F::Message>>,
}

struct Scheduled<F: Fsm> {
    slot: Arc<Slot<F>>,
    fsm: Box<F>,
}

/// The sending side of one FSM's mailbox. Cheap to clone.
pub struct Mailbox<F: Fsm> {
    slot: Arc<Slot<F>>,
    scheduler: Sender<Scheduled<F>>,
}

impl<F: Fsm> Clone for Mailbox<F> {
    fn clone(&self) -> Self {
        Mailbox { slot: self.slot.clone(), scheduler: self.scheduler.clone() }
    }
}

/// The batch system has stopped; the message was not delivered.
#[derive(Debug)]
pub struct Stopped;

impl<F: Fsm> Mailbox<F> {
    /// Delivers `msg` and schedules the FSM if it was idle.
    pub fn send(&self, msg: F::Message) -> Result<(), Stopped> {
        self.slot.inbox.push(msg);
        // Pairs with the fence in `poll_loop`: either the poller sees this
        // message after marking the FSM idle, or this sees it idle.
        fence(Ordering::SeqCst);
        notify(&self.slot, &self.scheduler);
        Ok(())
    }
}

fn notify<F: Fsm>(slot: &Arc<Slot<F>>, scheduler: &Sender<Scheduled<F>>) {
    if slot.status.compare_exchange(IDLE, NOTIFIED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        // The FSM is put back before the flag turns IDLE, so it is here.
        let fsm = slot.fsm.lock().take().expect("an idle FSM is in its slot");
        let _ = scheduler.send(Scheduled { slot: slot.clone(), fsm });
    }
}

/// What a poller thread does with each batch. One handler per poller.
pub trait PollHandler<F: Fsm>: Send + 'static {
    /// Handles the pending messages of one FSM of the batch.
    fn handle(&mut self, fsm: &mut F);
    /// Called once per round after every FSM of the batch was handled.
    fn end(&mut self, batch: &mut [Box<F>]);
}

/// Pool sizes and batch limits.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Poller threads.
    pub pollers: usize,
    /// The most FSMs handled in one round.
    pub max_batch: usize,
}

/// Adds FSMs to a running [`BatchSystem`]. Cheap to clone.
pub struct Registrar<F: Fsm> {
    scheduler: Sender<Scheduled<F>>,
}

impl<F: Fsm> Clone for Registrar<F> {
    fn clone(&self) -> Self {
        Registrar { scheduler: self.scheduler.clone() }
    }
}

impl<F: Fsm> Registrar<F> {
    /// Adds an FSM whose messages arrive in `inbox`.
    pub fn register(&self, fsm: Box<F>, inbox: Arc<Inbox<F::Message>>) -> Mailbox<F> {
        let slot = Arc::new(Slot { status: AtomicU8::new(IDLE), fsm: Mutex::new(Some(fsm)), inbox });
        let mailbox = Mailbox { slot, scheduler: self.scheduler.clone() };
        if !mailbox.slot.inbox.is_empty() {
            notify(&mailbox.slot, &mailbox.scheduler);
        }
        mailbox
    }
}

pub struct BatchSystem<F: Fsm> {
    scheduler: Sender<Scheduled<F>>,
    stop: Arc<AtomicBool>,
    pollers: Vec<JoinHandle<()>>,
}

impl<F: Fsm> BatchSystem<F> {
    /// Starts `cfg.pollers` threads, each with a handler from `new_handler`.
    pub fn start<H: PollHandler<F>>(name: &str, cfg: &BatchConfig, mut new_handler: impl FnMut() -> H) -> Self {
        let (scheduler, queue) = channel::unbounded::<Scheduled<F>>();
        let stop = Arc::new(AtomicBool::new(false));
        let pollers = (0..cfg.pollers.max(1))
            .map(|i| {
                let queue = queue.clone();
                let scheduler = scheduler.clone();
                let stop = stop.clone();
                let mut handler = new_handler();
                let max_batch = cfg.max_batch.max(1);
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        let run = std::panic::AssertUnwindSafe(|| {
                            poll_loop(&queue, &scheduler, &stop, &mut handler, max_batch)
                        });
                        if std::panic::catch_unwind(run).is_err() {
                            // The FSMs of the round are lost with the thread:
                            // serving on would hang their regions forever.
                            eprintln!("tessera: a poller thread panicked; aborting");
                            std::process::abort();
                        }
                    })
                    .expect("spawn poller")
            })
            .collect();
        BatchSystem { scheduler, stop, pollers }
    }

    /// What adds FSMs to this system, from any thread (a poller too).
    pub fn registrar(&self) -> Registrar<F> {
        Registrar { scheduler: self.scheduler.clone() }
    }

    /// Stops the pollers after their current round and joins them.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        for p in self.pollers.drain(..) {
            let _ = p.join();
        }
    }
}

impl<F: Fsm> Drop for BatchSystem<F> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn poll_loop<F: Fsm, H: PollHandler<F>>(
    queue: &Receiver<Scheduled<F>>,
    scheduler: &Sender<Scheduled<F>>,
    stop: &AtomicBool,
    handler: &mut H,
    max_batch: usize,
) {
    let mut slots = Vec::with_capacity(max_batch);
    let mut fsms = Vec::with_capacity(max_batch);
    while !stop.load(Ordering::Acquire) {
        match queue.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => {
                slots.push(s.slot);
                fsms.push(s.fsm);
            }
            Err(_) => continue,
        }
        while fsms.len() < max_batch {
            match queue.try_recv() {
                Ok(s) => {
                    slots.push(s.slot);
                    fsms.push(s.fsm);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        for fsm in fsms.iter_mut() {
            handler.handle(fsm);
        }
        handler.end(&mut fsms);
        for (slot, fsm) in slots.drain(..).zip(fsms.drain(..)) {
            *slot.fsm.lock() = Some(fsm);
            slot.status.store(IDLE, Ordering::Release);
            // Without this fence the load below may be ordered before the
            // store above, and a sender may miss the IDLE flag while we miss
            // its message: a lost wakeup (found by benches/hot_paths.rs).
            fence(Ordering::SeqCst);
            if !slot.inbox.is_empty() {
                notify(&slot, scheduler);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counter {
        inbox: Arc<Inbox<usize>>,
        seen: Arc<AtomicUsize>,
    }
    impl Fsm for Counter {
        type Message = usize;
    }
    struct Handler {
        rounds: Arc<AtomicUsize>,
    }
    impl PollHandler<Counter> for Handler {
        fn handle(&mut self, fsm: &mut Counter) {
            while let Some(n) = fsm.inbox.pop() {
                fsm.seen.fetch_add(n, Ordering::SeqCst);
            }
        }
        fn end(&mut self, _batch: &mut [Box<Counter>]) {
            self.rounds.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Echo {
        inbox: Arc<Inbox<crossbeam::channel::Sender<()>>>,
    }
    impl Fsm for Echo {
        type Message = crossbeam::channel::Sender<()>;
    }
    struct EchoHandler;
    impl PollHandler<Echo> for EchoHandler {
        fn handle(&mut self, fsm: &mut Echo) {
            while let Some(reply) = fsm.inbox.pop() {
                let _ = reply.send(());
            }
        }
        fn end(&mut self, _batch: &mut [Box<Echo>]) {}
    }

    /// Stress for the idle/notify handshake: a message sent just as its FSM
    /// went idle was once never handled (a missing store-load fence on both
    /// sides). The race is rare on x86; benches/hot_paths.rs hit it under load.
    #[test]
    fn no_message_waits_on_an_idle_fsm() {
        let cfg = BatchConfig { pollers: 2, max_batch: 256 };
        let mut system = BatchSystem::start("echo", &cfg, || EchoHandler);
        let inbox = Inbox::new();
        let mailbox = system.registrar().register(Box::new(Echo { inbox: inbox.clone() }), inbox);
        let (reply_tx, reply_rx) = channel::bounded(1);
        for i in 0..50_000 {
            mailbox.send(reply_tx.clone()).unwrap();
            reply_rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("message {i} lost"));
        }
        system.shutdown();
    }

    #[test]
    fn a_drained_inbox_holds_no_buffer() {
        let inbox = Inbox::new();
        for i in 0..100 {
            inbox.push(i);
        }
        assert_eq!(inbox.len(), 100);
        assert!(inbox.queue.lock().capacity() >= 100);
        let popped: Vec<i32> = std::iter::from_fn(|| inbox.pop()).collect();
        assert_eq!(popped, (0..100).collect::<Vec<_>>());
        assert!(inbox.is_empty());
        assert_eq!(inbox.queue.lock().capacity(), 0);
    }

    #[test]
    fn every_message_is_handled_once() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let cfg = BatchConfig { pollers: 2, max_batch: 8 };
        let mut system = BatchSystem::start("test", &cfg, || Handler { rounds: rounds.clone() });
        let seen = Arc::new(AtomicUsize::new(0));
        let mailboxes: Vec<_> = (0..16)
            .map(|_| {
                let inbox = Inbox::new();
                system.registrar().register(Box::new(Counter { inbox: inbox.clone(), seen: seen.clone() }), inbox)
            })
            .collect();
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let mbs = mailboxes.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        mbs[(i + t) % mbs.len()].send(1).unwrap();
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while seen.load(Ordering::SeqCst) < 4000 {
            assert!(std::time::Instant::now() < deadline, "messages lost: {}", seen.load(Ordering::SeqCst));
            std::thread::yield_now();
        }
        system.shutdown();
        assert_eq!(seen.load(Ordering::SeqCst), 4000);
        assert!(rounds.load(Ordering::SeqCst) > 0);
    }
}
