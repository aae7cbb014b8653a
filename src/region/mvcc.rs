//! Reading and writing MVCC versions in the `mvcc` column family.
//!
//! Each version of a key is one RocksDB entry (see [`super::keys`]) whose
//! value is a tag byte followed, for a put, by the prost encoding of the
//! `KeyValue` without its key. A delete writes a tombstone version, so that
//! reads at older revisions still see what was there.

use prost::Message;
use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, ReadOptions, WriteBatch, DB};

use super::keys;
use crate::error::{Error, Result};
use crate::proto::mvccpb::KeyValue;

const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;

/// Encodes the value stored for one version: `None` is a tombstone.
pub fn encode_value(kv: Option<&KeyValue>) -> Vec<u8> {
    match kv {
        None => vec![TAG_TOMBSTONE],
        Some(kv) => {
            let body = KeyValue { key: Vec::new(), ..kv.clone() };
            let mut out = Vec::with_capacity(1 + body.encoded_len());
            out.push(TAG_PUT);
            body.encode(&mut out).expect("vec has room");
            out
        }
    }
}

/// Decodes a stored value for `user_key`: `Ok(None)` is a tombstone.
pub fn decode_value(user_key: &[u8], value: &[u8]) -> Result<Option<KeyValue>> {
    match value.split_first() {
        Some((&TAG_TOMBSTONE, _)) => Ok(None),
        Some((&TAG_PUT, body)) => {
            let mut kv = KeyValue::decode(body).map_err(|e| Error::Storage(e.to_string()))?;
            kv.key = user_key.to_vec();
            Ok(Some(kv))
        }
        _ => Err(Error::Storage("corrupt mvcc value".into())),
    }
}

/// Adds one version to `wb`.
pub fn write_version(wb: &mut WriteBatch, cf: &ColumnFamily, key: &[u8], revision: u64, kv: Option<&KeyValue>) {
    wb.put_cf(cf, keys::encode(key, revision), encode_value(kv));
}

/// What a scan returns besides the live keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScanOptions {
    /// Return at most this many key-values (0: all). `count` is unaffected.
    pub limit: usize,
    /// Count only; return no key-values.
    pub count_only: bool,
}

#[derive(Debug, Default)]
pub struct ScanResult {
    pub kvs: Vec<KeyValue>,
    /// The number of live keys in the range at the revision.
    pub count: usize,
}

/// Reads versions through a RocksDB snapshot (or the live DB).
pub struct MvccReader<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    snapshot: Option<&'a rocksdb::Snapshot<'a>>,
}

impl<'a> MvccReader<'a> {
    pub fn new(db: &'a DB, cf: &'a ColumnFamily, snapshot: Option<&'a rocksdb::Snapshot<'a>>) -> Self {
        MvccReader { db, cf, snapshot }
    }

