//! TLS on the client port (issue 17 item 1, docs/security.md) with real
//! processes: etcdctl with --cacert/--cert/--key, openssl s_client for
//! what etcdctl cannot ask (TLS 1.1, the certificate served), curl for
//! the HTTP paths, python etcd3, and tessera's own clients (grpc.health.v1,
//! the Admin service). Certificates are made per test in its temp dir.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::certs::{Ca, Pem};
use common::{etcdctl, etcdctl_until, free_ports, Tessera};

/// etcdctl against a TLS endpoint: short timeouts, so a refused client
/// fails fast.
fn ctl(endpoint: &str, tls: &[String], args: &[&str]) -> (String, String, i32) {
    let mut all: Vec<&str> = vec!["--dial-timeout=2s", "--command-timeout=4s"];
    all.extend(tls.iter().map(String::as_str));
    all.extend(args);
    etcdctl(endpoint, &all, None)
}

/// `openssl s_client` to `addr` with `args`; its whole output and whether
/// it exited 0.
fn s_client(addr: &str, args: &[&str]) -> (String, bool) {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", addr, "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (text, out.status.success())
}

fn host_port(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

struct Certs {
    ca: Ca,
    server: Pem,
    client: Pem,
    foreign_client: Pem,
    foreign_ca: Ca,
}

fn certs(dir: &Path) -> Certs {
    let ca = Ca::new(dir, "ours");
    let foreign_ca = Ca::new(dir, "foreign");
    Certs {
        server: ca.issue("server", "server-before-rotation", &["127.0.0.1", "localhost"]),
        client: ca.issue("client", "root", &[]),
        foreign_client: foreign_ca.issue("foreign-client", "root", &[]),
        ca,
        foreign_ca,
    }
}

fn start_tls(dir: &Path, c: &Certs, extra: &[&str]) -> Tessera {
    let (cert, key, ca) = (c.server.cert.display(), c.server.key.display(), c.ca.ca_file());
    let mut args = vec![
        "--listen-client-urls".to_string(),
        "https://127.0.0.1:0".to_string(),
        format!("--cert-file={cert}"),
        format!("--key-file={key}"),
        format!("--trusted-ca-file={}", ca.display()),
        "--client-cert-auth".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let data = dir.join("data");
    Tessera::start_in(&data, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn clients_need_a_certificate_of_our_ca_and_tls_1_2() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let node = start_tls(dir.path(), &c, &[]);
    let ep = node.endpoint().to_string();
    assert!(ep.starts_with("https://"), "{ep}");
    let ca = c.ca.ca_file();
    let good = c.client.etcdctl_args(&ca);

    let (out, err, code) = ctl(&ep, &good, &["put", "greeting", "hello"]);
    assert_eq!((out.trim(), code), ("OK", 0), "{err}\n{}", node.log_tail(4096));

    // Refused: no certificate, a certificate of another CA.
    let no_cert = vec![format!("--cacert={}", ca.display())];
    let (_, err, code) = ctl(&ep, &no_cert, &["put", "nocert", "x"]);
    assert_ne!(code, 0, "a client without a certificate was served");
    println!("no certificate: {}", err.lines().last().unwrap_or(""));
    let foreign = c.foreign_client.etcdctl_args(&ca);
    let (_, _, code) = ctl(&ep, &foreign, &["put", "foreign", "x"]);
    assert_ne!(code, 0, "a client with a foreign CA's certificate was served");
    let (out, _, _) = ctl(&ep, &good, &["get", "", "--prefix", "--keys-only"]);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["greeting"], "only the good client wrote");

    // What the server says to each, in TLS terms.
    let addr = host_port(&ep);
    let (cert, key) = (c.client.cert.display().to_string(), c.client.key.display().to_string());
    let (text, ok) = s_client(addr, &["-tls1_2", "-CAfile", &ca.display().to_string(), "-cert", &cert, "-key", &key]);
    assert!(ok && text.contains("Verify return code: 0 (ok)") && text.contains("TLSv1.2"), "{text}");
    // The client offers TLS 1.1 (its own floor lowered); the server's alert ends it.
    let (text, ok) = s_client(addr, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    let alert = text.contains("alert protocol version") || text.contains("alert handshake failure");
    assert!(!ok && alert && text.contains("Cipher is (NONE)"), "TLS 1.1 was not refused by the server:\n{text}");
    // (-ign_eof: read on until the server's alert closes the connection.)
    let (text, _) = s_client(addr, &["-tls1_3", "-ign_eof", "-CAfile", &ca.display().to_string()]);
    assert!(text.contains("certificate required"), "no client certificate:\n{text}");

    // The same TLS carries the HTTP paths, watches and etcdctl 3.4's
    // per-endpoint calls (their `:authority` goes through the HTTP/2 front).
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert", &ca.display().to_string(), "--cert", &cert, "--key", &key])
        .arg(format!("{ep}/health"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), r#"{"health":"true"}"#, "{curl:?}");
    let metrics = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert", &ca.display().to_string(), "--cert", &cert, "--key", &key])
        .arg(format!("{ep}/metrics"))
        .output()
        .expect("run curl");
    assert!(String::from_utf8_lossy(&metrics.stdout).contains("etcd_server_has_leader 1"), "{metrics:?}");
    let (out, err, code) = ctl(&ep, &good, &["endpoint", "status"]);
    assert!(code == 0 && out.contains(&ep), "endpoint status over TLS: {out}{err}");
    let mut watch: Vec<&str> = good.iter().map(String::as_str).collect();
    watch.extend(["watch", "greeting", "--rev=1"]);
    let (out, err, _) = etcdctl_until(&ep, &watch, "hello");
    assert!(out.contains("PUT\ngreeting\nhello"), "watch over TLS: {out}{err}");

    // grpc.health.v1 and the Admin service, through tessera's own dialer.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
        let files = tessera::tls::client::ClientFiles {
            ca_file: Some(ca.clone()),
            cert_file: Some(c.client.cert.clone()),
            key_file: Some(c.client.key.clone()),
            skip_verify: false,
        };
        let dialer = tessera::tls::client::Dialer::new(&files, &Default::default()).unwrap();
        let channel = dialer.connect(tonic::transport::Endpoint::from_shared(ep.clone()).unwrap()).await.unwrap();
        let status = HealthClient::new(channel).check(HealthCheckRequest::default()).await.unwrap();
        assert_eq!(status.into_inner().status, 1, "SERVING");
    });
    let admin = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["admin", "regions", "--endpoints", addr, "--cacert", &ca.display().to_string()])
        .args(["--cert", &cert, "--key", &key])
        .output()
        .unwrap();
    assert!(admin.status.success(), "tessera admin over TLS: {}", String::from_utf8_lossy(&admin.stderr));
    assert_eq!(String::from_utf8_lossy(&admin.stdout).lines().count(), 5, "a header and 4 regions");
    drop(c.foreign_ca);
}

#[test]
fn a_silent_connection_is_closed_after_the_handshake_timeout_and_certificates_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let node = start_tls(dir.path(), &c, &["--tls-handshake-timeout", "2s"]);
    let ep = node.endpoint().to_string();
    let good = c.client.etcdctl_args(&c.ca.ca_file());

    let opened = Instant::now();
    let mut silent = TcpStream::connect(host_port(&ep)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // Others are served meanwhile.
    let (out, err, code) = ctl(&ep, &good, &["put", "k", "v"]);
    assert_eq!((out.trim(), code), ("OK", 0), "{err}");
    let mut byte = [0u8; 1];
    let read = silent.read(&mut byte);
    let waited = opened.elapsed();
    assert!(matches!(read, Ok(0)) || read.is_err(), "the silent connection got {read:?}");
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(10),
        "closed after {waited:?}, the timeout is 2 s"
    );
    println!("a silent connection was closed after {waited:?}");

    // Rotation: new files, same paths; the next connection gets them.
    let addr = host_port(&ep).to_string();
    let ca = c.ca.ca_file().display().to_string();
    let served = || s_client(&addr, &["-CAfile", &ca, "-cert", &good_cert(&c), "-key", &good_key(&c)]).0;
    assert!(served().contains("CN = server-before-rotation"), "{}", served());
    c.ca.issue("server", "rotated", &["127.0.0.1"]);
    let text = served();
    assert!(text.contains("CN = rotated") && text.contains("Verify return code: 0 (ok)"), "{text}");
    let (out, err, code) = ctl(&ep, &good, &["get", "k", "--print-value-only"]);
    assert_eq!((out.trim(), code), ("v", 0), "after rotation: {err}");
}

