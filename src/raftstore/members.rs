//! The cluster's members (docs/cluster.md, "Membership changes"): one
//! `MemberSet` record, bootstrapped from `--initial-cluster` (or from the
//! member that let a new store join) and changed only by the meta group's
//! conf changes, whose context is the new set.

use prost::Message as _;
use rocksdb::WriteBatch;

use crate::engine::{keys, Engine};
use crate::error::{Error, Result};
use crate::proto::tesserapb::{MemberSet, StoreMember};

/// At most this many members: every region has a peer on each.
pub const MAX_MEMBERS: usize = 5;

pub fn load(engine: &Engine) -> Result<Option<MemberSet>> {
    match engine.db.get_cf(engine.meta(), keys::MEMBERS)? {
        Some(b) => Ok(Some(MemberSet::decode(&b[..]).map_err(|e| Error::Storage(format!("corrupt members: {e}")))?)),
        None => Ok(None),
    }
}

pub fn write(engine: &Engine, set: &MemberSet, wb: &mut WriteBatch) {
    wb.put_cf(engine.meta(), keys::MEMBERS, set.encode_to_vec());
}

/// This store's id, as its data dir records it.
pub fn load_store_id(engine: &Engine) -> Result<Option<u64>> {
    match engine.db.get_cf(engine.meta(), keys::STORE_ID)? {
        Some(b) => Ok(Some(u64::from_be_bytes(
            b.as_slice().try_into().map_err(|_| Error::Storage("corrupt store id".into()))?,
        ))),
        None => Ok(None),
    }
}

pub fn write_store_id(engine: &Engine, id: u64, wb: &mut WriteBatch) {
    wb.put_cf(engine.meta(), keys::STORE_ID, id.to_be_bytes());
}

/// A member's id as clients see it (MemberList, headers), for a member of
/// the bootstrap set: from its name and the cluster id, so every member
/// computes every other's.
pub fn member_id(name: &str, cluster_id: u64) -> u64 {
    hash(&(name, cluster_id))
}

/// The id of a member added by MemberAdd (it has no name yet).
pub fn added_member_id(peer_url: &str, cluster_id: u64, store_id: u64) -> u64 {
    hash(&(peer_url, cluster_id, store_id))
}

fn hash(v: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish().max(1)
}

/// `set` with `member` added.
pub fn with(set: &MemberSet, member: StoreMember) -> MemberSet {
    let mut next = set.clone();
    next.next_store_id = next.next_store_id.max(member.store_id + 1);
    next.members.push(member);
    next
}

/// `set` without store `store_id`.
pub fn without(set: &MemberSet, store_id: u64) -> MemberSet {
    let mut next = set.clone();
    next.members.retain(|m| m.store_id != store_id);
    next
}

/// Whether `store_id` belonged to the cluster once and was removed.
pub fn was_removed(set: &MemberSet, store_id: u64) -> bool {
    store_id < set.next_store_id && !set.members.iter().any(|m| m.store_id == store_id)
}

/// (store id, peer URL) of every member: the transport's links.
pub fn peer_urls(set: &MemberSet) -> Vec<(u64, String)> {
    set.members.iter().map(|m| (m.store_id, m.peer_url.clone())).collect()
}
