//! The page format: files written by [`super::writer`] read back by
//! [`super::reader`] (one page, many pages and levels, values spanning
//! overflow pages), damaged meta pages, and the checksums' known values.
//! etcd's own reading of these files is tested end to end in
//! tests/etcd_snapshot.rs.

use std::io::Cursor;

use super::bolt::{self, Crc32c, PAGE_SIZE};
use super::etcd::{self, Revision};
use super::reader::BoltFile;
use super::writer::BoltWriter;
use super::SnapshotError;

type Bucket = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

fn write(buckets: &[Bucket]) -> (tempfile::TempDir, std::path::PathBuf, u64) {
    let mut w = BoltWriter::new(Cursor::new(Vec::new())).unwrap();
    for (name, entries) in buckets {
        w.bucket(name, entries.iter().cloned().map(Ok)).unwrap();
    }
    let (out, len) = w.finish().unwrap();
    let bytes = out.into_inner();
    assert_eq!(bytes.len() as u64, len);
    assert_eq!(len % PAGE_SIZE as u64, 0, "whole pages");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, &bytes).unwrap();
    (dir, path, len)
}

fn read_all(db: &BoltFile) -> Vec<Bucket> {
    let mut out = Vec::new();
    for (name, root) in db.buckets().unwrap() {
        let mut entries = Vec::new();
        db.for_each(&root, &mut |e| {
            entries.push((e.key.to_vec(), e.value.to_vec()));
            Ok(())
        })
        .unwrap();
        out.push((name, entries));
    }
    out
}

fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

#[test]
fn buckets_round_trip_in_one_page_each() {
    let buckets: Vec<Bucket> = vec![
        (b"alarm".to_vec(), vec![]),
        (b"key".to_vec(), vec![kv("a", "1"), kv("b", ""), kv("c", "three")]),
        (b"meta".to_vec(), vec![kv("consistent_index", "12345678")]),
    ];
    let (_dir, path, len) = write(&buckets);
    let db = BoltFile::open(&path, len).unwrap();
    assert_eq!(read_all(&db), buckets);
    // 3 meta/freelist pages, a leaf per bucket, the root bucket's leaf.
    assert_eq!(db.meta.pgid, 3 + 3 + 1);
    let s = etcd::status(&db).unwrap();
    assert_eq!((s.total_key, s.total_size), (4, 7 * PAGE_SIZE as u64));
}

#[test]
fn many_keys_span_many_pages_and_branch_levels() {
    // Seeded by construction: the values derive from the index.
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..60_000u64)
        .map(|i| {
            (
                Revision { main: i + 1, sub: i % 3, tombstone: i % 7 == 0 }.encode(),
                vec![(i % 251) as u8; (i % 90) as usize],
            )
        })
        .collect();
    let buckets = vec![(b"key".to_vec(), entries)];
    let (_dir, path, len) = write(&buckets);
    let db = BoltFile::open(&path, len).unwrap();
    assert!(db.meta.pgid > 1000, "many leaves: {}", db.meta.pgid);
    assert_eq!(read_all(&db), buckets);
    let s = etcd::status(&db).unwrap();
    assert_eq!((s.revision, s.total_key), (60_000, 60_000));
}

#[test]
fn large_values_overflow_their_page() {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = [10usize, 5_000, 4_070, 100_000, 3, 1 << 20, 64]
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("k{i:02}").into_bytes(), (0..*n).map(|j| (j * 31 + i) as u8).collect()))
        .collect();
    let buckets = vec![(b"key".to_vec(), entries)];
    let (_dir, path, len) = write(&buckets);
    let db = BoltFile::open(&path, len).unwrap();
    assert_eq!(read_all(&db), buckets);
    assert!(len > (1 << 20) + 100_000, "the values are all in the file: {len}");
}

#[test]
fn a_damaged_meta_page_falls_back_to_the_other_and_both_damaged_is_an_error() {
    let (_dir, path, len) = write(&[(b"key".to_vec(), vec![kv("a", "1")])]);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[PAGE_SIZE + 16 + 40] ^= 0xFF; // meta 1 (the newer): its high-water mark
    std::fs::write(&path, &bytes).unwrap();
    let db = BoltFile::open(&path, len).unwrap();
    assert_eq!(db.meta.txid, 0, "meta 0 is used");
    assert_eq!(read_all(&db)[0].1, vec![kv("a", "1")]);
    bytes[16 + 40] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    let err = BoltFile::open(&path, len).err().expect("both metas are bad");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn a_truncated_file_or_a_page_pointing_outside_is_an_error_not_a_panic() {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = (0..2_000u32).map(|i| (i.to_be_bytes().to_vec(), vec![7; 40])).collect();
    let (_dir, path, len) = write(&[(b"key".to_vec(), entries)]);
    assert!(matches!(BoltFile::open(&path, len - PAGE_SIZE as u64), Err(SnapshotError::Format(_))));
    let mut bytes = std::fs::read(&path).unwrap();
    let root = BoltFile::open(&path, len).unwrap().meta.root;
    // Point the root bucket at a page past the end.
    let at = root as usize * PAGE_SIZE + 16 + 16 + 3; // its one element's value, after the key "key"
    bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let db = BoltFile::open(&path, len).unwrap();
    let err = db.buckets().and_then(|b| db.for_each(&b[0].1, &mut |_| Ok(()))).unwrap_err();
    assert!(err.to_string().contains("outside"), "{err}");
}

#[test]
fn the_buckets_written_are_in_name_order() {
    assert!(etcd::WRITTEN.windows(2).all(|w| w[0] < w[1]), "{:?}", etcd::WRITTEN);
}

#[test]
fn the_writer_refuses_keys_or_buckets_out_of_order() {
    let mut w = BoltWriter::new(Cursor::new(Vec::new())).unwrap();
    assert!(w.bucket(b"key", [kv("b", ""), kv("a", "")].into_iter().map(Ok)).is_err());
    let mut w = BoltWriter::new(Cursor::new(Vec::new())).unwrap();
    w.bucket(b"meta", std::iter::empty()).unwrap();
    assert!(w.bucket(b"key", std::iter::empty()).is_err());
}

#[test]
fn checksums_and_revisions_match_their_definitions() {
    let mut c = Crc32c::new();
    c.update(b"123456789");
    assert_eq!(c.finish(), 0xE306_9283, "CRC-32C check value");
    assert_eq!(bolt::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(bolt::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    let r = Revision { main: 0x0102, sub: 3, tombstone: true };
    let k = r.encode();
    assert_eq!(k, [0, 0, 0, 0, 0, 0, 1, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 3, b't']);
    assert_eq!(Revision::decode(&k), Some(r));
    assert_eq!(Revision::decode(&k[..17]), Some(Revision { tombstone: false, ..r }));
    assert_eq!(Revision::decode(b"not a revision"), None);
}
