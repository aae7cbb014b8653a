//! The region client: reaches the leader of a region, whether its peer is
//! on this store or another, for the router's requests (writes, txn steps,
//! compactions, leader moves). The local store ([`Store`]) only ever asks
//! its own peers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{PieceRead, Store};
use crate::error::{Error, Result};
use crate::proto::etcdserverpb::RangeResponse;
use crate::proto::mvccpb::KeyValue;
use crate::proto::tesserapb::region_request::Kind as RegionKind;
use crate::proto::tesserapb::region_response::Result as Answer;
use crate::proto::tesserapb::{RaftCommand, RegionRead, RegionRequest, RegionResponse};
use crate::raftstore::msg::WriteOutcome;
use crate::raftstore::remote;
use crate::region::eval::WriteRequest;

/// How long an admin step waits for its region's leadership to come to
/// the leader store.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests to region leaders wherever they are (cheap to clone).
#[derive(Clone)]
pub struct RegionClient {
    store: Arc<Store>,
}

impl RegionClient {
    pub fn new(store: Arc<Store>) -> RegionClient {
        RegionClient { store }
    }

    /// Sends a region request (`kind`) to the store whose peer leads
    /// `region`, if that is another store (as this store's peer last
    /// heard); `None`: this store's own peer is to be asked.
    async fn ask_leader(
        &self,
        region: u64,
        epoch_version: u64,
        kind: impl FnOnce() -> RegionKind,
    ) -> Result<Option<RegionResponse>> {
        let Some(t) = self.store.transport() else { return Ok(None) };
        let leader = self.store.peer(region)?.shared.leader.load(Ordering::Acquire);
        if leader == 0 || leader == self.store.store_id {
            return Ok(None);
        }
        let kind = kind();
        let repeatable = !matches!(kind, RegionKind::Write(_));
        let req =
            RegionRequest { region_id: region, epoch_version, kind: Some(kind), router_store: self.store.store_id };
        t.region(leader, req, repeatable).await.map(Some)
    }

    /// Evaluates and commits a write in `region` (one attempt), at the
    /// region's leader wherever it is.
    pub async fn write(&self, region: u64, epoch_version: u64, req: WriteRequest) -> Result<WriteOutcome> {
        match self.ask_leader(region, epoch_version, || RegionKind::Write(remote::encode_write(req.clone()))).await? {
            Some(resp) => remote::decode_outcome(resp),
            None => self.store.write_here(region, epoch_version, req, self.store.store_id).await,
        }
    }

    /// Reads a piece of a linearizable read at its region's leader,
    /// wherever it is (see [`Store::read_here`]).
    pub async fn read(&self, piece: &PieceRead<'_>) -> Result<(Vec<KeyValue>, usize)> {
        let remote = self
            .ask_leader(piece.region, piece.epoch_version, || {
                RegionKind::Read(RegionRead {
                    revision: piece.revision,
                    request: Some(piece.req.clone()),
                    start: piece.start.to_vec(),
                    end: piece.end.map(<[u8]>::to_vec),
                })
            })
            .await?;
        match remote {
            Some(RegionResponse { result: Some(Answer::Read(RangeResponse { kvs, count, .. })), .. }) => {
                Ok((kvs, count as usize))
            }
            Some(_) => Err(Error::Storage("tessera: a region read answered without key-values".into())),
            None => self.store.read_here(piece).await,
        }
    }

    /// Proposes `cmd` as it is in `region` (a txn step, a lease change; one
    /// attempt); whether it took effect.
    pub async fn propose(&self, region: u64, epoch_version: u64, cmd: RaftCommand) -> Result<bool> {
        if region == self.store.meta_region {
            return self.store.propose_here(region, epoch_version, cmd).await;
        }
        match self.ask_leader(region, epoch_version, || RegionKind::Command(cmd.clone())).await? {
            Some(resp) => Ok(matches!(resp.result, Some(Answer::TookEffect(true)))),
            None => self.store.propose_here(region, epoch_version, cmd).await,
        }
    }

    /// Compacts `region`'s history below `revision` through its log.
    pub async fn compact(&self, region: u64, revision: u64) -> Result<()> {
        if self.ask_leader(region, 0, || RegionKind::Compact(revision)).await?.is_some() {
            return Ok(());
        }
        self.store.compact_here(region, revision).await
    }

    /// Asks the leader of `region`, wherever it is, to hand leadership to
    /// the peer on store `to` (its lease ends at once).
    pub async fn transfer_leader(&self, region: u64, to: u64) -> Result<()> {
        if self.ask_leader(region, 0, || RegionKind::TransferTo(to)).await?.is_some() {
            return Ok(());
        }
        self.store.transfer_here(region, to)
    }

    /// Brings the leadership of `region` to this store's peer and waits
    /// (bounded) until it may propose: admin steps (split, merge, conf
    /// change) run at the leader store, where the router is.
    pub async fn gather(&self, region: u64) -> Result<()> {
        self.move_leader(region, self.store.store_id, GATHER_TIMEOUT).await
    }

    /// Asks the leader of `region` to hand over to store `to` until this
    /// store sees `to` lead (for this store itself: lead and may propose),
    /// for at most `within`.
    pub async fn move_leader(&self, region: u64, to: u64, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let shared = self.store.peer(region)?.shared;
            let leader = shared.leader.load(Ordering::Acquire);
            let done = if to == self.store.store_id { shared.leading.load(Ordering::Acquire) } else { leader == to };
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(if to == self.store.store_id { Error::NotLeader { region } } else { Error::Timeout });
            }
            if leader != 0 && leader != to {
                if let Err(e) = self.transfer_leader(region, to).await {
                    tracing::debug!(region, to, "moving the leadership: {e}");
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
