//! A store's revision client (docs/serve-anywhere.md, "Revisions"): the
//! asks of the region leaders on this store for revisions from the leader
//! store's sequencer, and the revisions they give back. At most one
//! `Allocate` is in flight per store; it carries every ask and every void
//! queued since the last, so a store pays one round trip per batch, not
//! one per region (nor one per write: an ask is for a count).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::transport::Transport;
use crate::error::{Error, Result};
use crate::metrics::METRICS;
use crate::proto::tesserapb::revision_grant::Refusal;
use crate::proto::tesserapb::{AllocateRequest, AllocateResponse, RevisionAsk, RevisionGrant, RevisionVoid};

/// How long revisions a store did not use are offered back to a leader
/// store that does not answer.
const VOID_RETRY_FOR: Duration = Duration::from_secs(60);
/// The pause before offering voids again after a failed request.
const VOID_RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The router of an ask for writes from several stores' routers. No store
/// has this id, so [`acknowledged_once_handed_out`] holds for it.
pub const SEVERAL_ROUTERS: u64 = u64::MAX;

/// Whether the sequencer on store `here` counts an ask's revisions as
/// acknowledged the moment it hands them out: unless the one router that
/// coordinates the writes is its own store's (that router acknowledges
/// each write as it answers it) or the ask is for no write (0). Early is
/// always safe: a linearizable read there then also waits for these
/// writes, and never answers below one acknowledged elsewhere (DESIGN 3).
pub fn acknowledged_once_handed_out(router_store: u64, here: u64) -> bool {
    router_store != 0 && router_store != here
}

/// Revisions `first .. first + count`, handed out by the leader store of
/// meta-group `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub first: u64,
    pub count: u64,
    pub term: u64,
}

/// Where an ask's answer goes.
pub type Answer = Box<dyn FnOnce(Result<Grant>) + Send>;

pub struct RevisionClient {
    transport: Arc<Transport>,
    store_id: u64,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// The leader store the next request goes to.
    leader: u64,
    asks: Vec<(RevisionAsk, Answer)>,
    /// Revisions to give back, with when they were first offered.
    voids: Vec<(RevisionVoid, Instant)>,
    /// A request is in flight (its task sends the next one).
    sending: bool,
}

impl RevisionClient {
    pub fn new(transport: Arc<Transport>, store_id: u64) -> Arc<RevisionClient> {
        Arc::new(RevisionClient { transport, store_id, queue: Mutex::new(Queue::default()) })
    }

    /// Asks leader store `leader` (not this store) for revisions.
    pub fn ask(self: &Arc<Self>, leader: u64, ask: RevisionAsk, answer: Answer) {
        let start = {
            let mut q = self.queue.lock();
            q.leader = leader;
            q.asks.push((ask, answer));
            !std::mem::replace(&mut q.sending, true)
        };
        if start {
            self.spawn();
        }
    }

    /// Gives `revision`, handed out in meta-group `term`, back to leader
    /// store `leader` (not this store).
    pub fn void(self: &Arc<Self>, leader: u64, revision: u64, term: u64) {
        let start = {
            let mut q = self.queue.lock();
            q.leader = leader;
            q.voids.push((RevisionVoid { revision, term }, Instant::now()));
            !std::mem::replace(&mut q.sending, true)
        };
        if start {
            self.spawn();
        }
    }

    fn spawn(self: &Arc<Self>) {
        let Some(runtime) = self.transport.runtime.as_ref() else {
            self.queue.lock().sending = false;
            return;
        };
        runtime.spawn(self.clone().send_all());
    }

    /// Sends what is queued, one request at a time, until nothing is.
    async fn send_all(self: Arc<Self>) {
        loop {
            let (leader, asks, voids) = {
                let mut q = self.queue.lock();
                if q.asks.is_empty() && q.voids.is_empty() {
                    q.sending = false;
                    return;
                }
                (q.leader, std::mem::take(&mut q.asks), std::mem::take(&mut q.voids))
            };
            let regions: Vec<u64> = asks.iter().map(|(a, _)| a.region_id).collect();
            let (asked, answers): (Vec<RevisionAsk>, Vec<Answer>) = asks.into_iter().unzip();
            let req = AllocateRequest {
                from_store: self.store_id,
                voids: voids.iter().map(|(v, _)| *v).collect(),
                asks: asked,
            };
            METRICS.revision_requests.inc();
            METRICS.revision_asks.add(regions.len() as u64);
            let result = self.transport.allocate(leader, req).await;
            let failed = result.is_err();
            answer_all(&regions, answers, result);
            if failed && !voids.is_empty() && self.offer_again(voids) {
                tokio::time::sleep(VOID_RETRY_PAUSE).await;
            }
        }
    }