fn good_cert(c: &Certs) -> String {
    c.client.cert.display().to_string()
}

fn good_key(c: &Certs) -> String {
    c.client.key.display().to_string()
}

#[test]
fn http_and_https_share_a_port_and_auto_tls_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let port = free_ports(1)[0];
    let urls = format!("http://127.0.0.1:{port},https://127.0.0.1:{port}");
    let node = start_tls(dir.path(), &c, &["--listen-client-urls", &urls]);
    let plain = format!("http://127.0.0.1:{port}");
    let secure = format!("https://127.0.0.1:{port}");
    let (out, err, code) = ctl(&plain, &[], &["put", "via", "http"]);
    assert_eq!((out.trim(), code), ("OK", 0), "plain on the shared port: {err}\n{}", node.log_tail(4096));
    let good = c.client.etcdctl_args(&c.ca.ca_file());
    let (out, err, code) = ctl(&secure, &good, &["get", "via", "--print-value-only"]);
    assert_eq!((out.trim(), code), ("http", 0), "TLS on the shared port: {err}");

    let auto = tempfile::tempdir().unwrap();
    let node = Tessera::start_in(auto.path(), &["--listen-client-urls", "https://127.0.0.1:0", "--auto-tls"]);
    assert!(auto.path().join("fixtures/client/cert.pem").is_file());
    // etcdctl 3.4 dials without TLS unless told otherwise or given a file.
    let insecure = ["--insecure-transport=false".to_string(), "--insecure-skip-tls-verify".to_string()];
    let (out, err, code) = ctl(node.endpoint(), &insecure, &["put", "a", "b"]);
    assert_eq!((out.trim(), code), ("OK", 0), "auto TLS: {err}");
}

