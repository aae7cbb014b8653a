//! Watchers of a fault run, and the reader of the authoritative history.
//!
//! A watcher watches its range from revision 1 through one member; when
//! its stream breaks (an error, a cancel, the member gone) it resumes from
//! its last revision + 1 through the next member, as etcd's clients do.
//! Everything it receives is recorded ([`WatchLog`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use super::client::kv_of;
use super::history::{Event, EventKind, KeyRange, WatchItem, WatchLog};
use super::workload::Recorder;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::proto::mvccpb;

fn event_of(e: mvccpb::Event) -> Event {
    let kind = if e.r#type == mvccpb::event::EventType::Delete as i32 { EventKind::Delete } else { EventKind::Put };
    Event { kind, kv: kv_of(e.kv.unwrap_or_default()) }
}

/// A running watcher: its log and the newest revision it delivered.
pub struct Watcher {
    pub log: Arc<Mutex<WatchLog>>,
    pub last: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Watcher {
    /// Stops the watcher and returns what it received.
    pub fn finish(self) -> WatchLog {
        self.task.abort();
        self.log.lock().clone()
    }
}

/// Opens a watch stream of `range` from `from` through `channel`; the
/// sender must be kept alive as long as the stream is wanted.
async fn open(
    channel: Channel,
    range: &KeyRange,
    from: i64,
) -> Result<(mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>)> {
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key: range.key.clone(),
        range_end: range.range_end.clone(),
        start_revision: from,
        ..Default::default()
    };
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await?;
    let mut client = WatchClient::new(channel);
    let call = client.watch(ReceiverStream::new(rx));
    let stream = tokio::time::timeout(Duration::from_secs(3), call).await??.into_inner();
    Ok((tx, stream))
}

pub fn start(rec: &Recorder, id: u32, range: KeyRange, channels: Vec<Channel>) -> Watcher {
    let log = Arc::new(Mutex::new(WatchLog { id, range: range.clone(), start_revision: 1, items: Vec::new() }));
    let last = Arc::new(AtomicI64::new(0));
    let (rec, log2, last2) = (rec.clone(), log.clone(), last.clone());
    let task = tokio::spawn(async move {
        let mut member = id as usize;
        loop {
            let from = last2.load(Ordering::SeqCst) + 1;
            let channel = channels[member % channels.len()].clone();
            member += 1;
            log2.lock().items.push(WatchItem::Started { at: rec.now(), from_revision: from });
            let error = match open(channel, &range, from).await {
                Ok((_tx, mut stream)) => loop {
                    match stream.next().await {
                        None => break "stream ended".to_string(),
                        Some(Err(s)) => break format!("{:?}: {}", s.code(), s.message()),
                        Some(Ok(resp)) if resp.canceled || resp.compact_revision > 0 => {
                            break format!("canceled: {} (compacted {})", resp.cancel_reason, resp.compact_revision)
                        }
                        Some(Ok(resp)) if resp.events.is_empty() => {}
                        Some(Ok(resp)) => {
                            let events: Vec<Event> = resp.events.into_iter().map(event_of).collect();
                            let newest = events.iter().map(|e| e.kv.mod_revision).max().unwrap_or(0);
                            log2.lock().items.push(WatchItem::Events { at: rec.now(), events });
                            last2.fetch_max(newest, Ordering::SeqCst);
                        }
                    }
                },
                Err(e) => e.to_string(),
            };
            log2.lock().items.push(WatchItem::Broken { at: rec.now(), error });
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Watcher { log, last, task }
}

/// Every event from revision 1 up to `until` (a revision known to hold an
/// event), read by a watch of every key through `channel`.
pub async fn history(channel: Channel, until: i64, within: Duration) -> Result<Vec<Event>> {
    let all = KeyRange { key: vec![0], range_end: vec![0] };
    let read = async {
        let (_tx, mut stream) = open(channel, &all, 1).await?;
        let mut events = Vec::new();
        while let Some(resp) = stream.next().await {
            let resp = resp?;
            if resp.canceled || resp.compact_revision > 0 {
                bail!("history watch canceled: {} (compacted {})", resp.cancel_reason, resp.compact_revision);
            }
            events.extend(resp.events.into_iter().map(event_of));
            if events.last().is_some_and(|e| e.kv.mod_revision >= until) {
                // A response may carry revisions past `until` (etcd batches them).
                events.retain(|e| e.kv.mod_revision <= until);
                return Ok(events);
            }
        }
        bail!("history watch ended before revision {until}")
    };
    match tokio::time::timeout(within, read).await {
        Ok(r) => r,
        Err(_) => bail!("history watch did not reach revision {until} within {within:?}"),
    }
}
