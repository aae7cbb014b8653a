//! bbolt's on-disk layout, as etcd's backend writes it: the page header,
//! the meta page and the elements of branch and leaf pages. [`super::reader`]
//! reads a file of it, [`super::writer`] writes one.
//!
//! A file is a sequence of pages of `page_size` bytes (4096 here). Every
//! page starts with a 16-byte header: `id u64, flags u16, count u16,
//! overflow u32` (little-endian, as everything in the file); a page with
//! `overflow = n` spans `n + 1` pages. Pages 0 and 1 are meta pages (the
//! one with a valid checksum and the higher txid counts), one page holds
//! the freelist, the rest are B+tree nodes:
//!
//! - a leaf element is `flags u32, pos u32, ksize u32, vsize u32`; `pos`
//!   is the distance from the element to its key, the value follows the
//!   key. Flag 0x01 marks a nested bucket: its value is a bucket header
//!   (`root pgid u64, sequence u64`), and with root 0 the bucket's one
//!   page follows inline.
//! - a branch element is `pos u32, ksize u32, pgid u64`: a child page and
//!   its first key.
//!
//! The meta page body is `magic u32, version u32, page_size u32, flags
//! u32, root bucket header (16), freelist pgid u64, high-water pgid u64,
//! txid u64, checksum u64`; the checksum is FNV-1a 64 of the bytes before
//! it.

use super::SnapshotError;

pub const PAGE_SIZE: usize = 4096;
pub const PAGE_HEADER: usize = 16;
/// Both element kinds are 16 bytes.
pub const ELEMENT: usize = 16;
pub const BUCKET_HEADER: usize = 16;

pub const BRANCH_PAGE: u16 = 0x01;
pub const LEAF_PAGE: u16 = 0x02;
pub const META_PAGE: u16 = 0x04;
pub const FREELIST_PAGE: u16 = 0x10;
/// A leaf element that is a nested bucket.
pub const BUCKET_LEAF: u32 = 0x01;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// The bytes of a meta page body the checksum covers.
const META_SUMMED: usize = 56;
pub const META_LEN: usize = META_SUMMED + 8;

pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    pub fn decode(b: &[u8]) -> PageHeader {
        PageHeader { id: u64_at(b, 0), flags: u16_at(b, 8), count: u16_at(b, 10), overflow: u32_at(b, 12) }
    }
    pub fn encode(&self, b: &mut [u8]) {
        put(b, 0, &self.id.to_le_bytes());
        put(b, 8, &self.flags.to_le_bytes());
        put(b, 10, &self.count.to_le_bytes());
        put(b, 12, &self.overflow.to_le_bytes());
    }
}

/// A bucket header: where its tree starts (0: inline) and its sequence.
pub fn bucket_header(root: u64) -> [u8; BUCKET_HEADER] {
    let mut b = [0u8; BUCKET_HEADER];
    put(&mut b, 0, &root.to_le_bytes());
    b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub flags: u32,
    /// The root bucket's root page.
    pub root: u64,
    pub root_sequence: u64,
    pub freelist: u64,
    /// The high-water mark: the number of pages the file uses.
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    pub fn encode(&self) -> [u8; META_LEN] {
        let mut b = [0u8; META_LEN];
        put(&mut b, 0, &MAGIC.to_le_bytes());
        put(&mut b, 4, &VERSION.to_le_bytes());
        put(&mut b, 8, &self.page_size.to_le_bytes());
        put(&mut b, 12, &self.flags.to_le_bytes());
        put(&mut b, 16, &self.root.to_le_bytes());
        put(&mut b, 24, &self.root_sequence.to_le_bytes());
        put(&mut b, 32, &self.freelist.to_le_bytes());
        put(&mut b, 40, &self.pgid.to_le_bytes());
        put(&mut b, 48, &self.txid.to_le_bytes());
        let sum = fnv1a64(&b[..META_SUMMED]);
        put(&mut b, META_SUMMED, &sum.to_le_bytes());
        b
    }

    /// A meta page body, if its magic, version and checksum hold.
    pub fn decode(b: &[u8]) -> Result<Meta, SnapshotError> {
        let bad = |why: &str| SnapshotError::Format(format!("meta page: {why}"));
        if b.len() < META_LEN {
            return Err(bad("short"));
        }
        if u32_at(b, 0) != MAGIC {
            return Err(bad("not a bbolt file (bad magic)"));
        }
        if u32_at(b, 4) != VERSION {
            return Err(bad("unsupported bbolt version"));
        }
        if u64_at(b, META_SUMMED) != fnv1a64(&b[..META_SUMMED]) {
            return Err(bad("checksum mismatch"));
        }
        Ok(Meta {
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: u64_at(b, 16),
            root_sequence: u64_at(b, 24),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
        })
    }
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// CRC-32C (Castagnoli), which `etcdctl snapshot status` hashes with.
pub struct Crc32c {
    table: [u32; 256],
    crc: u32,
}

impl Crc32c {
    pub fn new() -> Crc32c {
        let mut table = [0u32; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
            *slot = c;
        }
        Crc32c { table, crc: !0 }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.crc = self.table[((self.crc ^ b as u32) & 0xFF) as usize] ^ (self.crc >> 8);
        }
    }
    pub fn finish(&self) -> u32 {
        !self.crc
    }
}
