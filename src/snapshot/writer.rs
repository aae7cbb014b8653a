//! Writes a bbolt file ([`super::bolt`]) in one pass: each bucket's entries
//! arrive in key order and fill leaf pages as they come (a value too large
//! for one page gets a page of its own with overflow pages); the branch
//! levels above them follow, then the root bucket, and at the end the
//! freelist (empty: every page is in use) and the two meta pages.
//!
//! Layout: pages 0 and 1 meta, 2 the freelist, tree pages from 3 on. Every
//! bucket gets pages of its own (none inline), which bbolt reads as it
//! reads its own.

use std::io::{Seek, SeekFrom, Write};

use super::bolt::{self, Meta, PageHeader, ELEMENT, PAGE_HEADER, PAGE_SIZE};
use super::SnapshotError;

const FIRST_TREE_PAGE: u64 = 3;
const FREELIST: u64 = 2;

pub struct BoltWriter<W: Write + Seek> {
    out: W,
    next: u64,
    buckets: Vec<(Vec<u8>, u64)>,
}

/// One node's elements as they fill up: keys, and per element either a
/// leaf's (flags, value) or a branch's child.
#[derive(Default)]
struct Node {
    elements: Vec<(Vec<u8>, Elem)>,
    bytes: usize,
}

enum Elem {
    Leaf { flags: u32, value: Vec<u8> },
    Branch { child: u64 },
}

impl Node {
    fn size_with(&self, key: &[u8], value_len: usize) -> usize {
        PAGE_HEADER + (self.elements.len() + 1) * ELEMENT + self.bytes + key.len() + value_len
    }
    fn push(&mut self, key: Vec<u8>, e: Elem) {
        self.bytes += key.len() + if let Elem::Leaf { value, .. } = &e { value.len() } else { 0 };
        self.elements.push((key, e));
    }
}

impl<W: Write + Seek> BoltWriter<W> {
    pub fn new(mut out: W) -> Result<BoltWriter<W>, SnapshotError> {
        out.seek(SeekFrom::Start(FIRST_TREE_PAGE * PAGE_SIZE as u64)).map_err(SnapshotError::write)?;
        Ok(BoltWriter { out, next: FIRST_TREE_PAGE, buckets: Vec::new() })
    }

