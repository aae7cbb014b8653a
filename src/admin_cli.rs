//! `tessera admin`: the operator's client of the Admin service. Tables for
//! people, `--json` for scripts.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::proto::tesserapb::admin_client::AdminClient;
use crate::proto::tesserapb::*;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Client endpoints of the cluster, host:port[,host:port...]; the first
    /// that answers is used.
    #[arg(long, global = true, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Print JSON (for scripts) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// For https:// endpoints (a bare host:port is dialed with TLS when one is given).
    #[command(flatten)]
    pub tls: crate::tls::client::ClientTlsArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List regions: id, range, epoch, peers, leader, lease, live keys and bytes.
    Regions,
    /// Split the region owning --at KEY at that key, or --region at its
    /// middle key. Several --at, or --keys-file, split at every key in one
    /// call: each region is cut at all of its keys by one raft command; keys
    /// that already start a region are skipped. (Not --key: that is the TLS
    /// client key, as in etcdctl.)
    Split {
        #[arg(long, value_name = "KEY", conflicts_with = "region", required_unless_present_any = ["region", "keys_file"])]
        at: Vec<String>,
        #[arg(long)]
        region: Option<u64>,
        /// A file of keys, one per line, sorted, without duplicates (`hex:`
        /// lines for binary keys; docs/design.md, "Bulk regions").
        #[arg(long, conflicts_with_all = ["region", "at"])]
        keys_file: Option<std::path::PathBuf>,
    },
    /// Merge region --right into its left neighbour --left (the result keeps left's id).
    Merge {
        #[arg(long)]
        left: u64,
        #[arg(long)]
        right: u64,
    },
    /// Move a region's leadership to the peer on store --to.
    TransferLeader {
        #[arg(long)]
        region: u64,
        #[arg(long)]
        to: u64,
    },
}

async fn connect(
    endpoints: &[String],
    tls: &crate::tls::client::ClientTlsArgs,
) -> Result<AdminClient<tonic::transport::Channel>> {
    let dialer = tls.dialer()?;
    let secure = tls.cacert.is_some() || tls.cert.is_some() || tls.insecure_skip_tls_verify;
    let mut last = None;
    for ep in endpoints {
        let url = match (ep.contains("://"), secure) {
            (true, _) => ep.clone(),
            (false, true) => format!("https://{ep}"),
            (false, false) => format!("http://{ep}"),
        };
        let connected = match tonic::transport::Endpoint::from_shared(url.clone()) {
            Ok(endpoint) => dialer.connect(endpoint).await.map_err(|e| crate::tls::client::error_chain(&e)),
            Err(e) => Err(e.to_string()),
        };
        match connected {
            // A store of 100,000 regions lists them in about 6 MB; a split
            // at as many keys sends about as much.
            Ok(c) => {
                let c = AdminClient::new(c);
                return Ok(c.max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX));
            }
            Err(e) => last = Some(format!("{url}: {e}")),
        }
    }
    bail!("no endpoint answered ({})", last.unwrap_or_default())
}

/// Runs one admin command and prints its result.
pub async fn run(args: AdminArgs) -> Result<()> {
    let mut client = connect(&args.endpoints, &args.tls).await?;
    let status = |s: tonic::Status| anyhow::anyhow!("{}", s.message());
    let out = match args.command {
        AdminCommand::Regions => {
            let regions = client.regions(RegionsRequest {}).await.map_err(status)?.into_inner().regions;
            if args.json {
                json_line(regions.iter().map(region_info_json).collect())
            } else {
                regions_table(&regions)
            }
        }
        AdminCommand::Split { at, keys_file, .. } if keys_file.is_some() || at.len() > 1 => {
            let keys = match keys_file {
                Some(path) => crate::region::split_keys::read_file(&path).map_err(anyhow::Error::msg)?,
                None => {
                    let mut keys: Vec<Vec<u8>> = at.into_iter().map(String::into_bytes).collect();
                    keys.sort();
                    keys.dedup();
                    keys
                }
            };
            let req = SplitRequest { keys, ..Default::default() };
            let resp = client.split(req).await.map_err(status)?.into_inner();
            bulk_split_text(&resp, args.json)
        }
        AdminCommand::Split { at, region, .. } => {
            let key = at.into_iter().next();
            let req = SplitRequest {
                key: key.map(String::into_bytes).unwrap_or_default(),
                region_id: region.unwrap_or(0),
                ..Default::default()
            };
            let resp = client.split(req).await.map_err(status)?.into_inner();
            let (left, right) = (resp.left.context("no left region")?, resp.right.context("no right region")?);
            if args.json {
                json_line(vec![region_json(&left), region_json(&right)].into())
            } else {
                format!("split: {}\n       {}\n", region_line(&left), region_line(&right))
            }
        }
        AdminCommand::Merge { left, right } => {
            let resp = client.merge(MergeRequest { left, right }).await.map_err(status)?.into_inner();
            let region = resp.region.context("no region")?;
            if args.json {
                json_line(region_json(&region))
            } else {
                format!("merged: {}\n", region_line(&region))
            }
        }
        AdminCommand::TransferLeader { region, to } => {
            let req = TransferLeaderRequest { region_id: region, to_store: to };
            let resp = client.transfer_leader(req).await.map_err(status)?.into_inner();
            let region = resp.region.context("no region")?;
            if args.json {
                json_line(region_json(&region))
            } else {
                format!("leader of region {} is on store {to}\n", region.id)
            }
        }
    };
    print!("{out}");
    Ok(())
}

