//! The faults a run injects, each begun and healed by the harness:
//! kill -9 and restart, SIGSTOP/SIGCONT, cut peer links (one member, or a
//! minority from a majority), leader moves (etcd's MoveLeader; on tessera
//! it moves the leader store), region leader transfers and split/merge
//! storms (tessera's admin RPCs).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::cluster::{Cluster, Target};
use super::workload::key;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::{MoveLeaderRequest, StatusRequest};
use crate::proto::tesserapb::admin_client::AdminClient;
use crate::proto::tesserapb::{MergeRequest, RegionsRequest, SplitRequest, TransferLeaderRequest};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Kill,
    Pause,
    Cut,
    Partition,
    MoveLeader,
    TransferLeader,
    SplitMerge,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::Kill, Kind::Pause, Kind::Cut, Kind::Partition, Kind::MoveLeader, Kind::TransferLeader, Kind::SplitMerge];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Cut => "cut",
            Kind::Partition => "partition",
            Kind::MoveLeader => "move-leader",
            Kind::TransferLeader => "transfer-leader",
            Kind::SplitMerge => "split-merge",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s).with_context(|| format!("unknown fault {s:?}"))
    }

    /// Whether the fault means anything for `target` with `members` members.
    pub fn applies(self, target: &Target, members: usize) -> bool {
        let tessera = matches!(target, Target::Tessera { .. });
        match self {
            Kind::Kill | Kind::Pause => true,
            Kind::Cut | Kind::Partition | Kind::MoveLeader => members > 1,
            Kind::TransferLeader => tessera && members > 1,
            Kind::SplitMerge => tessera,
        }
    }
}

/// One fault as injected: what, on whom, and when (nanoseconds of the run).
#[derive(Clone, Debug)]
pub struct Injected {
    pub kind: Kind,
    pub detail: String,
    pub start: u64,
    pub healed: u64,
}

/// A fault begun and not yet healed.
pub enum Active {
    Killed(usize),
    Paused(usize),
    Cut,
    Done,
}

/// Begins `kind` (`hold` is how long it lasts for the timed faults).
pub async fn begin(cluster: &mut Cluster, kind: Kind, rng: &mut StdRng, hold: Duration) -> Result<(Active, String)> {
    let n = cluster.members.len();
    let victim = rng.random_range(0..n);
    let name = cluster.members[victim].name.clone();
    Ok(match kind {
        Kind::Kill => {
            cluster.kill(victim);
            (Active::Killed(victim), format!("kill -9 {name}"))
        }
        Kind::Pause => {
            cluster.pause(victim);
            (Active::Paused(victim), format!("SIGSTOP {name}"))
        }
        Kind::Cut => {
            let others: Vec<usize> = (0..n).filter(|&m| m != victim).collect();
            cluster.links.cut(&[victim], &others);
            (Active::Cut, format!("cut {name}'s peer links"))
        }
        Kind::Partition => {
            let minority = rng.random_range(1..=(n - 1) / 2);
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            let (a, b) = order.split_at(minority);
            cluster.links.cut(a, b);
            let names = |s: &[usize]| s.iter().map(|&m| cluster.members[m].name.clone()).collect::<Vec<_>>().join("+");
            (Active::Cut, format!("partition {} | {}", names(a), names(b)))
        }
        Kind::MoveLeader => (Active::Done, move_leader(cluster, rng).await?),
        Kind::TransferLeader => (Active::Done, transfer_leader(cluster, rng).await?),
        Kind::SplitMerge => (Active::Done, split_merge_storm(cluster, rng, hold).await),
    })
}

/// Ends a fault begun by [`begin`].
pub fn heal(cluster: &mut Cluster, active: Active) -> Result<()> {
    match active {
        Active::Killed(m) => cluster.restart(m),
        Active::Paused(m) => {
            cluster.resume(m);
            Ok(())
        }
        Active::Cut => {
            cluster.links.heal();
            Ok(())
        }
        Active::Done => Ok(()),
    }
}

