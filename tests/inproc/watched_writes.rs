//! Puts from several clients through every member while a test moves the
//! leader store, and one watch over all keys that must see every put
//! acknowledged: the check of the watch-gap tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, WatchOptions, WatchStream};

pub struct Writers {
    acked: Arc<Mutex<Vec<i64>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// `n` writers, writer `w` through `endpoints[w % len]`, each putting
    /// new keys until stopped; a put that fails leaves its outcome unknown
    /// and is not checked.
    pub fn start(endpoints: &[String], n: usize) -> Writers {
        let (acked, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let tasks = (0..n)
            .map(|w| {
                let (acked, stop, to) = (acked.clone(), stop.clone(), endpoints[w % endpoints.len()].clone());
                tokio::spawn(async move {
                    let mut c = Client::connect([to], None).await.unwrap();
                    for i in 0u32.. {
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        let key = format!("{}/w{w}/{i}", (b'a' + (i % 26) as u8) as char);
                        let put = tokio::time::timeout(Duration::from_secs(5), c.put(key, "v", None)).await;
                        if let Ok(Ok(r)) = put {
                            acked.lock().unwrap().push(r.header().unwrap().revision());
                        }
                    }
                })
            })
            .collect();
        Writers { acked, stop, tasks }
    }

    /// How many puts were acknowledged so far.
    pub fn acks(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Stops the writers; the revisions of every acknowledged put, sorted.
    pub async fn stop(self) -> Vec<i64> {
        self.stop.store(true, Ordering::Release);
        for t in self.tasks {
            t.await.unwrap();
        }
        let mut acked = self.acked.lock().unwrap().clone();
        acked.sort_unstable();
        acked
    }
}

/// A watch over all keys, kept open by a task of its own: whenever it
/// ends (a watch through a member other than the leader store ends with
/// "leader changed" when the leader store moves) it is opened again at
/// once after the last event seen, so that it reads while a new leader
/// store activates, where the gaps were.
pub struct Watching {
    seen: Arc<Mutex<Vec<i64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watching {
    /// Watches every key from revision `from` through `endpoints`.
    pub async fn start(endpoints: &[String], from: i64) -> Watching {
        let mut c = Client::connect(endpoints, None).await.unwrap();
        let seen: Arc<Mutex<Vec<i64>>> = Default::default();
        let mut events = watch_all(&mut c, from).await;
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                loop {
                    match events.message().await {
                        Ok(Some(resp)) => {
                            let revs = resp.events().iter().map(|e| e.kv().unwrap().mod_revision());
                            seen.lock().unwrap().extend(revs);
                        }
                        _ => {
                            let next = seen.lock().unwrap().last().map_or(from, |r| *r + 1);
                            loop {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                let opts = WatchOptions::new().with_all_keys().with_start_revision(next);
                                if let Ok(e) = c.watch("", Some(opts)).await {
                                    events = e;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        });
        Watching { seen, task }
    }

    /// The revisions delivered once one at or past `last` came (at most
    /// 20 s), in order.
    pub async fn until(self, last: i64) -> Vec<i64> {
        let seen = self.seen.clone();
        super::wait_for("the watch to reach the last put", || seen.lock().unwrap().last().is_some_and(|r| *r >= last))
            .await;
        self.task.abort();
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}

async fn watch_all(c: &mut Client, from: i64) -> WatchStream {
    let opts = WatchOptions::new().with_all_keys().with_start_revision(from);
    c.watch("", Some(opts)).await.unwrap()
}

/// The acknowledged revisions the watch did not deliver.
pub fn skipped(acked: &[i64], seen: &[i64]) -> Vec<i64> {
    acked.iter().filter(|r| seen.binary_search(r).is_err()).copied().collect()
}
