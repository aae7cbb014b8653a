//! A split at many keys in one admin call (`tessera admin split
//! --keys-file`; docs/design.md, "Bulk regions"). The keys are grouped by
//! the region owning them, and each region is cut at its keys by ONE raft
//! command (one log entry, one apply batch, its new peers created
//! together), so every region's split is atomic as a single split is.
//! Regions are split concurrently. A command cuts at most
//! [`MAX_CUTS_PER_COMMAND`] keys (and about [`MAX_CUT_BYTES`] of them): a
//! region owning more is first cut at every (limit+1)-th of its keys, then
//! each part at the rest, so 100,000 keys in one region take two rounds of
//! commands.

use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::proto::tesserapb::{RaftCommand, Region, SplitCommand};

use super::table::RoutingTable;
use super::Router;

/// The most keys one split command cuts at: it bounds the log entry and
/// the apply batch (about 0.5 KB of raft and region state per new region).
pub const MAX_CUTS_PER_COMMAND: usize = 4096;

/// The most key bytes one split command carries (past it, fewer keys).
pub const MAX_CUT_BYTES: usize = 1 << 20;

/// What a split at many keys did.
#[derive(Debug, Default, Clone)]
pub struct BulkSplit {
    /// Regions created (one per key that did not start a region already).
    pub created: u64,
    /// Keys that already started a region.
    pub skipped: u64,
    /// Split commands proposed (and applied).
    pub commands: u64,
    /// The regions the first and the last key start, once done.
    pub first: Option<Region>,
    pub last: Option<Region>,
}

impl Router {
    /// Splits the keyspace at every key of `keys` (ascending, without
    /// duplicates or empty keys). Keys that already start a region are
    /// skipped, so a call cut short (deadline, restart) can be repeated.
    pub async fn split_at_keys(self: &Arc<Self>, keys: Vec<Vec<u8>>) -> Result<BulkSplit> {
        crate::region::split_keys::check(&keys).map_err(Error::SplitKeys)?;
        let _admin = self.admin_lock.lock().await;
        let table = self.table();
        let (skipped, mut todo): (Vec<Vec<u8>>, Vec<Vec<u8>>) = keys.iter().cloned().partition(|k| starts(&table, k));
        let mut out = BulkSplit { skipped: skipped.len() as u64, created: todo.len() as u64, ..Default::default() };
        let mut deadline = Instant::now() + self.request_timeout;
        loop {
            let table = self.table();
            todo.retain(|k| !starts(&table, k));
            if todo.is_empty() {
                break;
            }
            let (done, failed) = self.split_round(plan(&table, &todo)?).await;
            out.commands += done;
            if done > 0 {
                deadline = Instant::now() + self.request_timeout;
            }
            if let Some(e) = failed {
                self.admin_backoff(Err(e), deadline).await?;
            }
        }
        let table = self.table();
        out.first = keys.first().and_then(|k| table.locate(k).cloned());
        out.last = keys.last().and_then(|k| table.locate(k).cloned());
        Ok(out)
    }

    /// Proposes one split command per planned region, concurrently; the
    /// number applied, and an error of one that did not.
    async fn split_round(self: &Arc<Self>, plan: Vec<(Region, Vec<Vec<u8>>)>) -> (u64, Option<Error>) {
        let mut commands = tokio::task::JoinSet::new();
        for (region, cuts) in plan {
            let router = self.clone();
            commands.spawn(async move { router.split_region(&region, cuts).await });
        }
        let (mut done, mut failed) = (0, None);
        while let Some(result) = commands.join_next().await {
            match result {
                Ok(Ok(())) => done += 1,
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some(Error::Stopped),
            }
        }
        (done, failed)
    }

