//! etcd's backend buckets and their encodings (etcd 3.4/3.5), and what
//! `etcdctl snapshot status` computes from them.
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `key` | revision: main u64 BE, `_`, sub u64 BE; a tombstone adds `t` | `mvccpb.KeyValue` (a tombstone: the key alone) |
//! | `meta` | `consistent_index` | u64 BE |
//! | `meta` | `scheduledCompactRev`, `finishedCompactRev` | a revision (main, `_`, sub 0) |
//! | `lease` | lease id, u64 BE | `leasepb.Lease` |
//! | `members`, `members_removed`, `cluster`, `alarm` | membership and alarms | (replaced on a restore) |
//! | `auth`, `authUsers`, `authRoles` | `authEnabled` (one byte, 1: on), users, roles | |

use prost::Message as _;

use super::bolt::Crc32c;
use super::reader::BoltFile;
use super::SnapshotError;

pub const KEY: &[u8] = b"key";
pub const META: &[u8] = b"meta";
pub const LEASE: &[u8] = b"lease";
pub const AUTH: &[u8] = b"auth";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const AUTH_ROLES: &[u8] = b"authRoles";
/// The buckets a snapshot of tessera carries, in name order (bbolt's
/// order): those of an etcd 3.4 member, the ones tessera has nothing for
/// empty.
pub const WRITTEN: [&[u8]; 10] =
    [b"alarm", AUTH, AUTH_ROLES, AUTH_USERS, b"cluster", KEY, LEASE, b"members", b"members_removed", META];

pub const CONSISTENT_INDEX: &[u8] = b"consistent_index";
pub const SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
pub const FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
pub const AUTH_ENABLED: &[u8] = b"authEnabled";

/// A revision in the `key` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revision {
    pub main: u64,
    pub sub: u64,
    pub tombstone: bool,
}

impl Revision {
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(18);
        k.extend_from_slice(&self.main.to_be_bytes());
        k.push(b'_');
        k.extend_from_slice(&self.sub.to_be_bytes());
        if self.tombstone {
            k.push(b't');
        }
        k
    }

    pub fn decode(k: &[u8]) -> Option<Revision> {
        let tombstone = match k.len() {
            17 => false,
            18 if k[17] == b't' => true,
            _ => return None,
        };
        if k[8] != b'_' {
            return None;
        }
        let main = u64::from_be_bytes(k[..8].try_into().ok()?);
        let sub = u64::from_be_bytes(k[9..17].try_into().ok()?);
        Some(Revision { main, sub, tombstone })
    }
}

/// A compaction point as `meta` stores it.
pub fn compact_rev(main: u64) -> Vec<u8> {
    Revision { main, sub: 0, tombstone: false }.encode()
}

/// etcd's `leasepb.Lease`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeasePb {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

pub fn lease_entry(id: i64, ttl: i64) -> (Vec<u8>, Vec<u8>) {
    (id.to_be_bytes().to_vec(), LeasePb { id, ttl, remaining_ttl: 0 }.encode_to_vec())
}

pub fn decode_lease(value: &[u8]) -> Result<LeasePb, SnapshotError> {
    LeasePb::decode(value).map_err(|e| SnapshotError::Format(format!("lease bucket: {e}")))
}

/// What `etcdctl snapshot status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C of every bucket's name, then its keys and values, in order.
    pub hash: u32,
    /// The main revision of the last entry of `key`.
    pub revision: i64,
    /// Entries of every bucket.
    pub total_key: u64,
    /// The database's size (pages in use times the page size).
    pub total_size: u64,
}

impl Status {
    /// `etcdctl snapshot status -w json`'s line.
    pub fn json(&self) -> String {
        format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}",
            self.hash, self.revision, self.total_key, self.total_size
        )
    }
}

pub fn status(db: &BoltFile) -> Result<Status, SnapshotError> {
    let mut crc = Crc32c::new();
    let (mut revision, mut total_key) = (0i64, 0u64);
    for (name, root) in db.buckets()? {
        crc.update(&name);
        let is_key = name == KEY;
        db.for_each(&root, &mut |e| {
            crc.update(e.key);
            if !e.bucket {
                crc.update(e.value);
            }
            if is_key {
                revision = Revision::decode(e.key).map_or(revision, |r| r.main as i64);
            }
            total_key += 1;
            Ok(())
        })?;
    }
    Ok(Status { hash: crc.finish(), revision, total_key, total_size: db.size() })
}

/// The value of `key` in the top-level bucket `bucket`, if both exist.
pub fn get(db: &BoltFile, bucket: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, SnapshotError> {
    let mut found = None;
    for_each(db, bucket, &mut |k, v| {
        if k == key {
            found = Some(v.to_vec());
        }
        Ok(())
    })?;
    Ok(found)
}

/// Entries in a top-level bucket (0 when it does not exist).
pub fn count(db: &BoltFile, bucket: &[u8]) -> Result<u64, SnapshotError> {
    let mut n = 0;
    for_each(db, bucket, &mut |_, _| {
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// Calls `f` on every entry of the top-level bucket `bucket` (none when it
/// does not exist).
pub fn for_each(
    db: &BoltFile,
    bucket: &[u8],
    f: &mut dyn FnMut(&[u8], &[u8]) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let Some((_, root)) = db.buckets()?.into_iter().find(|(n, _)| n == bucket) else { return Ok(()) };
    db.for_each(&root, &mut |e| if e.bucket { Ok(()) } else { f(e.key, e.value) })
}
