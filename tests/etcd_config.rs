//! Starting the real binary as etcd is started (docs/ops.md, "Starting
//! tessera as etcd"): `tessera [etcd flags]` with no subcommand, the same
//! settings from `ETCD_*` variables and from etcd's YAML `--config-file`,
//! etcd's refusals with etcd's messages, and JSON log lines.
//!
//! Each start is bounded (START_TIMEOUT), client ports are picked by the
//! OS (port 0; the binary prints the one it bound), data dirs are temp
//! dirs, and every process is killed when its handle drops.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, free_ports, TESSERA_READY_PREFIX};

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `tessera` process started with exactly the arguments and `ETCD_*`
/// variables a test gives (none inherited).
struct Proc {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// The client URL it printed once serving.
    url: String,
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCD") {
            cmd.env_remove(k);
        }
    }
    cmd.env_remove("RUST_LOG").args(args).envs(env.iter().copied()).stdin(Stdio::null());
    cmd
}

impl Proc {
    /// Starts tessera and waits (bounded) for it to serve clients.
    fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child =
            command(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn tessera");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix(TESSERA_READY_PREFIX) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => Proc { child, stderr, url },
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(100));
                panic!("tessera {args:?} did not serve ({e}):\n{}", stderr.lock().unwrap());
            }
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tessera expecting it to exit by itself within START_TIMEOUT:
/// its status and stderr.
fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = command(args, env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn tessera");
    let mut err = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = common::wait_exit(&mut child, START_TIMEOUT, &format!("tessera {args:?}"));
    (status, reader.join().unwrap())
}

/// What a test checks a started store did with its settings.
struct Expect<'a> {
    name: &'a str,
    advertised: &'a str,
    /// etcd's shortest lease: 1.5 election timeouts rounded up to seconds.
    min_lease_ttl: i64,
}

/// A put and a get through etcd-client, the member's name and advertised
/// client URL, and the shortest lease the election timeout gives.
fn check_serving(p: &Proc, want: &Expect) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = connect(&p.url).await;
        c.put("greeting", "hello", None).await.expect("put");
        let got = c.get("greeting", None).await.expect("get");
        assert_eq!(got.kvs()[0].value(), b"hello");
        let members = c.member_list().await.expect("member list");
        let me = &members.members()[0];
        assert_eq!(me.name(), want.name, "--name");
        assert_eq!(me.client_urls(), [want.advertised.to_string()], "--advertise-client-urls");
        let lease = c.lease_grant(1, None).await.expect("lease grant");
        assert_eq!(lease.ttl(), want.min_lease_ttl, "the election timeout sets the shortest lease");
    });
}

/// The lines of `log` containing `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Flags tessera ignores, each with the line it must print exactly once.
const IGNORED: [(&str, &str); 4] = [
    ("snapshot-count", "--snapshot-count is ignored: "),
    ("experimental-initial-corrupt-check", "--experimental-initial-corrupt-check is ignored: "),
    ("enable-v2", "--enable-v2 is ignored: tessera serves the v3 API only"),
    ("initial-cluster-token", "--initial-cluster-token is ignored: "),
];

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("tessera-etcd-config-").tempdir().unwrap()
}

#[test]
fn a_kubeadm_like_command_line_starts_serves_and_warns_once_per_ignored_flag() {
    let dir = temp_dir();
    let data = dir.path().join("etcd").display().to_string();
    let peer = format!("http://127.0.0.1:{}", free_ports(1)[0]);
    let cluster = format!("cp-1={peer}");
    let args = [
        "--advertise-client-urls=http://10.0.0.7:2379",
        "--data-dir",
        &data,
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        &format!("--initial-advertise-peer-urls={peer}"),
        &format!("--initial-cluster={cluster}"),
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token=etcd-cluster-1",
        "--listen-client-urls=http://127.0.0.1:0",
        "--listen-metrics-urls=http://127.0.0.1:0",
        &format!("--listen-peer-urls={peer}"),
        "--name=cp-1",
        "--snapshot-count=10000",
        "--enable-v2",
        "false",
        "--heartbeat-interval",
        "200",
        "--election-timeout=2000",
        "--pre-vote",
    ];
    let p = Proc::start(&args, &[]);
    check_serving(&p, &Expect { name: "cp-1", advertised: "http://10.0.0.7:2379", min_lease_ttl: 3 });
    let log = p.stderr();
    for (_, line) in IGNORED {
        assert_eq!(lines_with(&log, line), 1, "{line:?} once in:\n{log}");
    }
    assert_eq!(lines_with(&log, "--pre-vote is ignored: tessera's regions always pre-vote"), 1, "{log}");
    assert_eq!(lines_with(&log, " is ignored: "), IGNORED.len() + 1, "no other flag is ignored:\n{log}");
}

