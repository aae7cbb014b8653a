//! The workload of a fault run: seeded clients, each paced to its share of
//! the rate, drawing puts of unique values, linearizable and serializable
//! gets and ranges, compare-and-set txns over keys in different regions,
//! deletes and delete-ranges, and etcd leases (grant, a key attached,
//! revoke or expiry). Every operation is recorded ([`Record`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::client::Client;
use super::history::{Compare, KeyRange, Nanos, Op, Outcome, Record, Reply};

/// Keys of the workload: `k00`..`k{keys-1}`; lease keys live under `l/`.
pub fn key(i: usize) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}

/// Split keys giving `regions` regions over the workload's keys.
pub fn split_keys(keys: usize, regions: usize) -> Vec<String> {
    (1..regions).map(|r| String::from_utf8(key(r * keys / regions)).unwrap()).collect()
}

/// The run's clock and its shared record of operations.
#[derive(Clone)]
pub struct Recorder {
    pub start: Instant,
    pub records: Arc<Mutex<Vec<Record>>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { start: Instant::now(), records: Arc::default() }
    }

    pub fn now(&self) -> Nanos {
        self.start.elapsed().as_nanos() as Nanos
    }

    /// Runs `op` through `client` and records it.
    pub async fn run(&self, client: &mut Client, id: u32, op: Op) -> Outcome {
        let invoke = self.now();
        let outcome = client.run(&op).await;
        let complete = self.now();
        self.records.lock().push(Record { client: id, op, invoke, complete, outcome: outcome.clone() });
        outcome
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// One workload client's state: what it last saw of each key (for its
/// compare-and-sets) and its leases.
struct Worker {
    id: u32,
    rng: StdRng,
    keys: usize,
    seq: u64,
    seen: Vec<Option<Vec<u8>>>,
    leases: Vec<i64>,
}

impl Worker {
    fn value(&mut self) -> Vec<u8> {
        self.seq += 1;
        format!("c{}-{}", self.id, self.seq).into_bytes()
    }

    fn key_index(&mut self) -> usize {
        self.rng.random_range(0..self.keys)
    }

    /// Draws the next operation.
    fn next_op(&mut self) -> Op {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..30 => {
                let (key, value) = (key(self.key_index()), self.value());
                Op::Put { key, value, lease: 0 }
            }
            30..55 => Op::Range { range: KeyRange::single(&key(self.key_index())), serializable: roll >= 48 },
            55..63 => {
                let a = self.key_index();
                let b = (a + self.keys / 2) % self.keys;
                let range = KeyRange { key: key(a.min(b)), range_end: key(a.max(b)) };
                Op::Range { range, serializable: roll >= 60 }
            }
            63..65 => Op::Range { range: KeyRange { key: vec![0], range_end: vec![0] }, serializable: roll == 64 },
            65..80 => {
                let (a, b) = (self.key_index(), self.key_index());
                let b = if a == b { (b + self.keys / 2) % self.keys } else { b };
                let compares = [a, b].iter().map(|&i| Compare { key: key(i), value: self.seen[i].clone() }).collect();
                let puts = vec![(key(a), self.value()), (key(b), self.value())];
                Op::Cas { compares, puts }
            }
            80..88 => Op::Delete { range: KeyRange::single(&key(self.key_index())) },
            88..91 => {
                let a = self.key_index();
                let end = (a + 3).min(self.keys);
                Op::Delete { range: KeyRange { key: key(a), range_end: key(end) } }
            }
            _ => self.lease_op(),
        }
    }

    fn lease_op(&mut self) -> Op {
        if self.leases.len() >= 3 || (!self.leases.is_empty() && self.rng.random_bool(0.4)) {
            let i = self.rng.random_range(0..self.leases.len());
            if self.rng.random_bool(0.5) {
                return Op::LeaseRevoke { id: self.leases.swap_remove(i) };
            }
            let id = self.leases[i];
            let value = self.value();
            let key = format!("l/c{}-{}", self.id, self.seq).into_bytes();
            return Op::Put { key, value, lease: id };
        }
        self.seq += 1;
        let id = ((self.id as i64 + 1) << 32) | self.seq as i64;
        Op::LeaseGrant { id, ttl: self.rng.random_range(3..8) }
    }

    /// Learns from an answer what the client now knows of the keys.
    fn learn(&mut self, op: &Op, outcome: &Outcome) {
        let index = |k: &[u8]| std::str::from_utf8(k.strip_prefix(b"k")?).ok()?.parse::<usize>().ok();
        match (op, outcome) {
            (Op::Put { key, value, .. }, Outcome::Ok(_)) => {
                if let Some(i) = index(key) {
                    self.seen[i] = Some(value.clone());
                }
            }
            (Op::Range { range, .. }, Outcome::Ok(Reply::Range { kvs, .. })) if range.range_end.is_empty() => {
                if let Some(i) = index(&range.key) {
                    self.seen[i] = kvs.first().map(|kv| kv.value.clone());
                }
            }
            (Op::Cas { puts, .. }, Outcome::Ok(Reply::Cas { succeeded: true, .. })) => {
                for (k, v) in puts {
                    if let Some(i) = index(k) {
                        self.seen[i] = Some(v.clone());
                    }
                }
            }
            (Op::LeaseGrant { id, .. }, Outcome::Ok(_)) => self.leases.push(*id),
            _ => {}
        }
    }
}

/// Starts `clients` workload clients at `rate` operations per second in
/// all, until `stop`.
pub fn start(
    rec: &Recorder,
    clients: Vec<Client>,
    seed: u64,
    keys: usize,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let n = clients.len();
    let pace = Duration::from_secs_f64(n as f64 / rate.max(1.0));
    clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let (rec, stop) = (rec.clone(), stop.clone());
            let mut w = Worker {
                id: i as u32,
                rng: StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1))),
                keys,
                seq: 0,
                seen: vec![None; keys],
                leases: Vec::new(),
            };
            tokio::spawn(async move {
                let mut due = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let op = w.next_op();
                    let outcome = rec.run(&mut client, w.id, op.clone()).await;
                    w.learn(&op, &outcome);
                    due += pace;
                    let now = Instant::now();
                    if due > now {
                        tokio::time::sleep(due - now).await;
                    } else {
                        due = now;
                    }
                }
            })
        })
        .collect()
}
