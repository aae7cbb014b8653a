//! Process harness for the integration tests: the real `tessera` binary, a
//! reference etcd 3.4 (`/usr/bin/etcd`) and the `etcdctl` client.
//!
//! Every wait here is bounded (deadlines below); the only sleeps are short
//! polls inside those bounded loops. Children are killed (SIGKILL) and reaped
//! on drop.
#![allow(dead_code)]

pub mod certs;
mod etcd;
pub mod http;
pub mod load;
pub mod spread;

#[allow(unused_imports)]
pub use etcd::{etcdctl, etcdctl_until, Etcd};

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Reference etcd server and client (Debian's etcd-server / etcd-client 3.4).
pub const ETCD_BIN: &str = "/usr/bin/etcd";
pub const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";
const SETUP_HINT: &str =
    "run scripts/setup.sh (it installs Debian's etcd-server and etcd-client 3.4, which provide /usr/bin/etcd and /usr/bin/etcdctl)";

/// The line tessera prints on stdout once its client listener is up.
pub const TESSERA_READY_PREFIX: &str = "tessera: serving clients on ";
/// Split keys every test instance is started with: 4 regions
/// ["", "b"), ["b", "m"), ["m", "t"), ["t", +inf).
pub const SPLIT_KEYS: &str = "b,m,t";

pub const TESSERA_START_TIMEOUT: Duration = Duration::from_secs(60);
pub const ETCD_START_TIMEOUT: Duration = Duration::from_secs(30);
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound for reaping a child after SIGKILL.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);
/// Keep at most this much of a child's output in memory (the tail).
const LOG_CAP: usize = 4 << 20;

// ---------------------------------------------------------------------------
// output capture

/// Captured stdout+stderr of a child, shared with the reader threads.
#[derive(Clone, Default)]
pub struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl LogBuf {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        if buf.len() > LOG_CAP {
            let cut = buf.len() - LOG_CAP / 2;
            buf.drain(..cut);
        }
    }

    /// The last `max_bytes` bytes of the captured output, lossily decoded.
    pub fn tail(&self, max_bytes: usize) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let start = buf.len().saturating_sub(max_bytes);
        String::from_utf8_lossy(&buf[start..]).into_owned()
    }
}

fn drain_stderr(stderr: ChildStderr, log: LogBuf) {
    thread::spawn(move || {
        let mut r = stderr;
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => log.push(&chunk[..n]),
            }
        }
    });
}

/// Reads stdout line by line into `log`; sends the URL of the first line
/// starting with [`TESSERA_READY_PREFIX`] on `ready`, then keeps draining so the
/// child never blocks on a full pipe. The channel disconnects at EOF.
fn drain_stdout_until_ready(stdout: ChildStdout, log: LogBuf, ready: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        let mut ready = Some(ready);
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    log.push(&line);
                    if ready.is_some() {
                        let text = String::from_utf8_lossy(&line);
                        if let Some(rest) = text.strip_prefix(TESSERA_READY_PREFIX) {
                            let url = rest.split_whitespace().next().unwrap_or("").to_string();
                            let _ = ready.take().unwrap().send(url);
                        }
                    }
                }
            }
        }
    });
}

/// Waits at most `timeout` for `child` to exit.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(POLL),
            Err(_) => return None,
        }
    }
}

/// Waits at most `timeout` for `child` to exit by itself: its status.
/// Panics (after killing it) if it is still running then.
pub fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    match wait_bounded(child, timeout) {
        Some(status) => status,
        None => {
            kill_and_reap(child);
            panic!("{what} still running after {timeout:?}");
        }
    }
}

/// SIGKILL (on Unix `Child::kill` sends SIGKILL) and reap, bounded.
fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = wait_bounded(child, REAP_TIMEOUT);
}

/// Panics with the setup hint if a required binary is missing. Tests that need
/// etcd must fail (not skip) when it is absent.
/// What a member said on each line of its log: the `msg` of an etcd JSON
/// line (the default format), the line itself otherwise (a refusal before
/// logging is set up is one plain line).
pub fn log_messages(log: &str) -> Vec<String> {
    let msg = |l: &str| serde_json::from_str::<serde_json::Value>(l).ok()?["msg"].as_str().map(String::from);
    log.lines().map(|l| msg(l).unwrap_or_else(|| l.to_string())).collect()
}

pub fn require_bin(path: &str) {
    if !Path::new(path).is_file() {
        panic!("{path} is missing: the etcd compatibility tests need the reference etcd 3.4; {SETUP_HINT}");
    }
}