fn timeout<T>(r: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> Result<T> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(s)) => bail!("{:?}: {}", s.code(), s.message()),
        Err(_) => bail!("timed out"),
    }
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks a running member who leads, then asks the leader to hand over to
/// another member.
async fn move_leader(cluster: &Cluster, rng: &mut StdRng) -> Result<String> {
    let mut ids = Vec::new();
    let mut leader = None;
    for (i, m) in cluster.members.iter().enumerate() {
        if !cluster.up(i) {
            continue;
        }
        let mut c = MaintenanceClient::connect(m.client_url.clone()).await?;
        let status = timeout(tokio::time::timeout(ADMIN_TIMEOUT, c.status(StatusRequest {})).await)?.into_inner();
        let id = status.header.map_or(0, |h| h.member_id);
        ids.push((i, id));
        if status.leader == id {
            leader = Some(i);
        }
    }
    let Some(leader) = leader else { return Ok("move-leader: no leader known".into()) };
    let others: Vec<&(usize, u64)> = ids.iter().filter(|(i, _)| *i != leader).collect();
    let Some(&&(to, target_id)) = others.choose(rng) else { return Ok("move-leader: no other member up".into()) };
    let mut c = MaintenanceClient::connect(cluster.members[leader].client_url.clone()).await?;
    let r = tokio::time::timeout(ADMIN_TIMEOUT, c.move_leader(MoveLeaderRequest { target_id })).await;
    let (from, to) = (&cluster.members[leader].name, &cluster.members[to].name);
    Ok(match timeout(r) {
        Ok(_) => format!("move-leader {from} -> {to}"),
        Err(e) => format!("move-leader {from} -> {to} failed: {e}"),
    })
}

async fn admin(cluster: &Cluster) -> Result<AdminClient<tonic::transport::Channel>> {
    let up = (0..cluster.members.len()).find(|&i| cluster.up(i)).context("no member up")?;
    Ok(AdminClient::connect(cluster.members[up].client_url.clone()).await?)
}

async fn transfer_leader(cluster: &Cluster, rng: &mut StdRng) -> Result<String> {
    let mut c = admin(cluster).await?;
    let regions = timeout(tokio::time::timeout(ADMIN_TIMEOUT, c.regions(RegionsRequest {})).await)?.into_inner();
    let regions: Vec<_> = regions.regions.into_iter().filter(|r| r.region.as_ref().is_some_and(|r| !r.meta)).collect();
    let Some(info) = regions.choose(rng) else { return Ok("transfer-leader: no region".into()) };
    let region_id = info.region.as_ref().map_or(0, |r| r.id);
    let stores: Vec<u64> = (1..=cluster.members.len() as u64).filter(|&s| s != info.leader_store).collect();
    let to_store = *stores.choose(rng).unwrap_or(&1);
    let r = tokio::time::timeout(ADMIN_TIMEOUT, c.transfer_leader(TransferLeaderRequest { region_id, to_store })).await;
    Ok(match timeout(r) {
        Ok(_) => format!("transfer-leader region {region_id} -> store {to_store}"),
        Err(e) => format!("transfer-leader region {region_id} -> store {to_store} failed: {e}"),
    })
}

/// Splits and merges for `hold`: a split at a random key, or a merge of a
/// random pair of neighbours, one after the other.
async fn split_merge_storm(cluster: &Cluster, rng: &mut StdRng, hold: Duration) -> String {
    let (mut splits, mut merges, mut refused) = (0, 0, 0);
    let until = Instant::now() + hold;
    while Instant::now() < until {
        match split_or_merge(cluster, rng).await {
            Ok(true) => splits += 1,
            Ok(false) => merges += 1,
            Err(_) => refused += 1,
        }
    }
    format!("split-merge storm: {splits} splits, {merges} merges, {refused} refused")
}

/// One split (true) or merge (false).
async fn split_or_merge(cluster: &Cluster, rng: &mut StdRng) -> Result<bool> {
    let mut c = admin(cluster).await?;
    let regions = timeout(tokio::time::timeout(ADMIN_TIMEOUT, c.regions(RegionsRequest {})).await)?.into_inner();
    let mut regions: Vec<_> = regions.regions.into_iter().filter_map(|r| r.region).filter(|r| !r.meta).collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    if regions.len() < 12 && (regions.len() < 3 || rng.random_bool(0.5)) {
        let mut k = key(rng.random_range(0..30));
        k.push(b'a' + rng.random_range(0..26u8));
        timeout(
            tokio::time::timeout(ADMIN_TIMEOUT, c.split(SplitRequest { key: k, region_id: 0, ..Default::default() }))
                .await,
        )?;
        return Ok(true);
    }
    let i = rng.random_range(0..regions.len() - 1);
    let req = MergeRequest { left: regions[i].id, right: regions[i + 1].id };
    timeout(tokio::time::timeout(ADMIN_TIMEOUT, c.merge(req)).await)?;
    Ok(false)
}