    /// Cuts `region` at every key of `cuts` (ascending, inside it) with one
    /// raft command.
    async fn split_region(&self, region: &Region, cuts: Vec<Vec<u8>>) -> Result<()> {
        self.client.gather(region.id).await?;
        let mut keys = cuts.into_iter();
        let split_key = keys.next().ok_or(Error::SplitWhere)?;
        let more_keys: Vec<Vec<u8>> = keys.collect();
        let mut ids = self.store.alloc_region_ids(1 + more_keys.len())?;
        let more_region_ids = ids.split_off(1);
        let split = SplitCommand { split_key, new_region_id: ids[0], more_region_ids, more_keys };
        let cmd = RaftCommand { split: Some(split), ..Default::default() };
        let version = region.epoch.as_ref().map_or(0, |e| e.version);
        match self.propose(region.id, version, cmd).await? {
            true => Ok(()),
            false => Err(Error::RegionBusy { region: region.id }),
        }
    }
}

/// Whether `key` starts a region of `table`.
fn starts(table: &RoutingTable, key: &[u8]) -> bool {
    table.locate(key).is_some_and(|r| r.start_key == key)
}

/// The next round's commands: each region owning keys of `todo` (sorted,
/// none starting a region) with the keys it is cut at now: all of them if
/// they fit in one command, else every (limit+1)-th, so that each part
/// then owns at most a command's worth.
fn plan(table: &RoutingTable, todo: &[Vec<u8>]) -> Result<Vec<(Region, Vec<Vec<u8>>)>> {
    let mut groups: Vec<(Region, Vec<Vec<u8>>)> = Vec::new();
    for key in todo {
        let owner = table.locate(key).ok_or(Error::RegionNotFound)?;
        match groups.last_mut() {
            Some((region, keys)) if region.id == owner.id => keys.push(key.clone()),
            _ => groups.push((owner.clone(), vec![key.clone()])),
        }
    }
    for (_, keys) in &mut groups {
        let limit = cut_limit(keys);
        if keys.len() > limit {
            *keys = keys.iter().skip(limit).step_by(limit + 1).cloned().collect();
        }
    }
    Ok(groups)
}

/// How many of `keys` one command may carry: [`MAX_CUTS_PER_COMMAND`], or
/// fewer when they are long.
fn cut_limit(keys: &[Vec<u8>]) -> usize {
    let average = keys.iter().map(Vec::len).sum::<usize>() / keys.len().max(1);
    (MAX_CUT_BYTES / average.max(1)).clamp(1, MAX_CUTS_PER_COMMAND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::initial_regions;

    fn key(i: usize) -> Vec<u8> {
        format!("k{i:07}").into_bytes()
    }

    #[test]
    fn a_command_cuts_at_all_keys_of_a_region_when_they_fit() {
        let table = RoutingTable::new(initial_regions(&[b"k0000500".to_vec()], &[1]));
        let todo: Vec<Vec<u8>> = (1..1000).filter(|i| *i != 500).map(key).collect();
        let plan = plan(&table, &todo).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!((plan[0].0.id, plan[0].1.len()), (1, 499));
        assert_eq!((plan[1].0.id, plan[1].1.len()), (2, 499));
        assert_eq!(plan[1].1[0], key(501));
    }

    #[test]
    fn a_region_with_too_many_keys_is_cut_coarsely_first() {
        let table = RoutingTable::new(initial_regions(&[], &[1]));
        let n = 3 * MAX_CUTS_PER_COMMAND + 10;
        let todo: Vec<Vec<u8>> = (0..n).map(key).collect();
        let plan = plan(&table, &todo).unwrap();
        assert_eq!(plan.len(), 1);
        let cuts = &plan[0].1;
        assert_eq!(cuts.len(), 3);
        // Every part owns at most a command's worth of the remaining keys.
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().map(|c| todo.iter().position(|k| k == c).unwrap()));
        bounds.push(n);
        for w in bounds.windows(2) {
            let owned = w[1] - w[0] - usize::from(w[0] != 0);
            assert!(owned <= MAX_CUTS_PER_COMMAND, "{owned}");
        }
    }

    #[test]
    fn long_keys_make_smaller_commands() {
        let keys = vec![vec![b'x'; 64 << 10]; 100];
        assert_eq!(cut_limit(&keys), 16);
        assert_eq!(cut_limit(&[vec![b'x'; 4 << 20]]), 1);
        assert_eq!(cut_limit(&[b"a".to_vec()]), MAX_CUTS_PER_COMMAND);
    }
}