/// Panics (with the setup hint) unless both /usr/bin/etcd and /usr/bin/etcdctl exist.
pub fn require_etcd() {
    require_bin(ETCD_BIN);
    require_bin(ETCDCTL_BIN);
}

/// Free loopback TCP ports: binds `n` listeners on 127.0.0.1:0 at once (so the
/// ports are distinct), reads their ports and closes them.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local_addr").port()).collect()
}

/// A `Command` for etcd/etcdctl with no inherited ETCD*/ETCDCTL* settings
/// (etcd reads every `ETCD_*` variable as a flag).
fn clean_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str() {
            if k.starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
    }
    cmd
}

// ---------------------------------------------------------------------------
// tessera

/// A running `tessera serve` process on a loopback port chosen by the OS.
pub struct Tessera {
    /// e.g. `http://127.0.0.1:43123`, as printed by tessera.
    pub client_url: String,
    child: Option<Child>,
    /// Owned when the instance created its data dir ([`Tessera::start`]);
    /// `None` for [`Tessera::start_in`], where the caller owns the directory.
    data_dir: Option<tempfile::TempDir>,
    dir: PathBuf,
    extra_args: Vec<String>,
    log: LogBuf,
}

impl Tessera {
    /// Starts tessera in a fresh temporary data dir (removed on drop).
    pub fn start(extra_args: &[&str]) -> Tessera {
        let data_dir = tempfile::Builder::new().prefix("tessera-test-").tempdir().expect("create temp data dir");
        let mut t = Tessera::start_in(data_dir.path(), extra_args);
        t.data_dir = Some(data_dir);
        t
    }

    /// Starts tessera on an existing data dir, which the caller owns (use it
    /// to restart on the data of a killed instance).
    pub fn start_in(dir: &Path, extra_args: &[&str]) -> Tessera {
        let extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let (child, client_url, log) = spawn_tessera(dir, &extra);
        Tessera { client_url, child: Some(child), data_dir: None, dir: dir.to_path_buf(), extra_args: extra, log }
    }

    /// The client URL, for `--endpoints`.
    pub fn endpoint(&self) -> &str {
        &self.client_url
    }

    /// The data directory this instance runs on.
    pub fn data_path(&self) -> &Path {
        &self.dir
    }

    /// The extra arguments this instance was started with.
    pub fn extra_args(&self) -> &[String] {
        &self.extra_args
    }

    /// SIGKILL the process (no graceful shutdown) and reap it. The data dir is
    /// kept. Idempotent.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// SIGTERM the process and wait (bounded) for it to exit on its own;
    /// `None` if it did not within 20 s (it is then killed).
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let status = wait_bounded(&mut child, Duration::from_secs(20));
        if status.is_none() {
            kill_and_reap(&mut child);
        }
        status
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills this instance (if still running) and starts a new one on the same
    /// data dir with `extra_args`; ownership of a temporary data dir moves to
    /// the new instance. The client port changes.
    pub fn restart(mut self, extra_args: &[&str]) -> Tessera {
        self.kill9();
        let data_dir = self.data_dir.take();
        let dir = self.dir.clone();
        drop(self);
        let mut t = Tessera::start_in(&dir, extra_args);
        t.data_dir = data_dir;
        t
    }

    /// Restart with the same extra arguments as before.
    pub fn restart_same(self) -> Tessera {
        let extra = self.extra_args.clone();
        let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
        self.restart(&extra)
    }

    /// The last `max_bytes` of tessera's stdout+stderr (for failure messages).
    pub fn log_tail(&self, max_bytes: usize) -> String {
        self.log.tail(max_bytes)
    }
}

