//! The etcd Watch service: one task per stream owns that stream's watchers.
//!
//! The task wakes when the resolved revision moves (every change at or
//! below it is applied, in every region), reads the event index once from
//! its most lagging watcher's next revision up to it, and hands each watcher
//! the events in its range: every event once, in revision order, a
//! revision's events in one response (DESIGN invariant 4). A watcher that
//! falls behind (a slow client) only delays its own stream, which catches
//! up from the index; writes never wait for watchers.
//!
//! A stream lives only while its store serves: once it stops being the
//! leader store the stream ends with etcd's "leader changed" (UNAVAILABLE),
//! on which clients resume each watch from its last revision + 1 through
//! any member (docs/cluster.md, "Watches when the leader store changes").

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Result;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use crate::proto::mvccpb::Event;
use crate::region::events::EventFilter;
use crate::region::span;
use crate::router::feed::Changes;
use crate::router::Router;

/// Changes read from the index per wake-up (whole revisions, so a batch
/// may exceed it by the size of one revision).
const CHANGES_PER_BATCH: usize = 10_000;

/// The watch id of a stream-wide progress notification and of a refused
/// create (etcd's `InvalidWatchID`).
const INVALID_WATCH_ID: i64 = -1;

/// How often a stream looks whether its store still serves (a cluster's
/// leader store can change without the resolved revision moving here).
const SERVING_CHECK: Duration = Duration::from_millis(20);

#[derive(Clone)]
pub struct WatchService {
    pub router: Arc<Router>,
    /// How often watchers created with `progress_notify` hear the current
    /// revision when they had no events.
    pub progress_interval: Duration,
    /// Responses with more event bytes than this are split into fragments
    /// for watchers that asked for it (etcd uses --max-request-bytes).
    pub max_response_bytes: usize,
    /// Becomes true when the server shuts down: every stream ends.
    pub stopping: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let stream = WatchStream::new(self.clone(), tx);
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

struct Watcher {
    filter: EventFilter,
    /// The next revision this watcher has not been sent.
    next: u64,
    progress_notify: bool,
    fragment: bool,
    /// Whether events were sent since the last progress tick.
    active: bool,
}

struct WatchStream {
    svc: WatchService,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
}

/// The stream's client went away (or the server is stopping).
struct Closed;

impl WatchStream {
    fn new(svc: WatchService, tx: mpsc::Sender<Result<WatchResponse, Status>>) -> WatchStream {
        WatchStream { svc, tx, watchers: BTreeMap::new(), next_id: 0 }
    }

    async fn run(mut self, mut requests: Streaming<WatchRequest>) {
        let feed = self.svc.router.feed().clone();
        let mut resolved = feed.subscribe();
        let mut stopping = self.svc.stopping.clone();
        let mut progress = tokio::time::interval(self.svc.progress_interval);
        progress.tick().await; // the first tick is immediate
        let mut serving = tokio::time::interval(SERVING_CHECK);
        let clustered = feed.clustered();
        loop {
            let step = tokio::select! {
                msg = requests.message() => match msg {
                    Ok(Some(req)) => self.on_request(req).await,
                    _ => Err(Closed),
                },
                changed = resolved.changed() => changed.map_err(|_| Closed),
                _ = progress.tick() => self.notify_progress().await,
                _ = serving.tick(), if clustered => Ok(()),
                _ = async { drop(stopping.wait_for(|s| *s).await) } => Err(Closed),
            };
            if step.is_err() || self.frontier().await.is_err() || self.deliver().await.is_err() {
                return;
            }
        }
    }

    /// What may be delivered ([`crate::router::feed::Feed::frontier`]); once this store's
    /// history is not complete, the stream ends with etcd's "leader
    /// changed" and its client resumes through another member (where the
    /// revisions past what this store resolved are delivered).
    async fn frontier(&self) -> Result<u64, Closed> {
        match self.svc.router.feed().frontier() {
            Some(resolved) => Ok(resolved),
            None => {
                let _ = self.tx.send(Err(Status::unavailable("etcdserver: leader changed"))).await;
                Err(Closed)
            }
        }
    }

    async fn send(&self, resp: WatchResponse) -> Result<(), Closed> {
        self.tx.send(Ok(resp)).await.map_err(|_| Closed)
    }