#[test]
fn the_same_settings_from_etcd_environment_variables() {
    let dir = temp_dir();
    let data = dir.path().join("etcd").display().to_string();
    let env = [
        ("ETCD_NAME", "from-env"),
        ("ETCD_DATA_DIR", data.as_str()),
        ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:0"),
        ("ETCD_ADVERTISE_CLIENT_URLS", "http://10.0.0.8:2379"),
        ("ETCD_SNAPSHOT_COUNT", "10000"),
        ("ETCD_ENABLE_V2", "false"),
        ("ETCD_HEARTBEAT_INTERVAL", "100"),
        ("ETCD_ELECTION_TIMEOUT", "3000"),
        ("ETCD_NO_SUCH_SETTING", "1"),
    ];
    let p = Proc::start(&[], &env);
    check_serving(&p, &Expect { name: "from-env", advertised: "http://10.0.0.8:2379", min_lease_ttl: 5 });
    let log = p.stderr();
    assert_eq!(lines_with(&log, "ETCD_SNAPSHOT_COUNT is ignored: "), 1, "{log}");
    assert_eq!(lines_with(&log, "ETCD_ENABLE_V2 is ignored: tessera serves the v3 API only"), 1, "{log}");
    assert_eq!(lines_with(&log, "unrecognized environment variable ETCD_NO_SUCH_SETTING=1"), 1, "{log}");
    assert_eq!(lines_with(&log, "recognized and used environment variable ETCD_NAME=from-env"), 1, "{log}");
}