/// What a split at many keys did, for people or (`--json`) scripts.
fn bulk_split_text(resp: &SplitResponse, json: bool) -> String {
    let (created, skipped, commands) = (resp.created, resp.skipped, resp.commands);
    if json {
        let region = |r: &Option<Region>| r.as_ref().map_or(Value::Null, region_json);
        return json_line(json!({
            "created": created,
            "skipped": skipped,
            "commands": commands,
            "first": region(&resp.left),
            "last": region(&resp.right),
        }));
    }
    let mut out = format!(
        "split: {created} regions created, {skipped} keys skipped (already a region's start), {commands} raft commands\n"
    );
    for (what, r) in [("first", &resp.left), ("last", &resp.right)] {
        if let Some(r) = r {
            let _ = writeln!(out, "       {what}: {}", region_line(r));
        }
    }
    out
}

fn key_text(key: &[u8], open_end: &str) -> String {
    if key.is_empty() {
        open_end.to_string()
    } else {
        String::from_utf8_lossy(key).into_owned()
    }
}

fn epoch_text(r: &Region) -> String {
    let e = r.epoch.unwrap_or_default();
    format!("{}/{}", e.version, e.conf_ver)
}

fn peers_text(r: &Region) -> String {
    r.peers.iter().map(|p| p.store_id.to_string()).collect::<Vec<_>>().join(",")
}

fn region_line(r: &Region) -> String {
    format!(
        "region {} [{}, {}) epoch {}",
        r.id,
        key_text(&r.start_key, "-inf"),
        key_text(&r.end_key, "+inf"),
        epoch_text(r)
    )
}

fn regions_table(regions: &[RegionInfo]) -> String {
    let mut rows = vec![["ID", "START", "END", "EPOCH", "PEERS", "LEADER", "LEASE", "KEYS", "BYTES"].map(String::from)];
    for info in regions {
        let Some(r) = &info.region else { continue };
        rows.push([
            r.id.to_string(),
            key_text(&r.start_key, "-inf"),
            key_text(&r.end_key, "+inf"),
            epoch_text(r) + if r.merging_into != 0 { " (merging)" } else { "" },
            peers_text(r),
            if info.leader_store == 0 { "-".into() } else { info.leader_store.to_string() },
            if info.lease_valid { "valid" } else { "-" }.into(),
            info.keys.to_string(),
            info.bytes.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..9).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `value` on one line.
fn json_line(value: Value) -> String {
    format!("{value}\n")
}

fn region_json(r: &Region) -> Value {
    let e = r.epoch.unwrap_or_default();
    let peers: Vec<Value> = r.peers.iter().map(|p| json!({"id": p.id, "store_id": p.store_id})).collect();
    json!({
        "id": r.id,
        "start_key": String::from_utf8_lossy(&r.start_key),
        "end_key": String::from_utf8_lossy(&r.end_key),
        "epoch": {"version": e.version, "conf_ver": e.conf_ver},
        "peers": peers,
        "merging_into": r.merging_into,
    })
}

fn region_info_json(info: &RegionInfo) -> Value {
    let mut v = region_json(&info.region.clone().unwrap_or_default());
    let fields = [
        ("leader", json!(info.leader_store)),
        ("lease_valid", json!(info.lease_valid)),
        ("keys", json!(info.keys)),
        ("bytes", json!(info.bytes)),
    ];
    if let Value::Object(m) = &mut v {
        m.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_escaped_and_shaped() {
        let r = Region {
            id: 3,
            start_key: b"m\"\\\n".to_vec(),
            epoch: Some(RegionEpoch { version: 2, conf_ver: 1 }),
            ..Default::default()
        };
        assert_eq!(
            json_line(region_json(&r)),
            "{\"id\":3,\"start_key\":\"m\\\"\\\\\\n\",\"end_key\":\"\",\"epoch\":{\"version\":2,\"conf_ver\":1},\"peers\":[],\"merging_into\":0}\n"
        );
    }
    /// The merge of TLS (whose `--key` is the client key, as in etcdctl)
    /// left `admin split --key` with two definitions of one flag: every
    /// split panicked in clap.
    #[test]
    fn admin_split_at_a_key_is_not_the_tls_key() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            admin: AdminArgs,
        }
        Cli::command().debug_assert();
        let args = ["admin", "split", "--at", "d", "--cacert", "ca.pem", "--cert", "c.pem", "--key", "k.pem"];
        let cli = Cli::try_parse_from(args).unwrap();
        assert_eq!(cli.admin.tls.key.as_deref(), Some(std::path::Path::new("k.pem")));
        match cli.admin.command {
            AdminCommand::Split { at, .. } => assert_eq!(at, ["d"]),
            other => panic!("{other:?}"),
        }
    }
}