    async fn on_request(&mut self, req: WatchRequest) -> Result<(), Closed> {
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let last = self.svc.router.feed().newest();
                    let resp = WatchResponse { canceled: true, ..response(&self.svc, c.watch_id, last) };
                    self.send(resp).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Answered once every watcher has what is resolved (the
                // request is followed by a delivery round).
                self.deliver().await?;
                let resolved = self.frontier().await?;
                self.send(response(&self.svc, INVALID_WATCH_ID, resolved)).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest) -> Result<(), Closed> {
        let current = self.svc.router.feed().newest();
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if self.watchers.contains_key(&id) {
            let resp = WatchResponse {
                created: true,
                canceled: true,
                cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                ..response(&self.svc, INVALID_WATCH_ID, current)
            };
            return self.send(resp).await;
        }
        let filters: Vec<FilterType> = c.filters.iter().filter_map(|f| FilterType::try_from(*f).ok()).collect();
        let filter = EventFilter {
            span: span::span_of(&c.key, &c.range_end),
            no_put: filters.contains(&FilterType::Noput),
            no_delete: filters.contains(&FilterType::Nodelete),
            prev_kv: c.prev_kv,
        };
        let next = if c.start_revision > 0 { c.start_revision as u64 } else { current + 1 };
        let watcher = Watcher { filter, next, progress_notify: c.progress_notify, fragment: c.fragment, active: false };
        self.watchers.insert(id, watcher);
        self.send(WatchResponse { created: true, ..response(&self.svc, id, current) }).await
    }

    /// Cancels watchers whose next revision was compacted away, as etcd
    /// does: with the compacted revision.
    async fn cancel_compacted(&mut self) -> Result<(), Closed> {
        let compacted = self.svc.router.feed().compacted();
        let gone: Vec<i64> =
            self.watchers.iter().filter(|(_, w)| (w.next as i64) < compacted).map(|(id, _)| *id).collect();
        for id in gone {
            self.watchers.remove(&id);
            // etcd leaves the header revision 0 here.
            let resp = WatchResponse { canceled: true, compact_revision: compacted, ..response(&self.svc, id, 0) };
            self.send(resp).await?;
        }
        Ok(())
    }

    /// Sends every watcher its events up to the resolved revision.
    async fn deliver(&mut self) -> Result<(), Closed> {
        loop {
            self.cancel_compacted().await?;
            let resolved = self.frontier().await?;
            let feed = self.svc.router.feed();
            let Some(from) = self.watchers.values().map(|w| w.next).filter(|n| *n <= resolved).min() else {
                return Ok(());
            };
            let batch = match self.read(from, resolved) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!("watch: reading events: {e}");
                    let _ = self.tx.send(Err(e.into())).await;
                    return Err(Closed);
                }
            };
            // History may have been compacted while it was read: such
            // watchers are cancelled rather than sent a partial batch.
            if (from as i64) < feed.compacted() {
                continue;
            }
            let upto = batch.upto;
            for (id, w) in self.watchers.iter_mut() {
                if w.next > upto {
                    continue;
                }
                let mine: Vec<Event> = batch
                    .events
                    .iter()
                    .filter(|(rev, key, _)| *rev >= w.next && w.filter.covers(key))
                    .filter_map(|(_, _, ev)| ev.as_ref().and_then(|e| w.filter.admit(e)))
                    .collect();
                w.next = upto + 1;
                if mine.is_empty() {
                    continue;
                }
                w.active = true;
                let template = response(&self.svc, *id, upto);
                for part in responses(mine, template, w.fragment, self.svc.max_response_bytes) {
                    self.tx.send(Ok(part)).await.map_err(|_| Closed)?;
                }
            }
            if upto >= resolved {
                return Ok(());
            }
        }
    }

    /// Reads the changes from `from` up to at most `to`, with the events of
    /// every watcher's filter read once per change.
    fn read(&self, from: u64, to: u64) -> Result<Changes> {
        let prev_kv = self.watchers.values().any(|w| w.filter.prev_kv);
        let wanted = |rev: u64, key: &[u8]| self.watchers.values().any(|w| w.next <= rev && w.filter.covers(key));
        self.svc.router.feed().changes(from, to, CHANGES_PER_BATCH, wanted, prev_kv)
    }

    /// Progress notifications for quiet watchers that asked for them.
    async fn notify_progress(&mut self) -> Result<(), Closed> {
        self.deliver().await?;
        let resolved = self.frontier().await?;
        let mut quiet = Vec::new();
        for (id, w) in self.watchers.iter_mut() {
            if w.progress_notify && !std::mem::take(&mut w.active) && w.next > resolved {
                quiet.push(*id);
            }
        }
        for id in quiet {
            self.send(response(&self.svc, id, resolved)).await?;
        }
        Ok(())
    }
}

fn response(svc: &WatchService, watch_id: i64, revision: u64) -> WatchResponse {
    WatchResponse { header: Some(svc.router.header(revision)), watch_id, ..Default::default() }
}

/// Revisions per response at most (etcd's watchBatchMaxRevs).
const REVISIONS_PER_RESPONSE: usize = 1000;

/// Cuts a watcher's events into responses at revision boundaries: at most
/// [`REVISIONS_PER_RESPONSE`] revisions and about `max_bytes` each, one
/// revision never split. A single revision larger than `max_bytes` is
/// split into fragments when the watcher allows them.
fn responses(events: Vec<Event>, template: WatchResponse, fragment: bool, max_bytes: usize) -> Vec<WatchResponse> {
    let rev = |e: &Event| e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
    let mut out = Vec::new();
    let mut chunk: Vec<Event> = Vec::new();
    let (mut bytes, mut revisions) = (0, 0);
    let mut i = 0;
    while i < events.len() {
        let r = rev(&events[i]);
        let end = events[i..].iter().position(|e| rev(e) != r).map_or(events.len(), |n| i + n);
        let size: usize = events[i..end].iter().map(|e| e.encoded_len()).sum();
        if !chunk.is_empty() && (bytes + size > max_bytes || revisions == REVISIONS_PER_RESPONSE) {
            let full = WatchResponse { events: std::mem::take(&mut chunk), ..template.clone() };
            out.extend(fragments(full, fragment, max_bytes));
            (bytes, revisions) = (0, 0);
        }
        chunk.extend_from_slice(&events[i..end]);
        bytes += size;
        revisions += 1;
        i = end;
    }
    out.extend(fragments(WatchResponse { events: chunk, ..template }, fragment, max_bytes));
    out
}

/// Splits `resp` into responses of at most `max_bytes` of events each when
/// the watcher allows fragments (all but the last marked `fragment`).
fn fragments(mut resp: WatchResponse, allowed: bool, max_bytes: usize) -> Vec<WatchResponse> {
    if !allowed || resp.encoded_len() <= max_bytes {
        return vec![resp];
    }
    let events = std::mem::take(&mut resp.events);
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut size = 0;
    for ev in events {
        let len = ev.encoded_len();
        if !current.is_empty() && size + len > max_bytes {
            parts.push(WatchResponse { fragment: true, events: std::mem::take(&mut current), ..resp.clone() });
            size = 0;
        }
        size += len;
        current.push(ev);
    }
    parts.push(WatchResponse { events: current, ..resp });
    parts
}
