//! Peer-link proxies: every member's advertised peer URL is a proxy of the
//! harness in front of its real peer listener, so the harness can cut the
//! link between any two members in either direction.
//!
//! A proxy learns which member opened a connection from the kernel: the
//! connecting socket's inode (from /proc/net/tcp, by its port) is one of
//! that member process's file descriptors. A cut direction stops moving
//! bytes (they wait in the socket buffers, as packets do on a dead link,
//! and flow again when the cut heals); a connection opened during a cut
//! waits before reaching its member. Nothing is left behind: the proxies
//! live in the harness process and end with [`Links::shutdown`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Which directed member pairs are cut, and the member processes' pids.
#[derive(Default)]
pub struct Links {
    cut: Mutex<HashSet<(usize, usize)>>,
    pids: Mutex<Vec<Option<u32>>>,
    changed: Notify,
    stopped: AtomicBool,
}

impl Links {
    pub fn new(members: usize) -> Arc<Links> {
        Arc::new(Links { pids: Mutex::new(vec![None; members]), ..Default::default() })
    }

    pub fn set_pid(&self, member: usize, pid: Option<u32>) {
        self.pids.lock()[member] = pid;
    }

    /// Cuts every link between a member of `a` and a member of `b`, both ways.
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        let mut cut = self.cut.lock();
        for &x in a {
            for &y in b {
                if x != y {
                    cut.insert((x, y));
                    cut.insert((y, x));
                }
            }
        }
    }

    pub fn heal(&self) {
        self.cut.lock().clear();
        self.changed.notify_waiters();
    }

    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.heal();
    }

    fn is_cut(&self, from: Option<usize>, to: usize) -> bool {
        let cut = self.cut.lock();
        match from {
            Some(f) => cut.contains(&(f, to)),
            // Not a member's connection (or it could not be told): cut only
            // when the destination is cut from everyone.
            None => {
                let n = self.pids.lock().len();
                (0..n).filter(|&m| m != to).all(|m| cut.contains(&(m, to)))
            }
        }
    }

    /// Waits while `from -> to` is cut.
    async fn pass(&self, from: Option<usize>, to: usize) {
        loop {
            let changed = self.changed.notified();
            if !self.is_cut(from, to) || self.stopped.load(Ordering::SeqCst) {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
        }
    }

    fn member_of(&self, peer: SocketAddr) -> Option<usize> {
        let inode = socket_inode(peer.port())?;
        let pids = self.pids.lock().clone();
        pids.iter().position(|pid| pid.is_some_and(|p| owns_socket(p, inode)))
    }
}

/// Starts the proxy for member `to`: accepts on `listener`, forwards to `upstream`.
pub fn spawn(links: Arc<Links>, to: usize, listener: TcpListener, upstream: SocketAddr) {
    tokio::spawn(async move {
        loop {
            let Ok((conn, peer)) = listener.accept().await else { return };
            if links.stopped.load(Ordering::SeqCst) {
                return;
            }
            let links = links.clone();
            tokio::spawn(async move {
                let from = links.member_of(peer);
                links.pass(from, to).await;
                let Ok(up) = TcpStream::connect(upstream).await else { return };
                let _ = conn.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (cr, cw) = conn.into_split();
                let (ur, uw) = up.into_split();
                let l2 = links.clone();
                tokio::spawn(async move { pump(cr, uw, &l2, from, Some(to), to).await });
                pump(ur, cw, &links, Some(to), from, to).await;
            });
        }
    });
}

/// Copies `r` to `w` while the direction `from -> to` is not cut.
async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    links: &Links,
    from: Option<usize>,
    to: Option<usize>,
    proxied: usize,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match (from, to) {
            (_, Some(t)) => links.pass(from, t).await,
            // Answers to an unknown connector: cut when the proxied member
            // is cut from everyone.
            (Some(_), None) => links.pass(None, proxied).await,
            (None, None) => {}
        }
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(t) = to {
            links.pass(from, t).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// The inode of the loopback TCP socket whose local port is `port`.
fn socket_inode(port: u16) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = cols.get(1) else { continue };
            let Some((_, p)) = local.rsplit_once(':') else { continue };
            if u16::from_str_radix(p, 16).ok() == Some(port) {
                if let Some(inode) = cols.get(9).and_then(|i| i.parse().ok()) {
                    return Some(inode);
                }
            }
        }
    }
    None
}

fn owns_socket(pid: u32, inode: u64) -> bool {
    let want = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == want))
}
