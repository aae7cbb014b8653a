//! The resolver's decisions, table-driven: arguments, environment and
//! file in; `tessera serve` arguments, lines and refusals out.

use super::*;

fn flags() -> ServeFlags {
    let own = ["initial-split-keys", "auto-split", "raft-log-gc-threshold", "log-level"];
    ServeFlags(own.iter().map(|s| s.to_string()).collect())
}

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn no_file(path: &str) -> std::io::Result<String> {
    Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{path}: no such file")))
}

fn run(args: &str, vars: &[(&str, &str)]) -> Result<Resolved, ConfigError> {
    resolve(&argv(args), &env(vars), &flags(), &no_file)
}

fn warnings(r: &Resolved) -> Vec<&str> {
    r.notes.iter().filter(|n| n.level == Level::Warn).map(|n| n.msg.as_str()).collect()
}

#[test]
fn honoured_flags_pass_on_in_every_form_and_the_last_counts() {
    let r = run("--name a -data-dir=d --listen-client-urls http://x:1,http://y:2 --name b", &[]).unwrap();
    assert_eq!(r.args, ["--data-dir=d", "--listen-client-urls=http://x:1,http://y:2", "--name=b"]);
    assert!(r.notes.is_empty());
}

#[test]
fn ignored_flags_warn_once_each_and_booleans_take_every_form() {
    let r = run(
        "--enable-v2 false --experimental-initial-corrupt-check --pre-vote=true --snapshot-count 10000 --strict-reconfig-check --name n",
        &[],
    )
    .unwrap();
    assert_eq!(r.args, ["--name=n"], "no value was taken for a flag: {:?}", r.args);
    assert_eq!(
        warnings(&r),
        [
            "--enable-v2 is ignored: tessera serves the v3 API only",
            "--experimental-initial-corrupt-check is ignored: tessera runs no corruption checks of its own (compare members with etcdctl endpoint hashkv)",
            "--pre-vote is ignored: tessera's regions always pre-vote",
            "--snapshot-count is ignored: applied state is written to RocksDB every poll round, so there is no snapshot to trigger; each region keeps --raft-log-gc-threshold log entries",
            "--strict-reconfig-check is ignored: tessera always refuses a member change that too few started members would carry",
        ]
    );
}

#[test]
fn unknown_arguments_go_to_tessera_serves_parser() {
    let r = run("--no-such-flag 3 --name n --help", &[]).unwrap();
    assert_eq!(r.args, ["--name=n", "--no-such-flag", "3", "--help"]);
    // A bare boolean takes no value that is not one (Go: "'maybe' is not a valid flag").
    assert_eq!(run("--enable-v2 maybe", &[]).unwrap().args, ["maybe"]);
}

#[test]
fn refusals_name_the_setting() {
    let cases = [
        (
            "--client-crl-file /etc/etcd/crl.pem",
            "certificate revocation lists is not supported yet (--client-crl-file): rotate the certificate files instead (they are read again for new connections)",
        ),
        (
            "--discovery https://discovery.etcd.io/x",
            "discovery is not supported yet (--discovery): name every member in --initial-cluster",
        ),
        ("--proxy on", "the v2 proxy is not supported yet (--proxy): run tessera as a member"),
        ("--enable-v2=maybe", "invalid boolean value \"maybe\" for --enable-v2: parse error"),
        ("--name", "flag needs an argument: --name"),
    ];
    for (args, want) in cases {
        assert_eq!(run(args, &[]).unwrap_err().to_string(), want, "{args}");
    }
}

#[test]
fn unsupported_flags_that_ask_for_nothing_are_ignored() {
    let r = run("--client-crl-file= --peer-cert-allowed-hostname= --proxy off --force-new-cluster=false", &[]).unwrap();
    assert!(r.args.is_empty());
    assert_eq!(warnings(&r).len(), 4, "{:?}", r.notes);
}

#[test]
fn environment_variables_are_flags_and_unknown_ones_are_warned_about() {
    let vars =
        [("ETCD_NAME", "n"), ("ETCD_ENABLE_V2", "false"), ("ETCD_NO_SUCH", "1"), ("ETCD_INITIAL_SPLIT_KEYS", "m")];
    let r = run("--data-dir d", &vars).unwrap();
    assert_eq!(r.args, ["--data-dir=d", "--initial-split-keys=m", "--name=n"]);
    assert_eq!(
        warnings(&r),
        [
            "unrecognized environment variable ETCD_NO_SUCH=1",
            "ETCD_ENABLE_V2 is ignored: tessera serves the v3 API only"
        ]
    );
    assert!(r.notes.contains(&Note::info("recognized and used environment variable ETCD_NAME=n")));
}