fn spawn_tessera(dir: &Path, extra: &[String]) -> (Child, String, LogBuf) {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg("--data-dir").arg(dir).args(["--listen-client-urls", "http://127.0.0.1:0"]);
    // A test with a keys file of its own gets no default keys (the two
    // flags exclude each other).
    if !extra.iter().any(|a| a == "--initial-split-keys-file") {
        cmd.args(["--initial-split-keys", SPLIT_KEYS]);
    }
    cmd.args(extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {bin}: {e}"));
    let log = LogBuf::default();
    drain_stderr(child.stderr.take().expect("piped stderr"), log.clone());
    let (tx, rx) = mpsc::channel();
    drain_stdout_until_ready(child.stdout.take().expect("piped stdout"), log.clone(), tx);

    let cmdline = format!(
        "{bin} serve --data-dir {} --listen-client-urls http://127.0.0.1:0 --initial-split-keys {SPLIT_KEYS} {}",
        dir.display(),
        extra.join(" ")
    );
    match rx.recv_timeout(TESSERA_START_TIMEOUT) {
        Ok(url) if !url.is_empty() => (child, url, log),
        Ok(_) => {
            kill_and_reap(&mut child);
            panic!(
                "`{cmdline}` printed {TESSERA_READY_PREFIX:?} without a URL\n--- tessera output (tail) ---\n{}",
                log.tail(16 << 10)
            );
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            kill_and_reap(&mut child);
            panic!(
                "`{cmdline}` did not print a line starting with {TESSERA_READY_PREFIX:?} within {:?}\n--- tessera output (tail) ---\n{}",
                TESSERA_START_TIMEOUT,
                log.tail(16 << 10)
            );
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // stdout closed before the ready line: the process is exiting.
            let status = wait_bounded(&mut child, REAP_TIMEOUT);
            if status.is_none() {
                kill_and_reap(&mut child);
            }
            // give the stderr reader a moment to collect the last words
            thread::sleep(Duration::from_millis(100));
            panic!(
                "`{cmdline}` closed stdout before printing {TESSERA_READY_PREFIX:?} (exit status: {status:?})\n--- tessera output (tail) ---\n{}",
                log.tail(16 << 10)
            );
        }
    }
}

impl Drop for Tessera {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// N `tessera serve` processes forming one cluster on loopback: peer ports
/// picked free, client ports chosen by each process, one temp data dir each
/// (removed on drop, with the processes killed).
pub struct Cluster {
    pub nodes: Vec<Option<Tessera>>,
    dirs: Vec<tempfile::TempDir>,
    initial_cluster: String,
    /// Each member's arguments for a restart.
    args: Vec<Vec<String>>,
}

impl Cluster {
    /// Starts `n` members (named n1..nN) at once.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, |_| Vec::new())
    }

    /// Starts `n` members, member `i` with `extra(i)` added to its
    /// arguments (a restart leaves them out).
    pub fn start_with(n: usize, extra: impl Fn(usize) -> Vec<String>) -> Cluster {
        // A peer port picked free may be taken by another test before its
        // member binds it: then the whole cluster starts again on new ports.
        for attempt in 1.. {
            match Cluster::try_start(n, &extra) {
                Ok(c) => return c,
                Err(log) if attempt < 3 && log.contains("binding") => eprintln!("a peer port was taken; again"),
                Err(log) => panic!("a member did not start:\n{log}"),
            }
        }
        unreachable!()
    }

    fn try_start(n: usize, extra: &impl Fn(usize) -> Vec<String>) -> Result<Cluster, String> {
        let ports = free_ports(n);
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{}=http://127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let dirs: Vec<tempfile::TempDir> =
            (0..n).map(|_| tempfile::Builder::new().prefix("tessera-cluster-").tempdir().expect("temp dir")).collect();
        let starters: Vec<_> = (0..n)
            .map(|i| {
                let (dir, ic) = (dirs[i].path().to_path_buf(), initial_cluster.clone());
                let mut args = member_args(i, &ic);
                args.extend(extra(i));
                thread::spawn(move || Tessera::start_in(&dir, &args.iter().map(|s| s.as_str()).collect::<Vec<_>>()))
            })
            .collect();
        let started: Vec<_> = starters.into_iter().map(|h| h.join()).collect();
        if started.iter().any(|s| s.is_err()) {
            // The others are killed as they drop.
            let said = started
                .into_iter()
                .filter_map(|s| s.err())
                .map(|p| p.downcast_ref::<String>().cloned().unwrap_or_default());
            return Err(said.collect::<Vec<_>>().join("\n"));
        }
        let nodes = started.into_iter().map(|s| s.ok()).collect();
        let args = (0..n).map(|i| member_args(i, &initial_cluster)).collect();
        Ok(Cluster { nodes, dirs, initial_cluster, args })
    }

    /// Starts a new member (named after its position) that joins the
    /// running cluster at `peer_url`, which `etcdctl member add` added;
    /// returns its index.
    pub fn join(&mut self, peer_url: &str) -> usize {
        let i = self.nodes.len();
        self.initial_cluster = format!("{},n{}={peer_url}", self.initial_cluster, i + 1);
        let mut args = member_args(i, &self.initial_cluster);
        args.extend(["--initial-cluster-state".to_string(), "existing".to_string()]);
        self.dirs.push(tempfile::Builder::new().prefix("tessera-cluster-").tempdir().expect("temp dir"));
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        self.nodes.push(Some(Tessera::start_in(self.dirs[i].path(), &argv)));
        self.args.push(args);
        i
    }

    /// Member `i`'s process, if it is up.
    pub fn node(&mut self, i: usize) -> Option<&mut Tessera> {
        self.nodes[i].as_mut()
    }

    /// The client URL of member `i` (0-based); panics if it is down.
    pub fn endpoint(&self, i: usize) -> String {
        self.nodes[i].as_ref().expect("member is up").endpoint().to_string()
    }

    /// The client URLs of the members that are up.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().flatten().map(|t| t.endpoint().to_string()).collect()
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut t) = self.nodes[i].take() {
            t.kill9();
        }
    }

    /// Starts member `i` again on its data dir (a new client port).
    pub fn restart(&mut self, i: usize) {
        self.kill9(i);
        let args: Vec<&str> = self.args[i].iter().map(|s| s.as_str()).collect();
        self.nodes[i] = Some(Tessera::start_in(self.dirs[i].path(), &args));
    }

    /// Every member's output tail, for failure messages.
    pub fn logs(&self, max_bytes: usize) -> String {
        let mut out = String::new();
        for (i, t) in self.nodes.iter().enumerate() {
            if let Some(t) = t {
                out.push_str(&format!("--- n{} ---\n{}\n", i + 1, t.log_tail(max_bytes)));
            }
        }
        out
    }
}