    /// Adds a top-level bucket named `name` (after every bucket before it,
    /// in name order) holding `entries`, which must come in key order.
    pub fn bucket<I>(&mut self, name: &[u8], entries: I) -> Result<(), SnapshotError>
    where
        I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>), SnapshotError>>,
    {
        if self.buckets.last().is_some_and(|(last, _)| last.as_slice() >= name) {
            return Err(SnapshotError::Format("buckets out of order".into()));
        }
        let root = self.tree(entries.into_iter().map(|e| e.map(|(k, v)| (k, 0, v))))?;
        self.buckets.push((name.to_vec(), root));
        Ok(())
    }

    /// Writes a tree of leaf entries `(key, flags, value)`; its root page.
    fn tree<I>(&mut self, entries: I) -> Result<u64, SnapshotError>
    where
        I: Iterator<Item = Result<(Vec<u8>, u32, Vec<u8>), SnapshotError>>,
    {
        let mut level: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut node = Node::default();
        let mut last: Option<Vec<u8>> = None;
        for e in entries {
            let (key, flags, value) = e?;
            if last.as_ref().is_some_and(|l| l.as_slice() >= key.as_slice()) {
                return Err(SnapshotError::Format("keys out of order in a bucket".into()));
            }
            last = Some(key.clone());
            if !node.elements.is_empty() && node.size_with(&key, value.len()) > PAGE_SIZE {
                level.push(self.flush(&mut node, bolt::LEAF_PAGE)?);
            }
            node.push(key, Elem::Leaf { flags, value });
        }
        if !node.elements.is_empty() || level.is_empty() {
            level.push(self.flush(&mut node, bolt::LEAF_PAGE)?);
        }
        while level.len() > 1 {
            let mut up = Vec::new();
            for (key, child) in level {
                if !node.elements.is_empty() && node.size_with(&key, 0) > PAGE_SIZE {
                    up.push(self.flush(&mut node, bolt::BRANCH_PAGE)?);
                }
                node.push(key, Elem::Branch { child });
            }
            up.push(self.flush(&mut node, bolt::BRANCH_PAGE)?);
            level = up;
        }
        Ok(level[0].1)
    }

    /// Writes `node` as the next page(s); its first key and page id.
    fn flush(&mut self, node: &mut Node, flags: u16) -> Result<(Vec<u8>, u64), SnapshotError> {
        let node = std::mem::take(node);
        let size = PAGE_HEADER + node.elements.len() * ELEMENT + node.bytes;
        let pages = size.div_ceil(PAGE_SIZE).max(1);
        let mut buf = vec![0u8; pages * PAGE_SIZE];
        let id = self.next;
        let count = u16::try_from(node.elements.len()).map_err(|_| SnapshotError::Format("page too full".into()))?;
        PageHeader { id, flags, count, overflow: (pages - 1) as u32 }.encode(&mut buf);
        let mut data = PAGE_HEADER + node.elements.len() * ELEMENT;
        for (i, (key, e)) in node.elements.iter().enumerate() {
            let at = PAGE_HEADER + i * ELEMENT;
            let pos = (data - at) as u32;
            match e {
                Elem::Leaf { flags, value } => {
                    let fields = [*flags, pos, key.len() as u32, value.len() as u32];
                    for (j, f) in fields.iter().enumerate() {
                        buf[at + 4 * j..at + 4 * j + 4].copy_from_slice(&f.to_le_bytes());
                    }
                    buf[data..data + key.len()].copy_from_slice(key);
                    buf[data + key.len()..data + key.len() + value.len()].copy_from_slice(value);
                    data += key.len() + value.len();
                }
                Elem::Branch { child } => {
                    buf[at..at + 4].copy_from_slice(&pos.to_le_bytes());
                    buf[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
                    buf[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
                    buf[data..data + key.len()].copy_from_slice(key);
                    data += key.len();
                }
            }
        }
        self.out.write_all(&buf).map_err(SnapshotError::write)?;
        self.next += pages as u64;
        let first = node.elements.into_iter().next().map(|(k, _)| k).unwrap_or_default();
        Ok((first, id))
    }

    /// Writes the root bucket, the freelist and the meta pages; the writer
    /// back and the file's size in bytes.
    pub fn finish(mut self) -> Result<(W, u64), SnapshotError> {
        let buckets = std::mem::take(&mut self.buckets);
        let entries =
            buckets.into_iter().map(|(name, root)| Ok((name, bolt::BUCKET_LEAF, bolt::bucket_header(root).to_vec())));
        let root = self.tree(entries)?;
        let pgid = self.next;
        let mut page = vec![0u8; PAGE_SIZE];
        PageHeader { id: FREELIST, flags: bolt::FREELIST_PAGE, count: 0, overflow: 0 }.encode(&mut page);
        self.out.seek(SeekFrom::Start(FREELIST * PAGE_SIZE as u64)).map_err(SnapshotError::write)?;
        self.out.write_all(&page).map_err(SnapshotError::write)?;
        for txid in [0u64, 1] {
            let meta =
                Meta { page_size: PAGE_SIZE as u32, flags: 0, root, root_sequence: 0, freelist: FREELIST, pgid, txid };
            let mut page = vec![0u8; PAGE_SIZE];
            PageHeader { id: txid, flags: bolt::META_PAGE, count: 0, overflow: 0 }.encode(&mut page);
            page[PAGE_HEADER..PAGE_HEADER + bolt::META_LEN].copy_from_slice(&meta.encode());
            self.out.seek(SeekFrom::Start(txid * PAGE_SIZE as u64)).map_err(SnapshotError::write)?;
            self.out.write_all(&page).map_err(SnapshotError::write)?;
        }
        self.out.seek(SeekFrom::Start(pgid * PAGE_SIZE as u64)).map_err(SnapshotError::write)?;
        self.out.flush().map_err(SnapshotError::write)?;
        Ok((self.out, pgid * PAGE_SIZE as u64))
    }
}