    /// Queues voids a failed request carried again (those offered for long
    /// enough are dropped); whether only voids are queued (then the next
    /// request waits a little).
    fn offer_again(&self, voids: Vec<(RevisionVoid, Instant)>) -> bool {
        let now = Instant::now();
        let mut q = self.queue.lock();
        q.voids.extend(voids.into_iter().filter(|(_, at)| now.duration_since(*at) < VOID_RETRY_FOR));
        q.asks.is_empty()
    }
}

/// Hands each ask (of `regions`, in order) its grant, or the request's error.
fn answer_all(regions: &[u64], answers: Vec<Answer>, result: Result<AllocateResponse>) {
    let (term, mut grants) = match result {
        Ok(resp) => (resp.term, resp.grants.into_iter()),
        Err(_) => (0, Vec::new().into_iter()),
    };
    for (&region, answer) in regions.iter().zip(answers) {
        answer(grants.next().map_or(Err(Error::ProposalDropped { region }), |g| decode_grant(region, g, term)));
    }
}

/// The wire form of one ask's answer (the leader store's side).
pub fn encode_grant(result: Result<(u64, u64)>) -> RevisionGrant {
    match result {
        Ok((first, count)) => RevisionGrant { first, count: count as u32, refused: Refusal::None as i32 },
        Err(e) => {
            let refused = match e {
                Error::NotLeader { .. } => Refusal::Stale,
                Error::LeaseNotFound => Refusal::LeaseNotFound,
                _ => Refusal::HighMark,
            };
            RevisionGrant { refused: refused as i32, ..Default::default() }
        }
    }
}

fn decode_grant(region: u64, g: RevisionGrant, term: u64) -> Result<Grant> {
    match Refusal::try_from(g.refused).unwrap_or(Refusal::HighMark) {
        Refusal::None => Ok(Grant { first: g.first, count: g.count as u64, term }),
        Refusal::Stale => Err(Error::NotLeader { region }),
        Refusal::LeaseNotFound => Err(Error::LeaseNotFound),
        Refusal::HighMark => Err(Error::ProposalDropped { region }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_refusals_survive_the_wire() {
        let g = decode_grant(7, encode_grant(Ok((11, 4))), 3).unwrap();
        assert_eq!(g, Grant { first: 11, count: 4, term: 3 });
        let refused = |e| decode_grant(7, encode_grant(Err(e)), 3).unwrap_err();
        assert!(matches!(refused(Error::NotLeader { region: 7 }), Error::NotLeader { region: 7 }));
        assert!(matches!(refused(Error::LeaseNotFound), Error::LeaseNotFound));
        assert!(matches!(refused(Error::ProposalDropped { region: 7 }), Error::ProposalDropped { region: 7 }));
    }

    #[test]
    fn asks_of_other_or_several_routers_are_acknowledged_once_handed_out() {
        assert!(acknowledged_once_handed_out(2, 1), "another store's router");
        assert!(acknowledged_once_handed_out(SEVERAL_ROUTERS, 1), "several routers, this one's among them");
        assert!(!acknowledged_once_handed_out(1, 1), "this store's own router acknowledges as it answers");
        assert!(!acknowledged_once_handed_out(0, 1), "an ask for no write");
    }

    #[test]
    fn a_failed_request_fails_every_ask_it_carried() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers: Vec<Answer> = (0..2)
            .map(|_| {
                let got = got.clone();
                Box::new(move |r: Result<Grant>| got.lock().push(r.is_err())) as Answer
            })
            .collect();
        answer_all(&[1, 2], answers, Err(Error::Timeout));
        assert_eq!(*got.lock(), vec![true, true]);
    }
}