fn write_config(dir: &Path, data: &str) -> String {
    let yaml = format!(
        "# as etcd's etcd.conf.yml.sample writes it
name: from-file
data-dir: {data}
listen-client-urls: http://127.0.0.1:0
advertise-client-urls: http://10.0.0.9:2379
initial-cluster-state: 'new'
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 4000
enable-v2: false
auto-compaction-mode: periodic
auto-compaction-retention: \"1\"
log-outputs: [stderr]
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
no-such-key: 1
"
    );
    let path = dir.join("etcd.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

#[test]
fn the_same_settings_from_a_config_file_which_beats_flags_and_variables() {
    let dir = temp_dir();
    let data = dir.path().join("etcd").display().to_string();
    let config = write_config(dir.path(), &data);
    let p = Proc::start(&["--config-file", &config, "--name", "from-flag"], &[("ETCD_ENABLE_V2", "true")]);
    check_serving(&p, &Expect { name: "from-file", advertised: "http://10.0.0.9:2379", min_lease_ttl: 6 });
    let log = p.stderr();
    let ignoring = format!(
        "loaded server configuration from {config}; other command line flags and environment variables are ignored: --name, ETCD_ENABLE_V2"
    );
    assert_eq!(lines_with(&log, &ignoring), 1, "{log}");
    assert_eq!(lines_with(&log, &format!("snapshot-count in {config} is ignored: ")), 1, "{log}");
    assert_eq!(lines_with(&log, &format!("unrecognized key no-such-key in {config} is ignored")), 1, "{log}");
}

#[test]
fn flags_and_variables_combine_but_the_same_setting_from_both_refuses_to_start() {
    let dir = temp_dir();
    let data = dir.path().join("etcd").display().to_string();
    let flags = ["--data-dir", &data, "--listen-client-urls", "http://127.0.0.1:0"];
    let p = Proc::start(&flags, &[("ETCD_NAME", "env-name"), ("ETCD_ADVERTISE_CLIENT_URLS", "http://10.0.0.10:2379")]);
    check_serving(&p, &Expect { name: "env-name", advertised: "http://10.0.0.10:2379", min_lease_ttl: 2 });
    drop(p);

    let (status, err) = run_to_exit(&[&flags[..], &["--name", "flag-name"]].concat(), &[("ETCD_NAME", "env-name")]);
    assert_eq!(status.code(), Some(1), "{err}");
    let etcds = "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag";
    assert!(err.contains(etcds), "{err}");
}

#[test]
fn refusals_exit_1_with_etcds_messages() {
    let dir = temp_dir();
    let data = dir.path().join("etcd").display().to_string();
    let base = ["--data-dir", data.as_str(), "--listen-client-urls", "http://127.0.0.1:0"];
    let cases: [(&[&str], &str); 4] = [
        (
            &["--heartbeat-interval", "100", "--election-timeout", "400"],
            "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        ),
        (&["--election-timeout=60000"], "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
        (
            &["--client-crl-file", "/etc/etcd/pki/crl.pem"],
            "certificate revocation lists is not supported yet (--client-crl-file)",
        ),
        (&["--logger", "capnslog"], "--logger=capnslog is removed in v3.5"),
    ];
    for (extra, message) in cases {
        let (status, err) = run_to_exit(&[&base[..], extra].concat(), &[]);
        assert_eq!(status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains(message), "{extra:?}: {message:?} not in:\n{err}");
    }
    // A flag etcd does not have either still fails as a usage error.
    let (status, err) = run_to_exit(&[&base[..], &["--no-such-flag", "1"]].concat(), &[]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
}

/// etcd 3.5 logs zap JSON by default; so does tessera.
#[test]
fn logs_are_etcds_json_by_default_on_every_line_and_to_every_output() {
    let dir = temp_dir();
    let data = dir.path().join("etcd").display().to_string();
    let file = dir.path().join("tessera.log").display().to_string();
    let outputs = format!("stderr,{file}");
    let args = [
        "serve",
        "--data-dir",
        &data,
        "--listen-client-urls",
        "http://127.0.0.1:0",
        "--log-outputs",
        &outputs,
        "--enable-v2=false",
    ];
    let p = Proc::start(&args, &[]);
    check_serving(&p, &Expect { name: "default", advertised: &p.url, min_lease_ttl: 2 });
    let log = p.stderr();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{log}"))).collect();
    assert!(lines.len() >= 2, "{log}");
    for line in &lines {
        for field in ["level", "ts", "caller", "msg"] {
            assert!(line[field].is_string(), "no {field:?} in {line}");
        }
    }
    let warning = lines.iter().find(|l| l["msg"].as_str().unwrap().starts_with("--enable-v2 is ignored"));
    assert_eq!(warning.expect("the warning line")["level"], "warn");
    let in_file = std::fs::read_to_string(&file).unwrap();
    assert!(in_file.lines().any(|l| l.contains("--enable-v2 is ignored")), "{in_file}");
    drop(p);

    // --log-format console: text lines.
    let data = dir.path().join("console").display().to_string();
    let args = ["--data-dir", &data, "--listen-client-urls", "http://127.0.0.1:0", "--log-format", "console"];
    let p = Proc::start(&args, &[("ETCD_ENABLE_V2", "false")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.stderr().contains("ETCD_ENABLE_V2 is ignored") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let log = p.stderr();
    let warning = log.lines().find(|l| l.contains("ETCD_ENABLE_V2 is ignored")).expect("the warning line");
    assert!(warning.contains("WARN") && serde_json::from_str::<serde_json::Value>(warning).is_err(), "{log}");
}

/// etcd's systemd units are `Type=notify`: systemd counts the service
/// started when it sends READY=1 on $NOTIFY_SOCKET. tessera sends it once
/// it serves, started as such a unit starts it (ETCD_* variables from its
/// environment file, no flags).
#[test]
fn tells_systemd_it_is_ready_as_etcd_does() {
    use std::os::unix::net::UnixDatagram;
    let dir = temp_dir();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(START_TIMEOUT)).unwrap();
    let (data, socket_env) = (dir.path().join("etcd").display().to_string(), socket_path.display().to_string());
    let env = [
        ("ETCD_NAME", "unit"),
        ("ETCD_DATA_DIR", data.as_str()),
        ("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:0"),
        ("ETCD_ADVERTISE_CLIENT_URLS", "http://10.0.0.9:2379"),
        ("NOTIFY_SOCKET", socket_env.as_str()),
    ];
    let p = Proc::start(&[], &env);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("READY=1 within the start timeout");
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "READY=1\n");
    check_serving(&p, &Expect { name: "unit", advertised: "http://10.0.0.9:2379", min_lease_ttl: 2 });
}
