//! The etcd Maintenance service: Status, Alarm (with the storage quota of
//! [`super::alarm`]), Defragment, Hash, HashKV, Snapshot and MoveLeader;
//! Downgrade answers UNIMPLEMENTED.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Reply;

use super::not_yet;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;
use crate::router::Router;

/// The etcd version tessera reports: Kubernetes enables its newer features
/// from 3.5.13 on, and tessera serves the 3.5 API.
pub const ETCD_VERSION: &str = "3.5.13";

pub struct MaintenanceService {
    pub router: Arc<Router>,
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _request: Request<StatusRequest>) -> Reply<StatusResponse> {
        let store = self.router.store();
        let header = self.router.current_header();
        let applied = store.applied_index();
        let size = store.db_size() as i64;
        let errors = if store.healthy() { Vec::new() } else { vec!["a region has no leader".to_string()] };
        Ok(Response::new(StatusResponse {
            version: ETCD_VERSION.to_string(),
            db_size: size,
            db_size_in_use: size,
            // The leader store: the meta group's leader (docs/cluster.md).
            leader: if store.clustered() { store.member_id_of(store.leader_store()) } else { header.member_id },
            raft_index: applied,
            raft_term: header.raft_term,
            raft_applied_index: applied,
            errors,
            header: Some(header),
            ..Default::default()
        }))
    }

    /// etcd's alarms: each for a member (0: all members). Activate
    /// answers the alarm (new or already up), Deactivate the alarm it
    /// cleared (none if it was not up), Get the alarms of the type asked
    /// (every type for NONE).
    async fn alarm(&self, request: Request<AlarmRequest>) -> Reply<AlarmResponse> {
        let req = request.into_inner();
        let header = self.router.current_header();
        let alarms = &self.router.alarms;
        let named = (req.member_id, req.alarm);
        let answered = match alarm_request::AlarmAction::try_from(req.action).unwrap_or(alarm_request::AlarmAction::Get)
        {
            alarm_request::AlarmAction::Get => alarms.list(req.alarm),
            _ if req.alarm == AlarmType::None as i32 => Vec::new(),
            alarm_request::AlarmAction::Activate => {
                alarms.set(named, true)?;
                vec![named]
            }
            alarm_request::AlarmAction::Deactivate => {
                if alarms.set(named, false)? {
                    vec![named]
                } else {
                    Vec::new()
                }
            }
        };
        let alarms = answered.into_iter().map(|(member_id, alarm)| AlarmMember { member_id, alarm }).collect();
        Ok(Response::new(AlarmResponse { header: Some(header), alarms }))
    }

    async fn defragment(&self, _r: Request<DefragmentRequest>) -> Reply<DefragmentResponse> {
        let store = self.router.store().clone();
        tokio::task::spawn_blocking(move || store.defragment())
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        // etcd answers Defragment and MoveLeader without a header.
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, _r: Request<HashRequest>) -> Reply<HashResponse> {
        let (hash, revision) = self.hash_at(0).await?;
        Ok(Response::new(HashResponse { header: Some(self.router.header(revision)), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Reply<HashKvResponse> {
        let (hash, revision) = self.hash_at(request.into_inner().revision).await?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.router.current_header()),
            hash,
            compact_revision: self.router.feed().compacted(),
            hash_revision: revision as i64,
        }))
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    /// Streams etcd's snapshot of the history at the resolved revision (see
    /// [`crate::snapshot`]), SHA-256 trailer included, in 64 KiB pieces.
    /// Only the leader store's history is complete (docs/cluster.md); another
    /// member answers Unavailable.
    async fn snapshot(&self, _r: Request<SnapshotRequest>) -> Reply<Self::SnapshotStream> {
        let feed = self.router.feed().clone();
        let header = self.router.current_header();
        let Some(revision) = feed.frontier() else {
            return Err(Status::unavailable(
                "tessera: only the leader store's history is complete: take the snapshot from it (etcdctl endpoint status --cluster shows it as leader)",
            ));
        };
        let scratch = feed.scratch_dir();
        let file = scratch.join(format!("snapshot-{}.db", crate::router::unique_id()));
        let path = file.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&scratch).map_err(|e| crate::error::Error::Storage(e.to_string()))?;
            let result = feed.snapshot_to(revision, &path);
            if result.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            result
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let result = stream_file(&file, header, &tx).await;
            let _ = tokio::fs::remove_file(&file).await;
            if let Err(e) = result {
                let _ = tx.send(Err(Status::internal(format!("reading the snapshot: {e}")))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    /// Moving the leadership to the leader store itself is a no-op; to
    /// another member it moves the leader store (docs/cluster.md); to
    /// anyone else etcd's "bad leader transferee".
    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Reply<MoveLeaderResponse> {
        let me = self.router.current_header().member_id;
        let target = request.into_inner().target_id;
        let store = self.router.store();
        if target != me {
            let to = store.members().members.iter().find(|m| m.member_id == target).map(|m| m.store_id);
            let Some(to) = to.filter(|_| store.clustered()) else {
                return Err(crate::error::Error::BadLeaderTransferee.into());
            };
            store.move_leader_store(to).await?;
        }
        Ok(Response::new(MoveLeaderResponse { header: None }))
    }

    async fn downgrade(&self, _r: Request<DowngradeRequest>) -> Reply<DowngradeResponse> {
        Err(not_yet("etcdserverpb.Maintenance/Downgrade"))
    }
}

impl MaintenanceService {
    /// The hash of the MVCC data at `revision` (0: the current one).
    async fn hash_at(&self, revision: i64) -> Result<(u32, u64), Status> {
        let feed = self.router.feed().clone();
        let hashed = tokio::task::spawn_blocking(move || feed.hash_at(revision))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(hashed)
    }
}

/// Sends `path` in pieces, each with how many bytes remain after it.
async fn stream_file(
    path: &std::path::Path,
    header: ResponseHeader,
    tx: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    let mut f = tokio::fs::File::open(path).await?;
    let mut remaining = f.metadata().await?.len();
    let mut buf = vec![0u8; 64 << 10];
    while remaining > 0 {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "snapshot file shrank"));
        }
        remaining -= n as u64;
        let piece = SnapshotResponse {
            header: Some(header),
            remaining_bytes: remaining,
            blob: buf[..n].to_vec(),
            version: ETCD_VERSION.to_string(),
        };
        if tx.send(Ok(piece)).await.is_err() {
            return Ok(()); // the client left
        }
    }
    Ok(())
}
