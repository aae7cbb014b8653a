//! The members of a fault run: real `tessera serve` (or etcd 3.4) processes
//! on loopback, each behind a peer proxy ([`super::proxy`]), that the
//! harness kills, pauses, restarts and cuts off. Dropping the cluster kills
//! every process (SIGCONT first, so a paused one dies too) and removes the
//! data dirs unless they are kept for a failed run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::TcpListener;

use super::proxy::{self, Links};
use crate::proto::etcdserverpb::kv_client::KvClient;

/// What members log: warnings, the store's life (leader store, snapshots,
/// compactions) and every revision taken out of flight other than by its
/// write applying, so that a failed run's logs show how a revision came to
/// count as resolved.
const MEMBER_LOG: &str = "warn,tessera=info,tessera::revisions=debug";
use crate::proto::etcdserverpb::RangeRequest;

/// What runs as a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This executable's `serve`, started with these split keys.
    Tessera { split_keys: Vec<String> },
    /// etcd at this path (Debian's etcd-server 3.4).
    Etcd(PathBuf),
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self {
            Target::Tessera { .. } => "tessera",
            Target::Etcd(_) => "etcd",
        }
    }
}

/// One member: its ports, data dir and process (None while killed).
pub struct Member {
    pub name: String,
    pub client_url: String,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub paused: bool,
}

pub struct Cluster {
    pub target: Target,
    pub members: Vec<Member>,
    pub links: Arc<Links>,
    initial_cluster: String,
    dir: tempfile::TempDir,
    keep: bool,
}

/// `n` distinct free ports: each stays bound until all are chosen (a port
/// released at once can be handed out again by the next bind: two members
/// of one run were given the same client port).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let held = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

impl Cluster {
    /// Starts `n` members and waits (bounded) until a write succeeds.
    pub async fn start(target: Target, n: usize) -> Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("tessera-faults-").tempdir()?;
        let links = Links::new(n);
        let mut proxies = Vec::new();
        let mut members = Vec::new();
        // The proxies' listeners first: they stay bound, so the members'
        // ports chosen next cannot be theirs.
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let ports = free_ports(2 * n)?;
        for (i, proxy) in listeners.into_iter().enumerate() {
            let (client, peer) = (ports[2 * i], ports[2 * i + 1]);
            let name = format!("n{}", i + 1);
            let data_dir = dir.path().join(&name);
            let log = dir.path().join(format!("{name}.log"));
            let client_url = format!("http://127.0.0.1:{client}");
            proxies.push((proxy.local_addr()?.port(), proxy));
            members.push(Member { name, client_url, peer_port: peer, data_dir, log, child: None, paused: false });
        }
        let initial_cluster = members
            .iter()
            .zip(&proxies)
            .map(|(m, (p, _))| format!("{}=http://127.0.0.1:{p}", m.name))
            .collect::<Vec<_>>()
            .join(",");
        for (i, (_, listener)) in proxies.into_iter().enumerate() {
            let upstream: SocketAddr = format!("127.0.0.1:{}", members[i].peer_port).parse()?;
            proxy::spawn(links.clone(), i, listener, upstream);
        }
        let mut cluster = Cluster { target, members, links, initial_cluster, dir, keep: false };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        cluster.wait_writable(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let advertised = self.initial_cluster.split(',').nth(i).and_then(|e| e.split_once('=')).map(|(_, u)| u);
        let advertised = advertised.context("member missing from the initial cluster")?.to_string();
        let listen_peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = match &self.target {
            Target::Tessera { split_keys } => {
                let mut c = Command::new(std::env::current_exe()?);
                c.args(["serve", "--log-level", MEMBER_LOG, "--auto-split", "false"]);
                if !split_keys.is_empty() {
                    c.args(["--initial-split-keys", &split_keys.join(",")]);
                }
                c
            }
            Target::Etcd(bin) => {
                let mut c = Command::new(bin);
                for (k, _) in std::env::vars() {
                    if k.starts_with("ETCD") {
                        c.env_remove(k);
                    }
                }
                c.args(["--advertise-client-urls", &m.client_url, "--initial-cluster-token", "faults"]);
                c
            }
        };
        cmd.args(["--name", &m.name, "--data-dir"]).arg(&m.data_dir);
        cmd.args(["--listen-client-urls", &m.client_url, "--listen-peer-urls", &listen_peer]);
        cmd.args(["--initial-advertise-peer-urls", &advertised, "--initial-cluster", &self.initial_cluster]);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&m.log)?;
        cmd.stdout(log.try_clone()?).stderr(log).stdin(Stdio::null());
        let child = cmd.spawn().with_context(|| format!("starting member {}", m.name))?;
        self.links.set_pid(i, Some(child.id()));
        let m = &mut self.members[i];
        m.child = Some(child);
        m.paused = false;
        Ok(())
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) {
        let m = &mut self.members[i];
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        m.paused = false;
        self.links.set_pid(i, None);
    }

    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.members[i].child.is_none() {
            self.spawn(i)?;
        }
        Ok(())
    }

    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.members[i].paused = true;
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.members[i].paused = false;
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = &self.members[i].child {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Whether member `i` runs (not killed, not paused).
    pub fn up(&self, i: usize) -> bool {
        self.members[i].child.is_some() && !self.members[i].paused
    }

    /// Whether a member exited by itself (a crash): its name and log tail.
    pub fn crashed(&mut self) -> Option<String> {
        for m in &mut self.members {
            if let Some(c) = &mut m.child {
                if let Ok(Some(status)) = c.try_wait() {
                    let tail = log_tail(&m.log, 4000);
                    return Some(format!("member {} exited ({status}):\n{tail}", m.name));
                }
            }
        }
        None
    }

    /// Ends every fault: resumes paused members, restarts killed ones, heals links.
    pub fn heal_all(&mut self) -> Result<()> {
        self.links.heal();
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.resume(i);
            }
            self.restart(i)?;
        }
        Ok(())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// Keeps the data dirs and logs (a failed run); returns where they are.
    pub fn keep(&mut self) -> PathBuf {
        self.keep = true;
        self.dir.path().to_path_buf()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until a put through some member succeeds.
    pub async fn wait_writable(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            for url in self.endpoints() {
                if probe(&url).await {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("no member served a read within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn probe(url: &str) -> bool {
    let connect = tokio::time::timeout(Duration::from_secs(1), KvClient::connect(url.to_string()));
    let Ok(Ok(mut kv)) = connect.await else { return false };
    let req = RangeRequest { key: b"probe".to_vec(), ..Default::default() };
    matches!(tokio::time::timeout(Duration::from_secs(2), kv.range(req)).await, Ok(Ok(_)))
}

pub fn log_tail(path: &Path, bytes: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&text[text.len().saturating_sub(bytes)..]).into_owned()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.links.shutdown();
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill(i);
        }
        if self.keep {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            let _ = dir.keep();
        }
    }
}
