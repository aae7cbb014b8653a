//! Snapshots in etcd's format: what Maintenance.Snapshot streams (`etcdctl
//! snapshot save`, `tessera snapshot save`), what `etcdctl snapshot
//! status` and etcd's restore read, and what `tessera snapshot restore`
//! turns into a new data dir, from tessera or from etcd.
//!
//! An etcd snapshot is etcd's backend database, a bbolt file, followed (when
//! it was streamed) by the SHA-256 of the file. The parts:
//!
//! - [`bolt`]: bbolt's page layout; [`reader`] and [`writer`] read and
//!   write a file of it (our own code, written from the format);
//! - [`etcd`]: etcd's buckets and encodings, and `snapshot status`;
//! - [`save`]: a store's history at one revision into such a file;
//! - [`restore`]: such a file into a new data dir.
//!
//! What carries over and what does not: docs/ops.md, "Snapshots".

use std::path::Path;

pub mod bolt;
pub mod cli;
pub mod etcd;
pub mod reader;
mod restore;
mod save;
#[cfg(test)]
mod tests;
pub mod writer;

pub use etcd::Status;
pub use restore::{open_checked, restore, RestoreOptions, Restored};
pub use save::save;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(String),
    /// The file is not a whole etcd snapshot.
    #[error("not a valid etcd snapshot: {0}")]
    Format(String),
    /// A valid snapshot holding something tessera cannot take.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Store(String),
}

impl SnapshotError {
    pub fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> SnapshotError {
        SnapshotError::Io(format!("{what} {}: {e}", path.display()))
    }
    pub fn write(e: std::io::Error) -> SnapshotError {
        SnapshotError::Io(format!("writing the snapshot: {e}"))
    }
}

impl From<crate::error::Error> for SnapshotError {
    fn from(e: crate::error::Error) -> Self {
        SnapshotError::Store(e.to_string())
    }
}

impl From<rocksdb::Error> for SnapshotError {
    fn from(e: rocksdb::Error) -> Self {
        SnapshotError::Store(e.into_string())
    }
}

impl From<SnapshotError> for crate::error::Error {
    fn from(e: SnapshotError) -> Self {
        crate::error::Error::Storage(e.to_string())
    }
}

/// `etcdctl snapshot status` of the file at `path` (its trailer, if any,
/// is not checked, as etcdctl does not).
pub fn status(path: &Path) -> Result<Status, SnapshotError> {
    let len = std::fs::metadata(path).map_err(|e| SnapshotError::io("reading", path, e))?.len();
    let db = reader::BoltFile::open(path, if len % 512 == 32 { len - 32 } else { len })?;
    etcd::status(&db)
}
