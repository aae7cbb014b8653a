//! The load driver: closed or open loop over per-client workers, progress
//! on stderr, interval log, and the final [`Summary`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use parking_lot::Mutex;

use super::report::{new_histogram, Summary};
use super::LoadOpts;

/// One client's operation. `i` is the operation's global sequence number.
pub trait Worker: Send + 'static {
    fn call(&mut self, i: u64) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

struct Shared {
    next: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    /// Latencies since the last interval (for the progress line and the log).
    interval: Mutex<Histogram<u64>>,
}

/// Runs `workers` (one per client) as `opts` says and summarizes the run.
pub async fn drive<W: Worker>(opts: &LoadOpts, workload: &str, workers: Vec<W>) -> anyhow::Result<Summary> {
    let total = if opts.duration.is_some() { u64::MAX } else { opts.total };
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        interval: Mutex::new(new_histogram()),
    });
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let mut tasks = Vec::with_capacity(workers.len());
    for mut w in workers {
        let shared = shared.clone();
        let rate = opts.rate;
        tasks.push(tokio::spawn(async move {
            let mut hist = new_histogram();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                if shared.stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = shared.next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                // Open loop: charge latency from when the operation was due.
                let due = match rate {
                    Some(r) => {
                        let due = start + Duration::from_secs_f64(i as f64 / r);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let result = w.call(i).await;
                let us = due.elapsed().as_micros().max(1) as u64;
                let _ = hist.record(us.min(hist.high()));
                let _ = shared.interval.lock().record(us.min(hist.high()));
                match result {
                    Ok(()) => shared.done.fetch_add(1, Ordering::Relaxed),
                    Err(s) => {
                        *errors.entry(format!("{:?}", s.code())).or_default() += 1;
                        shared.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            (hist, errors)
        }));
    }
    let reporter = tokio::spawn(report_progress(shared.clone(), opts.clone(), workload.to_string(), start, total));
    let mut latency_us = new_histogram();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (h, e) = t.await?;
        latency_us.add(h)?;
        for (code, n) in e {
            *errors.entry(code).or_default() += n;
        }
    }
    let elapsed = start.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    reporter.await??;
    Ok(Summary {
        workload: workload.to_string(),
        endpoint: opts.endpoints.join(","),
        ops: shared.done.load(Ordering::Relaxed),
        errors,
        elapsed,
        latency_us,
    })
}

/// Once per second: the progress line (on a terminal) and the interval log.
async fn report_progress(
    shared: Arc<Shared>,
    opts: LoadOpts,
    workload: String,
    start: Instant,
    total: u64,
) -> anyhow::Result<()> {
    let bar = progress_bar(&opts, &workload, total);
    let mut log_file = match &opts.interval_log {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    };
    let mut serializer = V2DeflateSerializer::new();
    let mut log = match log_file.as_mut() {
        Some(f) => Some(
            IntervalLogWriterBuilder::new()
                .with_start_time(SystemTime::now())
                .with_max_value_divisor(1000.0)
                .add_comment(&format!("tessera bench {workload}: latency in microseconds (max shown in ms)"))
                .begin_log_with(f, &mut serializer)?,
        ),
        None => None,
    };
    let mut last = start;
    loop {
        tokio::time::sleep(Duration::from_millis(if bar.is_hidden() { 1000 } else { 250 })).await;
        let stopped = shared.stop.load(Ordering::Relaxed);
        let now = Instant::now();
        if now.duration_since(last) >= Duration::from_secs(1) || stopped {
            let h = std::mem::replace(&mut *shared.interval.lock(), new_histogram());
            if let Some(log) = log.as_mut() {
                log.write_histogram(&h, last.duration_since(start), now.duration_since(last), None)
                    .map_err(|e| anyhow::anyhow!("interval log: {e:?}"))?;
            }
            last = now;
        }
        let (done, failed) = (shared.done.load(Ordering::Relaxed), shared.failed.load(Ordering::Relaxed));
        bar.set_position(done + failed);
        bar.set_message(format!("{:.0} ops/s  errors {failed}", done as f64 / start.elapsed().as_secs_f64().max(1e-9)));
        if stopped {
            bar.finish();
            return Ok(());
        }
    }
}

/// The progress line on stderr: ops done of the total (when there is
/// one), the rate and the errors; hidden with --no-progress or when stderr
/// is no terminal.
fn progress_bar(opts: &LoadOpts, workload: &str, total: u64) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if opts.no_progress {
        return ProgressBar::hidden();
    }
    let (bar, template) = if total == u64::MAX {
        (ProgressBar::new_spinner(), "{prefix}: {pos} ops  {msg}")
    } else {
        (ProgressBar::new(total), "{prefix}: {pos}/{len} ops  {msg}")
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
    bar.set_prefix(workload.to_string());
    bar
}