/// Runs `tessera admin ARGS` against `endpoint` (a client URL); it must
/// succeed. Returns its stdout.
pub fn admin(endpoint: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("admin")
        .args(["--endpoints", endpoint.trim_start_matches("http://")])
        .args(args)
        .output()
        .expect("run tessera admin");
    let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    assert!(out.status.success(), "tessera admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("tessera admin prints UTF-8")
}

fn member_args(i: usize, initial_cluster: &str) -> Vec<String> {
    vec!["--name".into(), format!("n{}", i + 1), "--initial-cluster".into(), initial_cluster.into()]
}

/// Runs an etcd client library's self-checking script
/// (`<interpreter> <script> PORT 127.0.0.1`, with `env`) against a fresh
/// tessera with 4 regions; it must exit 0 and print "ALL OK". The scripts
/// bound themselves; `timeout` bounds them again.
pub fn run_client_checks(interpreter: &str, script: &str, env: &[(&str, &str)]) {
    let node = Tessera::start(&[]);
    let port = node.endpoint().rsplit(':').next().expect("a port").to_string();
    let out = Command::new("timeout")
        .args(["150", interpreter, script, &port, "127.0.0.1"])
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {interpreter}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{script} failed ({:?}):\n{stdout}\n{stderr}\n--- tessera ---\n{}",
        out.status,
        node.log_tail(8 << 10)
    );
}

// ---------------------------------------------------------------------------
// clusters through etcd-client

/// Bound for a cluster to elect and activate a leader store.
pub const CLUSTER_READY: Duration = Duration::from_secs(30);

/// An etcd-client connection to `endpoint`, retried until CLUSTER_READY.
pub async fn connect(endpoint: &str) -> etcd_client::Client {
    let deadline = Instant::now() + CLUSTER_READY;
    loop {
        match etcd_client::Client::connect([endpoint], None).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "connecting to {endpoint}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes the member serving `endpoint` the leader store (MoveLeader until
/// it says so); returns its member id.
pub async fn make_leader_store(endpoint: &str) -> u64 {
    let mut c = connect(endpoint).await;
    let deadline = Instant::now() + CLUSTER_READY;
    loop {
        if let Ok(s) = c.status().await {
            let me = s.header().expect("header").member_id();
            if s.leader() == me {
                return me;
            }
            let _ = c.move_leader(me).await;
        }
        assert!(Instant::now() < deadline, "{endpoint} did not become the leader store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events of `stream` until one at or past revision `last` (with the
/// rest of its response), as (revision, key, value; `None` for a delete).
pub async fn watch_events(stream: &mut etcd_client::WatchStream, last: i64) -> Vec<(i64, String, Option<String>)> {
    let mut seen: Vec<(i64, String, Option<String>)> = Vec::new();
    while seen.last().map_or(0, |s| s.0) < last {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("no watch response within 10 s")
            .expect("watch stream failed")
            .expect("watch stream ended");
        assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
        for ev in resp.events() {
            let kv = ev.kv().unwrap();
            let value = (ev.event_type() == etcd_client::EventType::Put).then(|| kv.value_str().unwrap().to_string());
            seen.push((kv.mod_revision(), kv.key_str().unwrap().to_string(), value));
        }
    }
    seen
}