#[test]
fn a_flag_and_its_environment_variable_refuse_to_start_as_etcd() {
    let err = run("--name a", &[("ETCD_NAME", "b")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "conflicting environment variable \"ETCD_NAME\" is shadowed by corresponding command-line flag (either unset environment variable or disable flag)"
    );
    // An empty variable is unset.
    assert_eq!(run("--name a", &[("ETCD_NAME", "")]).unwrap().args, ["--name=a"]);
}

#[test]
fn durations_become_milliseconds() {
    let r = run("--experimental-watch-progress-notify-interval 1m30s", &[]).unwrap();
    assert_eq!(r.args, ["--experimental-watch-progress-notify-interval=90000ms"]);
    let err = run("--experimental-watch-progress-notify-interval 5 ", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::BadDuration { .. }), "{err}");
}

const YAML: &str = "
name: from-file
data-dir: /var/lib/etcd
listen-client-urls: http://127.0.0.1:2379,http://10.0.0.1:2379
heartbeat-interval: 200
enable-v2: false
log-outputs: [stderr]
auto-compaction-retention: 1
experimental-watch-progress-notify-interval: 5000000000
initial-cluster-token:
client-transport-security:
  cert-file: ''
  client-cert-auth: false
no-such-key: 3
";

fn with_file(args: &str, vars: &[(&str, &str)], yaml: &'static str) -> Result<Resolved, ConfigError> {
    resolve(&argv(args), &env(vars), &flags(), &move |_| Ok(yaml.to_string()))
}

#[test]
fn a_config_file_is_the_whole_configuration() {
    let r = with_file("--config-file e.yaml --name ignored", &[("ETCD_DATA_DIR", "ignored")], YAML).unwrap();
    assert_eq!(
        r.args,
        [
            "--name=from-file",
            "--data-dir=/var/lib/etcd",
            "--listen-client-urls=http://127.0.0.1:2379,http://10.0.0.1:2379",
            "--heartbeat-interval=200",
            "--log-outputs=stderr",
            "--auto-compaction-retention=1",
            "--experimental-watch-progress-notify-interval=5000ms",
            "--client-cert-auth=false",
        ]
    );
    assert_eq!(
        warnings(&r),
        [
            "unrecognized key no-such-key in e.yaml is ignored",
            "loaded server configuration from e.yaml; other command line flags and environment variables are ignored: --name, ETCD_DATA_DIR",
            "enable-v2 in e.yaml is ignored: tessera serves the v3 API only",
        ]
    );
}

#[test]
fn the_config_file_may_come_from_the_environment_and_names_tls_files_by_section() {
    let yaml = "peer-transport-security:\n  cert-file: /etc/etcd/peer.crt\n  auto-tls: true\n  allowed-cn: x\nclient-transport-security:\n  trusted-ca-file: /etc/etcd/ca.crt\n";
    let r = with_file("", &[("ETCD_CONFIG_FILE", "e.yaml")], yaml).unwrap();
    assert_eq!(
        r.args,
        ["--peer-cert-file=/etc/etcd/peer.crt", "--peer-auto-tls=true", "--trusted-ca-file=/etc/etcd/ca.crt"]
    );
    assert_eq!(warnings(&r)[0], "unrecognized key peer-transport-security.allowed-cn in e.yaml is ignored");
    let err = run("--config-file missing.yaml", &[]).unwrap_err();
    assert!(err.to_string().starts_with("config file missing.yaml: "), "{err}");
}

#[test]
fn tls_flags_are_honoured() {
    let r = run("--cert-file a.crt --client-cert-auth --cipher-suites X,Y --tls-min-version TLS1.3", &[]).unwrap();
    assert_eq!(
        r.args,
        ["--cert-file=a.crt", "--client-cert-auth=true", "--cipher-suites=X,Y", "--tls-min-version=TLS1.3"]
    );
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

#[test]
fn go_values() {
    assert_eq!(go_duration_ms("1h2m3.5s"), Some(3_723_500.0));
    assert_eq!(go_duration_ms("250ms"), Some(250.0));
    assert_eq!(go_duration_ms("1500000ns"), Some(1.5));
    assert_eq!(go_duration_ms("10"), None);
    assert_eq!(go_duration_ms("s"), None);
    assert_eq!(go_bool("T"), Some(true));
    assert_eq!(go_bool("yes"), None);
}