#[test]
fn bad_tls_settings_refuse_to_start_with_etcds_messages() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let (cert, key) =
        (format!("--cert-file={}", c.server.cert.display()), format!("--key-file={}", c.server.key.display()));
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--listen-client-urls", "https://127.0.0.1:0"],
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:0 with HTTPS scheme",
        ),
        (
            vec!["--listen-client-urls", "https://127.0.0.1:0", &cert, &key, "--cipher-suites", "X"],
            r#"unexpected TLS cipher suite "X""#,
        ),
        (
            vec!["--listen-client-urls", "https://127.0.0.1:0", &cert, &key, "--tls-min-version", "TLS1.1"],
            r#"unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)"#,
        ),
        (
            vec!["--listen-client-urls", "http://127.0.0.1:0", "--initial-cluster", "a=https://127.0.0.1:1,b=https://127.0.0.1:2", "--name", "a"],
            "cannot listen on TLS for 127.0.0.1:1: KeyFile and CertFile are not presented",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = common::log_messages(&stderr);
        assert!(
            out.status.code() == Some(1) && said.iter().any(|m| m.contains(want)),
            "{args:?}: {:?}\n{stderr}",
            out.status
        );
    }
}

#[test]
fn python_etcd3_over_tls() {
    let venv = std::env::var("TESSERA_PY_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/tessera-py", std::env::var("HOME").unwrap_or_default()));
    let python = format!("{venv}/bin/python");
    assert!(Path::new(&python).is_file(), "{python} is missing: run scripts/setup-clients.sh (test.sh does)");
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let node = start_tls(dir.path(), &c, &[]);
    let port = node.endpoint().rsplit(':').next().unwrap().to_string();
    let script = r#"
import sys, etcd3
port, ca, cert, key = sys.argv[1:5]
c = etcd3.client(host="localhost", port=int(port), ca_cert=ca, cert_cert=cert, cert_key=key, timeout=10)
c.put("py", "tls")
value, _ = c.get("py")
assert value == b"tls", value
print("ALL OK")
"#;
    let out = Command::new("timeout")
        .args(["60", &python, "-c", script, &port])
        .arg(c.ca.ca_file())
        .arg(&c.client.cert)
        .arg(&c.client.key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ALL OK"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
