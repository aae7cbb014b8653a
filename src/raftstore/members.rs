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
    stable_id(&[b"member", name.as_bytes(), &cluster_id.to_be_bytes()])
}

/// The id of a member added by MemberAdd (it has no name yet).
pub fn added_member_id(peer_url: &str, cluster_id: u64, store_id: u64) -> u64 {
    stable_id(&[b"added member", peer_url.as_bytes(), &cluster_id.to_be_bytes(), &store_id.to_be_bytes()])
}

/// A cluster's id from its bootstrap members (the same on every member).
pub fn cluster_id(members: &[StoreMember]) -> u64 {
    let ids: Vec<[u8; 8]> = members.iter().map(|m| m.store_id.to_be_bytes()).collect();
    let mut parts: Vec<&[u8]> = vec![b"cluster"];
    for (m, id) in members.iter().zip(&ids) {
        parts.extend([&id[..], m.name.as_bytes(), m.peer_url.as_bytes()]);
    }
    stable_id(&parts)
}

/// An id from `parts`: the first 8 bytes of the SHA-256 of the parts, each
/// after its length; never 0. The same from every build (std's
/// DefaultHasher may change between Rust releases, and members built by
/// different toolchains must compute the same ids).
fn stable_id(parts: &[&[u8]]) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes")).max(1)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn member(store_id: u64, name: &str, peer_url: &str) -> StoreMember {
        StoreMember { store_id, name: name.into(), peer_url: peer_url.into(), ..Default::default() }
    }

    /// Pinned: a change here would make members of different builds
    /// disagree on every id.
    #[test]
    fn ids_are_the_same_from_every_build() {
        assert_eq!(member_id("n1", 42), 13313953988736458393);
        assert_eq!(added_member_id("http://127.0.0.1:2380", 42, 4), 7842756044997112431);
        let members = [member(1, "n1", "http://a:1"), member(2, "n2", "http://b:2")];
        assert_eq!(cluster_id(&members), 16600466856997626432);
        assert_ne!(member_id("n1", 42), member_id("n2", 42));
    }
}
