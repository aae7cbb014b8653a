//! Store snapshots: what Maintenance.Snapshot streams (`etcdctl snapshot
//! save`) and `tessera snapshot restore` turns back into a data dir.
//!
//! A snapshot is a RocksDB checkpoint of the whole store (every column
//! family: raft logs, region metadata, MVCC data, events, leases), taken at
//! one instant, packed into one file:
//!
//! ```text
//! "TSSNAP01"
//! per file:  u32 BE name length, name (UTF-8, no '/'), u64 BE length, bytes
//! end:       u32 BE 0, then zeros up to a multiple of 512 bytes
//! trailer:   SHA-256 of everything before it (32 bytes), as etcd appends
//! ```
//!
//! `etcdctl snapshot save` accepts a download only if its size is a
//! multiple of 512 plus 32 (how it recognizes etcd's trailer), hence the
//! padding.
//!
//! A restore verifies the trailer, then writes the files into an empty data
//! dir; the store starts from it as from its own data (same cluster id,
//! same revisions).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::engine::Engine;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"TSSNAP01";
const TRAILER: usize = 32;

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

/// A writer that hashes and counts what it writes.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    written: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing { inner, hash: Sha256::new(), written: 0 }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a snapshot of `engine` to `out` (a new file), using `scratch` (a
/// directory on the same filesystem as the data) for the checkpoint.
pub fn create(engine: &Engine, scratch: &Path, out: &Path) -> Result<u64> {
    let checkpoint = scratch.join(format!("checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&checkpoint);
    rocksdb::checkpoint::Checkpoint::new(&engine.db)?.create_checkpoint(&checkpoint)?;
    let result = pack(&checkpoint, out);
    let _ = std::fs::remove_dir_all(&checkpoint);
    result
}

fn pack(dir: &Path, out: &Path) -> Result<u64> {
    let file = File::create(out).map_err(|e| io("creating", out, e))?;
    let mut w = Hashing::new(BufWriter::new(file));
    let werr = |e| io("writing", out, e);
    w.write_all(MAGIC).map_err(werr)?;
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(dir).map_err(|e| io("reading", dir, e))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for path in names {
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| io("odd file name", &path, ""))?;
        let len = std::fs::metadata(&path).map_err(|e| io("reading", &path, e))?.len();
        w.write_all(&(name.len() as u32).to_be_bytes()).map_err(werr)?;
        w.write_all(name.as_bytes()).map_err(werr)?;
        w.write_all(&len.to_be_bytes()).map_err(werr)?;
        let mut f = File::open(&path).map_err(|e| io("reading", &path, e))?;
        let copied = std::io::copy(&mut f, &mut w).map_err(werr)?;
        if copied != len {
            return Err(io("a file changed while packed", &path, copied));
        }
    }
    w.write_all(&0u32.to_be_bytes()).map_err(werr)?;
    let pad = (512 - w.written % 512) % 512;
    w.write_all(&vec![0u8; pad as usize]).map_err(werr)?;
    let digest = w.hash.finalize();
    let mut inner = w.inner;
    inner.write_all(&digest).map_err(werr)?;
    let file = inner.into_inner().map_err(|e| io("writing", out, e.error()))?;
    file.sync_all().map_err(werr)?;
    Ok(file.metadata().map_err(werr)?.len())
}

/// Checks `snapshot`'s SHA-256 trailer and unpacks it into `data_dir`,
/// which must be empty or absent. Returns the number of files.
pub fn restore(snapshot: &Path, data_dir: &Path) -> Result<usize> {
    let total = std::fs::metadata(snapshot).map_err(|e| io("reading", snapshot, e))?.len();
    if total < (MAGIC.len() + TRAILER) as u64 {
        return Err(io("not a tessera snapshot (too short)", snapshot, total));
    }
    let body = total - TRAILER as u64;
    // Verify before writing anything.
    let mut sink = Hashing::new(std::io::sink());
    let mut r = BufReader::new(File::open(snapshot).map_err(|e| io("reading", snapshot, e))?);
    std::io::copy(&mut (&mut r).take(body), &mut sink).map_err(|e| io("reading", snapshot, e))?;
    let mut trailer = [0u8; TRAILER];
    r.read_exact(&mut trailer).map_err(|e| io("reading", snapshot, e))?;
    if sink.hash.finalize()[..] != trailer {
        return Err(io("snapshot hash mismatch (corrupt or truncated)", snapshot, ""));
    }
    if data_dir.exists() && std::fs::read_dir(data_dir).map_err(|e| io("reading", data_dir, e))?.next().is_some() {
        return Err(io("refusing to restore into a non-empty directory", data_dir, ""));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| io("creating", data_dir, e))?;

    let mut r = BufReader::new(File::open(snapshot).map_err(|e| io("reading", snapshot, e))?).take(body);
    let rerr = |e| io("reading", snapshot, e);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(rerr)?;
    if &magic != MAGIC {
        return Err(io("not a tessera snapshot", snapshot, ""));
    }
    let mut files = 0;
    loop {
        let mut len4 = [0u8; 4];
        r.read_exact(&mut len4).map_err(rerr)?;
        if len4 == [0; 4] {
            break; // the end; padding follows
        }
        let mut name = vec![0u8; u32::from_be_bytes(len4) as usize];
        r.read_exact(&mut name).map_err(rerr)?;
        let name = String::from_utf8(name).map_err(|e| io("corrupt file name in", snapshot, e))?;
        if name.contains('/') || name == ".." || name.is_empty() {
            return Err(io("corrupt file name in", snapshot, name));
        }
        let mut len8 = [0u8; 8];
        r.read_exact(&mut len8).map_err(rerr)?;
        let len = u64::from_be_bytes(len8);
        let path = data_dir.join(&name);
        let mut out = File::create(&path).map_err(|e| io("creating", &path, e))?;
        let copied = std::io::copy(&mut (&mut r).take(len), &mut out).map_err(|e| io("writing", &path, e))?;
        if copied != len {
            return Err(io("truncated snapshot", snapshot, name));
        }
        out.sync_all().map_err(|e| io("writing", &path, e))?;
        files += 1;
    }
    Ok(files)
}
