//! The reference etcd 3.4 and the etcdctl client, as the tests run them.

use super::*;

/// A throwaway single-member etcd 3.4 on free loopback ports, in a temp dir;
/// killed (SIGKILL) and its directory removed on drop.
pub struct Etcd {
    pub client_url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts `/usr/bin/etcd` and waits (at most 30 s) until
    /// `etcdctl endpoint health` succeeds. Panics with a hint to run
    /// scripts/setup.sh when etcd or etcdctl is not installed.
    pub fn start() -> Etcd {
        Etcd::start_member(None)
    }

    /// Starts etcd on `data_dir`, made by `etcdctl snapshot restore --name
    /// NAME --initial-advertise-peer-urls PEER_URL` (the caller owns it).
    pub fn start_restored(data_dir: &Path, name: &str, peer_url: &str) -> Etcd {
        Etcd::start_member(Some((data_dir, name, peer_url)))
    }

    fn start_member(restored: Option<(&Path, &str, &str)>) -> Etcd {
        require_etcd();
        let deadline = Instant::now() + ETCD_START_TIMEOUT;
        let mut last_failure = String::new();
        // The ports are free when chosen but could be taken before etcd binds
        // them; a few attempts cover that race.
        for _attempt in 0..3 {
            if Instant::now() >= deadline {
                break;
            }
            match Etcd::try_start(deadline, restored) {
                Ok(etcd) => return etcd,
                Err(msg) => last_failure = msg,
            }
        }
        panic!("etcd did not become healthy within {ETCD_START_TIMEOUT:?}: {last_failure}");
    }

    fn try_start(deadline: Instant, restored: Option<(&Path, &str, &str)>) -> Result<Etcd, String> {
        let dir = tempfile::Builder::new().prefix("etcd-ref-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let ports = free_ports(2);
        let client_url = format!("http://127.0.0.1:{}", ports[0]);
        let fresh_peer = format!("http://127.0.0.1:{}", ports[1]);
        let fresh_data = dir.path().join("data");
        let (data_dir, name, peer_url) = restored.unwrap_or((&fresh_data, "ref", &fresh_peer));
        let log_path = dir.path().join("etcd.log");
        let log = File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
        let log2 = log.try_clone().map_err(|e| format!("dup log fd: {e}"))?;
        let mut child = clean_command(ETCD_BIN)
            .args(["--name", name])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", peer_url])
            .args(["--initial-advertise-peer-urls", peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .map_err(|e| format!("cannot spawn {ETCD_BIN}: {e}"))?;
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("etcd exited early ({status})\n--- etcd log ---\n{}", tail(&read_log(), 8 << 10)));
            }
            let (out, err, code) =
                etcdctl(&client_url, &["endpoint", "health", "--dial-timeout=1s", "--command-timeout=2s"], None);
            if code == 0 {
                return Ok(Etcd { client_url, child: Some(child), dir });
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                return Err(format!(
                    "last `etcdctl endpoint health`: exit {code}, stdout {out:?}, stderr {err:?}\n--- etcd log ---\n{}",
                    tail(&read_log(), 8 << 10)
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.client_url
    }

    /// The last `max_bytes` of etcd's log.
    pub fn log_tail(&self, max_bytes: usize) -> String {
        tail(&std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default(), max_bytes)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

fn tail(s: &str, max_bytes: usize) -> String {
    let mut start = s.len().saturating_sub(max_bytes);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

// ---------------------------------------------------------------------------
// etcdctl

/// Runs `ETCDCTL_API=3 etcdctl --endpoints <endpoint> <args...>`, feeding
/// `stdin` (or an empty, closed stdin when `None`). Returns (stdout, stderr,
/// exit code; -1 if killed by a signal). Panics if etcdctl is missing or does
/// not finish within 20 s.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> (String, String, i32) {
    require_bin(ETCDCTL_BIN);
    let mut cmd = clean_command(ETCDCTL_BIN);
    cmd.env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {ETCDCTL_BIN}: {e}"));

    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.as_bytes().to_vec();
        // etcdctl may exit without reading everything; ignore EPIPE.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
            // dropping `pipe` closes it: etcdctl sees EOF
        })
    });
    let out_reader = {
        let mut out = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        })
    };
    let err_reader = {
        let mut err = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        })
    };

    let status = match wait_bounded(&mut child, ETCDCTL_TIMEOUT) {
        Some(status) => status,
        None => {
            kill_and_reap(&mut child);
            panic!("`etcdctl --endpoints {endpoint} {}` did not finish within {ETCDCTL_TIMEOUT:?}", args.join(" "));
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        status.code().unwrap_or(-1),
    )
}

/// Runs a long-lived etcdctl command (e.g. `watch`) until its stdout
/// contains `until`, then kills it. Returns (stdout, stderr, exit code; -1
/// when it was killed). Panics if `until` does not appear within 20 s and
/// the command is still running.
pub fn etcdctl_until(endpoint: &str, args: &[&str], until: &str) -> (String, String, i32) {
    require_bin(ETCDCTL_BIN);
    let mut child = clean_command(ETCDCTL_BIN)
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {ETCDCTL_BIN}: {e}"));
    let (out, err) = (LogBuf::default(), LogBuf::default());
    for (pipe, buf) in [
        (Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>, out.clone()),
        (Box::new(child.stderr.take().expect("piped stderr")) as Box<dyn Read + Send>, err.clone()),
    ] {
        thread::spawn(move || {
            let mut r = pipe;
            let mut chunk = [0u8; 8192];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.push(&chunk[..n]);
            }
        });
    }
    let deadline = Instant::now() + ETCDCTL_TIMEOUT;
    let code = loop {
        if out.tail(usize::MAX).contains(until) {
            kill_and_reap(&mut child);
            break -1;
        }
        if let Ok(Some(status)) = child.try_wait() {
            thread::sleep(POLL); // let the readers collect the last words
            break status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            kill_and_reap(&mut child);
            panic!(
                "`etcdctl --endpoints {endpoint} {}` printed no {until:?} within {ETCDCTL_TIMEOUT:?}; stdout:\n{}\nstderr:\n{}",
                args.join(" "),
                out.tail(4096),
                err.tail(4096)
            );
        }
        thread::sleep(POLL);
    };
    (out.tail(usize::MAX), err.tail(usize::MAX), code)
}
