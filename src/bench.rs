//! `tessera bench`: load generators against any etcd v3 endpoint (tessera
//! or etcd itself), reporting throughput and an HdrHistogram latency
//! distribution. Only the `put` workload exists so far (issue [bench] adds
//! the rest); flag names follow etcd's benchmark tool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::PutRequest;

#[derive(Debug, Clone, clap::Args)]
pub struct PutArgs {
    /// Comma-separated endpoints (http://host:port); clients are spread over them.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Concurrent clients, each sending one request at a time.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// gRPC connections shared by the clients.
    #[arg(long, default_value_t = 8)]
    pub conns: usize,
    /// Total puts.
    #[arg(long, default_value_t = 20_000)]
    pub total: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Distinct keys written (keys cycle through this space).
    #[arg(long, default_value_t = 10_000)]
    pub key_space_size: u64,
}

/// What a run measured.
pub struct Report {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Report {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn print(&self, workload: &str) {
        let h = &self.latency_us;
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!("workload: {workload}");
        println!(
            "ops: {}  errors: {}  elapsed: {:.2} s  throughput: {:.0} ops/s",
            self.ops,
            self.errors,
            self.elapsed.as_secs_f64(),
            self.ops_per_sec()
        );
        println!(
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0
        );
        println!(
            "{{\"workload\":\"{workload}\",\"ops\":{},\"errors\":{},\"ops_per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
            self.ops,
            self.errors,
            self.ops_per_sec(),
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1000.0
        );
    }
}

/// Fixed-size key for index `i`: zero-padded decimal, so keys spread over
/// regions split at digits and sort by index.
fn key_of(i: u64, size: usize) -> Vec<u8> {
    let digits = format!("{i:0width$}", width = size.max(1));
    digits.into_bytes()
}

async fn connect(endpoints: &[String], conns: usize) -> anyhow::Result<Vec<KvClient<Channel>>> {
    let mut clients = Vec::with_capacity(conns);
    for i in 0..conns.max(1) {
        let url = &endpoints[i % endpoints.len()];
        let channel = Endpoint::from_shared(url.clone())?.connect().await?;
        clients.push(KvClient::new(channel).max_decoding_message_size(usize::MAX));
    }
    Ok(clients)
}

/// Closed loop: `clients` tasks put back to back until `total` are done.
pub async fn put(args: &PutArgs) -> anyhow::Result<Report> {
    let conns = connect(&args.endpoints, args.conns).await?;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let value = vec![b'v'; args.val_size];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients.max(1) {
        let mut kv = conns[c % conns.len()].clone();
        let (next, errors, value, args) = (next.clone(), errors.clone(), value.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("valid precision");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.total {
                    return hist;
                }
                let key = key_of(i % args.key_space_size.max(1), args.key_size);
                let t = Instant::now();
                let res = kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await;
                let _ = hist.record(t.elapsed().as_micros() as u64);
                if res.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut latency_us = Histogram::<u64>::new(3).expect("valid precision");
    for t in tasks {
        latency_us.add(t.await?)?;
    }
    let elapsed = started.elapsed();
    let errors = errors.load(Ordering::Relaxed);
    Ok(Report { ops: args.total - errors, errors, elapsed, latency_us })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_asked_size_and_sort_by_index() {
        assert_eq!(key_of(42, 8), b"00000042".to_vec());
        assert!(key_of(9, 4) < key_of(10, 4));
    }
}