    fn iter(&self, lower: Vec<u8>, upper: Option<Vec<u8>>) -> DBRawIteratorWithThreadMode<'a, DB> {
        let mut ro = ReadOptions::default();
        if let Some(s) = self.snapshot {
            ro.set_snapshot(s);
        }
        ro.set_iterate_lower_bound(lower);
        if let Some(u) = upper {
            ro.set_iterate_upper_bound(u);
        }
        self.db.raw_iterator_cf_opt(self.cf, ro)
    }

    /// The newest version of `key` at or below `revision`; `None` if the key
    /// did not exist or was deleted then.
    pub fn get(&self, key: &[u8], revision: u64) -> Result<Option<KeyValue>> {
        let prefix = keys::key_prefix(key);
        let mut upper = prefix.clone();
        upper.extend_from_slice(&[0xFF; 9]);
        let mut it = self.iter(prefix, Some(upper));
        it.seek(keys::encode(key, revision));
        if !it.valid() {
            it.status()?;
            return Ok(None);
        }
        decode_value(key, it.value().expect("valid iterator"))
    }

    /// Live keys in `[start, end)` at `revision`, in key order. `end = None`
    /// means to the end of the keyspace.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, revision: u64, opts: ScanOptions) -> Result<ScanResult> {
        let mut out = ScanResult::default();
        self.visit_live(start, end, revision, |user_key, value| {
            out.count += 1;
            if !opts.count_only && (opts.limit == 0 || out.kvs.len() < opts.limit) {
                if let Some(kv) = decode_value(user_key, value)? {
                    out.kvs.push(kv);
                }
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Calls `f(user key, stored value)` for the version at or below
    /// `revision` of every live key in `[start, end)`, in key order, while
    /// `f` answers true.
    pub fn visit_live(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        revision: u64,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut it = self.iter(keys::key_prefix(start), end.map(keys::key_prefix));
        it.seek_to_first();
        let mut current: Option<Vec<u8>> = None; // escaped user part already decided
        while it.valid() {
            let k = it.key().expect("valid iterator");
            let user = keys::user_part(k);
            if current.as_deref() == Some(user) {
                it.next();
                continue;
            }
            let (user_key, rev) = keys::decode(k).ok_or_else(|| Error::Storage("corrupt mvcc key".into()))?;
            if rev > revision {
                // Newer than the read: jump to this key's newest version <= revision.
                it.seek(keys::encode(&user_key, revision));
                continue;
            }
            current = Some(user.to_vec());
            let value = it.value().expect("valid iterator");
            if value.first() != Some(&TAG_TOMBSTONE) && !f(&user_key, value)? {
                return Ok(());
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// The live keys of an etcd key/end pair (see
    /// [`range_end`](super::eval::range_end)) at `revision`.
    pub fn read_at(&self, key: &[u8], end: Option<Option<Vec<u8>>>, revision: u64) -> Result<Vec<KeyValue>> {
        match end {
            None => Ok(self.get(key, revision)?.into_iter().collect()),
            Some(end) => Ok(self.scan(key, end.as_deref(), revision, ScanOptions::default())?.kvs),
        }
    }

    /// How many keys have a version (live, or deleted and not compacted
    /// yet: etcd's key index). Reads every version.
    pub fn count_keys(&self) -> Result<u64> {
        let mut it = self.iter(Vec::new(), None);
        it.seek_to_first();
        let (mut count, mut last) = (0, Vec::new());
        while it.valid() {
            let user = keys::user_part(it.key().expect("valid iterator"));
            if count == 0 || user != last.as_slice() {
                count += 1;
                last.clear();
                last.extend_from_slice(user);
            }
            it.next();
        }
        it.status()?;
        Ok(count)
    }

    /// A hash of every version at or below `revision` (keys and values as
    /// stored): equal on stores with the same history, stable across
    /// restarts. The first 4 bytes of a SHA-256.
    pub fn hash(&self, revision: u64) -> Result<u32> {
        use sha2::Digest;
        let mut it = self.iter(Vec::new(), None);
        it.seek_to_first();
        let mut h = sha2::Sha256::new();
        while it.valid() {
            let k = it.key().expect("valid iterator");
            let rev = u64::MAX - u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
            if rev <= revision {
                let v = it.value().expect("valid iterator");
                h.update((k.len() as u32).to_be_bytes());
                h.update(k);
                h.update((v.len() as u32).to_be_bytes());
                h.update(v);
            }
            it.next();
        }
        it.status()?;
        let digest = h.finalize();
        Ok(u32::from_be_bytes(digest[..4].try_into().expect("4 bytes")))
    }

    /// Adds to `wb` the deletes that compact `[start, end)` at `revision`:
    /// for every key, all versions below the newest one at or below
    /// `revision` go, and that one too when it is a tombstone. Reads at or
    /// above `revision` are unaffected.
    pub fn compact(&self, start: &[u8], end: Option<&[u8]>, revision: u64, wb: &mut WriteBatch) -> Result<usize> {
        let mut it = self.iter(keys::key_prefix(start), end.map(keys::key_prefix));
        it.seek_to_first();
        let mut kept_for: Option<Vec<u8>> = None;
        let mut removed = 0;
        while it.valid() {
            let k = it.key().expect("valid iterator");
            let user = keys::user_part(k);
            let rev = u64::MAX - u64::from_be_bytes(k[k.len() - 8..].try_into().expect("8 bytes"));
            if rev > revision {
                it.next();
                continue;
            }
            if kept_for.as_deref() == Some(user) {
                wb.delete_cf(self.cf, k);
                removed += 1;
            } else {
                kept_for = Some(user.to_vec());
                if it.value() == Some(&[TAG_TOMBSTONE][..]) {
                    wb.delete_cf(self.cf, k);
                    removed += 1;
                }
            }
            it.next();
        }
        it.status()?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;

    #[test]
    fn count_keys_counts_keys_with_any_version() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let cf = engine.mvcc();
        let kv = |k: &[u8]| KeyValue { key: k.to_vec(), value: b"v".to_vec(), ..Default::default() };
        let reader = MvccReader::new(&engine.db, cf, None);
        assert_eq!(reader.count_keys().unwrap(), 0);
        let mut wb = WriteBatch::default();
        // "a" twice, "a\0" (prefixed by "a"), "b" deleted: three keys.
        write_version(&mut wb, cf, b"a", 2, Some(&kv(b"a")));
        write_version(&mut wb, cf, b"a", 3, Some(&kv(b"a")));
        write_version(&mut wb, cf, b"a\0", 4, Some(&kv(b"a\0")));
        write_version(&mut wb, cf, b"b", 5, Some(&kv(b"b")));
        write_version(&mut wb, cf, b"b", 6, None);
        engine.write(wb, false).unwrap();
        assert_eq!(reader.count_keys().unwrap(), 3);
        // Compaction takes the deleted key out, as etcd's key index does.
        let mut wb = WriteBatch::default();
        reader.compact(b"", None, 6, &mut wb).unwrap();
        engine.write(wb, false).unwrap();
        assert_eq!(reader.count_keys().unwrap(), 2);
    }
}
