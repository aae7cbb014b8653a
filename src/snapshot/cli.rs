//! `tessera snapshot save|restore|status`, with etcdctl's names for what
//! they share.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use sha2::{Digest, Sha256};

use super::{RestoreOptions, SnapshotError};
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::SnapshotRequest;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a snapshot from a member (etcd or tessera) into FILE, in
    /// etcd's format, as `etcdctl snapshot save` does.
    Save {
        file: PathBuf,
        /// The member's client endpoint (one: a snapshot is one member's).
        #[arg(long, default_value = "127.0.0.1:2379")]
        endpoints: String,
    },
    /// Restore an etcd snapshot (from etcd or tessera) into a new data dir
    /// of one member; `tessera serve --data-dir DIR --name NAME` then
    /// starts from it with the snapshot's keys, revisions and leases.
    Restore {
        /// The file `etcdctl snapshot save` or `tessera snapshot save` wrote.
        file: PathBuf,
        /// The data dir to create (must be absent or empty).
        #[arg(long, default_value = "tessera-data")]
        data_dir: PathBuf,
        /// The member's name (give `tessera serve` the same).
        #[arg(long, default_value = "default")]
        name: String,
        /// etcd's flag; only a cluster of this one member can be restored.
        #[arg(long)]
        initial_cluster: Option<String>,
        /// Restore a database without etcd's SHA-256 trailer (a copied
        /// member/snap/db).
        #[arg(long)]
        skip_hash_check: bool,
        /// Keys at which the new store splits its keyspace into regions.
        #[arg(long, value_delimiter = ',')]
        initial_split_keys: Vec<String>,
    },
    /// Print a snapshot's hash, revision, total keys and size as `etcdctl
    /// snapshot status` does.
    Status {
        file: PathBuf,
        /// `table` or `json`.
        #[arg(long, short = 'w', default_value = "table")]
        write_out: String,
    },
}

pub async fn run(cmd: SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Save { file, endpoints } => {
            let size = save(&endpoints, &file).await?;
            println!("Snapshot saved at {} ({size} bytes)", file.display());
        }
        SnapshotCommand::Restore { file, data_dir, name, initial_cluster, skip_hash_check, initial_split_keys } => {
            check_single_member(initial_cluster.as_deref(), &name)?;
            let initial_split_keys =
                crate::region::split_keys::from_flags(&initial_split_keys, None).map_err(anyhow::Error::msg)?;
            let opts = RestoreOptions { name, initial_split_keys, skip_hash_check };
            let r = super::restore(&file, &data_dir, &opts)?;
            println!(
                "restored {} into {}: revision {}, compacted at {}, {} versions, {} leases",
                file.display(),
                data_dir.display(),
                r.revision,
                r.compacted,
                r.versions,
                r.leases
            );
            if r.dropped_users + r.dropped_roles > 0 {
                println!(
                    "not restored: {} auth users and {} roles (tessera has no auth yet)",
                    r.dropped_users, r.dropped_roles
                );
            }
        }
        SnapshotCommand::Status { file, write_out } => {
            let s = super::status(&file)?;
            match write_out.as_str() {
                "json" => println!("{}", s.json()),
                "table" => print!("{}", table(&s)),
                other => bail!("unknown --write-out {other:?} (table or json)"),
            }
        }
    }
    Ok(())
}

/// etcd's restore builds the membership from `--initial-cluster`; tessera
/// restores one member and grows the cluster with `member add`.
fn check_single_member(initial_cluster: Option<&str>, name: &str) -> Result<()> {
    let Some(ic) = initial_cluster.filter(|s| !s.is_empty()) else { return Ok(()) };
    let names: Vec<&str> = ic.split(',').map(|m| m.split('=').next().unwrap_or("")).collect();
    if names != [name] {
        bail!(
            "restoring a cluster of several members is not supported: restore one member (--initial-cluster {name}=URL or none), start it, then add the others with etcdctl member add"
        );
    }
    Ok(())
}

fn table(s: &super::Status) -> String {
    let heads = ["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"];
    let cells =
        [format!("{:x}", s.hash), s.revision.to_string(), s.total_key.to_string(), format!("{} B", s.total_size)];
    let widths: Vec<usize> = heads.iter().zip(&cells).map(|(h, c)| h.len().max(c.len())).collect();
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    let row = |v: &[String]| -> String {
        v.iter().zip(&widths).map(|(c, w)| format!("| {c:>width$} ", width = *w)).collect::<String>() + "|\n"
    };
    let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    format!("{rule}{}{rule}{}{rule}", row(&heads), row(&cells))
}

/// Streams Maintenance.Snapshot into `file` (through `file.part`), checking
/// etcd's SHA-256 trailer; the file's size.
async fn save(endpoint: &str, file: &Path) -> Result<u64> {
    let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let mut client = MaintenanceClient::connect(url.clone()).await.with_context(|| format!("connecting to {url}"))?;
    let mut stream = client.snapshot(SnapshotRequest {}).await?.into_inner();
    let part = file.with_extension("part");
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?);
    let mut bytes: Vec<u8> = Vec::new(); // the last 32 bytes seen, and the hash of what came before
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(piece) = stream.message().await? {
        out.write_all(&piece.blob)?;
        size += piece.blob.len() as u64;
        bytes.extend_from_slice(&piece.blob);
        let keep = bytes.len().saturating_sub(32);
        hash.update(&bytes[..keep]);
        bytes.drain(..keep);
    }
    let file_out = out.into_inner().map_err(|e| e.into_error())?;
    file_out.sync_all()?;
    if size % 512 != 32 || hash.finalize()[..] != bytes[..] {
        let _ = std::fs::remove_file(&part);
        return Err(SnapshotError::Format("the downloaded snapshot's SHA-256 trailer does not match".into()).into());
    }
    std::fs::rename(&part, file)?;
    Ok(size)
}
