//! Opening a data dir: the regions, cluster id, store id and members it
//! holds, or a new store's bootstrap (a new cluster's or a joining store's).

use prost::Message as _;

use super::StoreConfig;
use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::proto::tesserapb::{ApplyState, MemberSet, Region, StoreMember};
use crate::raftstore::{members, storage};

/// What a data dir holds (or a bootstrap wrote).
pub(super) struct Booted {
    pub regions: Vec<Region>,
    pub cluster_id: u64,
    pub store_id: u64,
    pub members: MemberSet,
    /// The regions were just bootstrapped: their state is
    /// [`storage::fresh`]'s, no need to read it back.
    pub fresh: bool,
}

pub(super) fn load_or_bootstrap(engine: &Engine, cfg: &StoreConfig) -> Result<Booted> {
    let mut regions = Vec::new();
    let prefix = [keys::REGION_PREFIX];
    for item in engine.db.prefix_iterator_cf(engine.meta(), prefix) {
        let (k, v) = item?;
        if k.first() != Some(&keys::REGION_PREFIX) || k.len() != 9 {
            break;
        }
        regions.push(Region::decode(&v[..]).map_err(|e| Error::Storage(format!("corrupt region: {e}")))?);
    }
    if let Some(b) = engine.db.get_cf(engine.meta(), keys::CLUSTER)? {
        let cluster_id =
            u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::Storage("corrupt cluster id".into()))?);
        if !cfg.initial_split_keys.is_empty() && !regions.is_empty() {
            tracing::info!("data dir already holds {} regions; --initial-split-keys ignored", regions.len());
        }
        let store_id = members::load_store_id(engine)?.unwrap_or(cfg.store_id);
        let members = match members::load(engine)? {
            Some(set) => set,
            None => members_of_old_data_dir(engine, cfg, &mut regions, cluster_id)?,
        };
        return Ok(Booted { regions, cluster_id, store_id, members, fresh: false });
    }
    let mut wb = rocksdb::WriteBatch::default();
    let booted = if let Some((cluster_id, members)) = &cfg.join {
        // Its regions (the meta group's too) arrive as snapshots.
        Booted {
            regions: Vec::new(),
            cluster_id: *cluster_id,
            store_id: cfg.store_id,
            members: members.clone(),
            fresh: true,
        }
    } else {
        let initial = initial_members(cfg);
        let stores: Vec<u64> = initial.iter().map(|m| m.store_id).collect();
        let mut regions = crate::region::initial_regions(&cfg.initial_split_keys, &stores);
        let meta = crate::region::meta_region(regions.len() as u64 + 1, &stores);
        // Every member of a new cluster must derive the same id on its own.
        let cluster_id = if initial.len() > 1 { members::cluster_id(&initial) } else { random_id() };
        let members = member_set(initial, cluster_id, meta.id);
        regions.push(meta);
        for r in &regions {
            storage::init_peer(engine, r, &ApplyState::default(), &mut wb)?;
        }
        Booted { regions, cluster_id, store_id: cfg.store_id, members, fresh: true }
    };
    members::write(engine, &booted.members, &mut wb);
    members::write_store_id(engine, booted.store_id, &mut wb);
    // Written last in the same batch: its presence means bootstrap finished.
    wb.put_cf(engine.meta(), keys::CLUSTER, booted.cluster_id.to_be_bytes());
    engine.write(wb, true)?;
    let (regions, cluster_id) = (booted.regions.len(), booted.cluster_id);
    tracing::info!(regions, cluster_id, store = booted.store_id, "bootstrapped a new store");
    Ok(booted)
}

/// The members of a data dir written before they were recorded: the stores
/// its regions have peers on, named by the flags (which must agree).
fn members_of_old_data_dir(
    engine: &Engine,
    cfg: &StoreConfig,
    regions: &mut Vec<Region>,
    cluster_id: u64,
) -> Result<MemberSet> {
    let initial = initial_members(cfg);
    let mut want: Vec<u64> = initial.iter().map(|m| m.store_id).collect();
    want.sort();
    let mut have: Vec<u64> = regions.first().map(|r| r.peers.iter().map(|p| p.store_id).collect()).unwrap_or_default();
    have.sort();
    if have != want {
        return Err(Error::Storage(format!(
            "the data dir holds a cluster of stores {have:?}, but the members given are stores {want:?}"
        )));
    }
    if !regions.iter().any(|r| r.meta) {
        // A data dir from before the meta group existed.
        let meta = crate::region::meta_region(regions.iter().map(|r| r.id).max().unwrap_or(0) + 1, &want);
        engine.db.put_cf(engine.meta(), keys::region(meta.id), meta.encode_to_vec())?;
        regions.push(meta);
    }
    let members = member_set(initial, cluster_id, regions.iter().find(|r| r.meta).map_or(0, |r| r.id));
    let mut wb = rocksdb::WriteBatch::default();
    members::write(engine, &members, &mut wb);
    members::write_store_id(engine, cfg.store_id, &mut wb);
    engine.write(wb, true)?;
    Ok(members)
}

/// The members `--initial-cluster` names (a single store: itself).
fn initial_members(cfg: &StoreConfig) -> Vec<StoreMember> {
    if cfg.members.is_empty() {
        vec![StoreMember { store_id: cfg.store_id, name: cfg.name.clone(), ..Default::default() }]
    } else {
        cfg.members.clone()
    }
}

/// The bootstrap member set: ids from names and the cluster id.
fn member_set(initial: Vec<StoreMember>, cluster_id: u64, meta_region: u64) -> MemberSet {
    let next_store_id = initial.iter().map(|m| m.store_id).max().unwrap_or(0) + 1;
    let members =
        initial.into_iter().map(|m| StoreMember { member_id: members::member_id(&m.name, cluster_id), ..m }).collect();
    MemberSet { members, next_store_id, meta_region }
}

pub(super) fn load_high_mark(engine: &Engine) -> Result<u64> {
    match engine.db.get_cf(engine.meta(), keys::HIGH_MARK)? {
        Some(b) => {
            Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::Storage("corrupt high mark".into()))?))
        }
        None => Ok(0),
    }
}

/// A random non-zero id (cluster ids need only be unlikely to collide).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish().max(1)
}
