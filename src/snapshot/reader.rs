//! Reads a bbolt file ([`super::bolt`]): its buckets and their entries in
//! key order. Only what the tree reaches from the newest valid meta page is
//! read; the freelist is not needed for that and is ignored.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::bolt::{self, Meta, PageHeader, BUCKET_HEADER, ELEMENT, PAGE_HEADER};
use super::SnapshotError;

/// Deeper than any tree of a file under 2^64 bytes: a loop in a corrupt file.
const MAX_DEPTH: usize = 64;

pub struct BoltFile {
    file: File,
    /// The bytes that belong to the database (a trailer after them is not read).
    len: u64,
    page_size: u64,
    pub meta: Meta,
}

/// Where a bucket's tree is: a page, or its one page inline in its header.
#[derive(Debug, Clone)]
pub enum BucketRoot {
    Page(u64),
    Inline(Vec<u8>),
}

/// One leaf entry: a key and either a value or a nested bucket.
pub struct Entry<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub bucket: bool,
}

impl BoltFile {
    /// Opens the database in the first `len` bytes of `path`.
    pub fn open(path: &Path, len: u64) -> Result<BoltFile, SnapshotError> {
        let file = File::open(path).map_err(|e| SnapshotError::io("reading", path, e))?;
        let mut first = vec![0u8; PAGE_HEADER + bolt::META_LEN];
        read_exact_at(&file, &mut first, 0, len)?;
        let meta0 = Meta::decode(&first[PAGE_HEADER..]);
        // The second meta page sits one page further, at the size the first names
        // (or the default when the first is damaged).
        let page_size = meta0.as_ref().map_or(bolt::PAGE_SIZE as u64, |m| m.page_size as u64);
        let mut second = vec![0u8; PAGE_HEADER + bolt::META_LEN];
        let meta1 =
            read_exact_at(&file, &mut second, page_size, len).and_then(|_| Meta::decode(&second[PAGE_HEADER..]));
        let meta = match (meta0, meta1) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(m), Err(_)) | (Err(_), Ok(m)) => m,
            (Err(e), Err(_)) => return Err(e),
        };
        if meta.page_size < 512 || !meta.page_size.is_power_of_two() {
            return Err(SnapshotError::Format(format!("meta page: page size {}", meta.page_size)));
        }
        if meta.pgid * meta.page_size as u64 > len {
            return Err(SnapshotError::Format(format!(
                "truncated: the meta page names {} pages of {} bytes, the file has {len} bytes",
                meta.pgid, meta.page_size
            )));
        }
        Ok(BoltFile { file, len, page_size: meta.page_size as u64, meta })
    }

    /// The size of the database as bbolt counts it (the high-water mark).
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size
    }

    /// Page `id` with its overflow pages.
    fn page(&self, id: u64) -> Result<Vec<u8>, SnapshotError> {
        if id < 2 || id >= self.meta.pgid {
            return Err(SnapshotError::Format(format!("page {id} outside the file's {} pages", self.meta.pgid)));
        }
        let mut head = [0u8; PAGE_HEADER];
        read_exact_at(&self.file, &mut head, id * self.page_size, self.len)?;
        let h = PageHeader::decode(&head);
        if h.id != id {
            return Err(SnapshotError::Format(format!("page {id} says it is page {}", h.id)));
        }
        if id + h.overflow as u64 >= self.meta.pgid {
            return Err(SnapshotError::Format(format!("page {id} overflows past the end")));
        }
        let mut page = vec![0u8; ((h.overflow as u64 + 1) * self.page_size) as usize];
        read_exact_at(&self.file, &mut page, id * self.page_size, self.len)?;
        Ok(page)
    }

    /// The root bucket's entries: every top-level bucket.
    pub fn root(&self) -> BucketRoot {
        BucketRoot::Page(self.meta.root)
    }

    /// Calls `f` on every entry of the bucket at `root`, in key order.
    pub fn for_each(
        &self,
        root: &BucketRoot,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        match root {
            BucketRoot::Page(id) => self.walk(*id, 0, f),
            BucketRoot::Inline(page) => self.visit(page, 0, f),
        }
    }

    /// The top-level buckets, by name, in order.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, BucketRoot)>, SnapshotError> {
        let mut out = Vec::new();
        self.for_each(&self.root(), &mut |e| {
            if e.bucket {
                out.push((e.key.to_vec(), bucket_root(e.value)?));
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn walk(
        &self,
        id: u64,
        depth: usize,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        let page = self.page(id)?;
        self.visit(&page, depth, f)
    }

    fn visit(
        &self,
        page: &[u8],
        depth: usize,
        f: &mut dyn FnMut(Entry<'_>) -> Result<(), SnapshotError>,
    ) -> Result<(), SnapshotError> {
        if depth > MAX_DEPTH {
            return Err(SnapshotError::Format("the tree is deeper than any real one (a loop?)".into()));
        }
        let h = PageHeader::decode(page);
        let bad = |what: &str| SnapshotError::Format(format!("page {}: {what}", h.id));
        if PAGE_HEADER + h.count as usize * ELEMENT > page.len() {
            return Err(bad("more elements than fit"));
        }
        for i in 0..h.count as usize {
            let at = PAGE_HEADER + i * ELEMENT;
            match h.flags {
                bolt::LEAF_PAGE => {
                    let flags = bolt::u32_at(page, at);
                    let pos = at + bolt::u32_at(page, at + 4) as usize;
                    let (ksize, vsize) = (bolt::u32_at(page, at + 8) as usize, bolt::u32_at(page, at + 12) as usize);
                    let value_end = pos.checked_add(ksize + vsize).filter(|e| *e <= page.len());
                    let Some(end) = value_end else { return Err(bad("an element runs past the page")) };
                    let (key, value) = (&page[pos..pos + ksize], &page[pos + ksize..end]);
                    f(Entry { key, value, bucket: flags & bolt::BUCKET_LEAF != 0 })?;
                }
                bolt::BRANCH_PAGE => {
                    let child = bolt::u64_at(page, at + 8);
                    self.walk(child, depth + 1, f)?;
                }
                other => return Err(bad(&format!("not a tree page (flags {other:#x})"))),
            }
        }
        Ok(())
    }
}

/// A nested bucket's root, from its leaf value.
pub fn bucket_root(value: &[u8]) -> Result<BucketRoot, SnapshotError> {
    if value.len() < BUCKET_HEADER {
        return Err(SnapshotError::Format("a bucket header is short".into()));
    }
    match bolt::u64_at(value, 0) {
        0 if value.len() >= BUCKET_HEADER + PAGE_HEADER => Ok(BucketRoot::Inline(value[BUCKET_HEADER..].to_vec())),
        0 => Err(SnapshotError::Format("an inline bucket without its page".into())),
        id => Ok(BucketRoot::Page(id)),
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], at: u64, len: u64) -> Result<(), SnapshotError> {
    if at + buf.len() as u64 > len {
        return Err(SnapshotError::Format(format!("a page at byte {at} lies past the end ({len} bytes)")));
    }
    file.read_exact_at(buf, at).map_err(|e| SnapshotError::Format(format!("reading at byte {at}: {e}")))
}
