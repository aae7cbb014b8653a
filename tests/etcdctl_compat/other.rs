//! Scenarios of watch, leases, locks, elections and maintenance commands.

use super::harness::*;

// ---------------------------------------------------------------------------
// watch: history replays from a marked revision (so output does not depend
// on when the watch connected), over keys in all four regions

fn watch_scenario() -> Scenario {
    scenario(
        "watch",
        vec![
            mark("w0", "a/1"),
            r("put a/1 A"),
            r("put c/1 C"),
            txn("", "\nput u/1 U\nput a/2 A2\nput n/1 N\n\n\n"),
            r("put c/1 C2"),
            r("del a/ z/"),
            r("put c/1 C3"),
            r(r#"put c/2 """#),
            r("put z/end E"),
            until(r#"watch --rev {w0+1} --prefix """#, "z/end"),
            until(r#"watch --rev {w0+1} --prefix "" -w json"#, "ei9lbmQ="),
            until(r#"watch --rev {w0+1} --prefix "" --prev-kv"#, "z/end"),
            until("watch --rev {w0+1} c/1", "C3"),
            until("watch --rev {w0+1} c/1 --prev-kv -w json", "QzM="),
            until("watch --rev {w0+1} a/ n/", "c/2"),
            until("watch --rev {w0+4} --prefix n", "n/1"),
            r("compaction {w0+3}"),
            r("watch --rev {w0+1} c/1"),
            r("watch --rev {w0+2} c/1 -w json"),
            until("watch --rev {w0+3} c/1", "C3"),
        ],
    )
}

#[test]
fn watch_matches_etcd() {
    compare_with_etcd(vec![watch_scenario()]);
}

// ---------------------------------------------------------------------------
// leases, locks, elections and maintenance commands whose output is the
// same on any one-member cluster (lease ids and sessions masked per server)

fn grant(name: &'static str, ttl: i64) -> Step {
    Step::Grant { name, ttl }
}

fn lease_scenario() -> Scenario {
    scenario(
        "leases",
        vec![
            grant("l1", 100),
            r("lease list"),
            r("put c/a 1 --lease={lease:l1}"),
            r("lease timetolive {lease:l1}"),
            // One key: etcd lists a lease's keys in Go map order (random).
            r("lease timetolive {lease:l1} --keys"),
            r("put c/b 2 --lease={lease:l1}"),
            r("put c/c 3"),
            r("get c/ --prefix -w json"),
            r("lease keep-alive --once {lease:l1}"),
            grant("short", 1),
            r("lease revoke {lease:l1}"),
            r("get c/ --prefix"),
            r("lease revoke {lease:l1}"),
            r("lease timetolive {lease:l1}"),
            r("lease timetolive 1234"),
            r("lease keep-alive --once 1234"),
            r("lease grant 9000000001"),
            r("put c/d 4 --lease={lease:l1}"),
            r("lease revoke {lease:short}"),
            r("lease list"),
        ],
    )
}

fn lock_elect_maintenance_scenario() -> Scenario {
    scenario(
        "locks, elections, alarms",
        vec![
            until("lock lk/", "lk/"),
            r("get lk/ --prefix --keys-only"),
            until("elect el/ alice", "alice"),
            r("alarm list"),
            r("alarm disarm"),
        ],
    )
}

/// The per-endpoint commands, through `http://` endpoints (etcdctl 3.4 sends
/// the URL as the HTTP/2 :authority: src/server/front.rs). What they print
/// that belongs to one cluster (version, sizes, raft indexes, hashes,
/// timings) is masked; the shape, the flags and the errors are compared.
fn maintenance_scenario() -> Scenario {
    scenario(
        "endpoint status, hashkv, health, defrag, snapshot, move-leader",
        vec![
            r("put d/1 x"),
            r_masked("endpoint status", mask_status_table),
            r_masked("endpoint status -w fields", mask_status),
            r_masked("endpoint status -w json", mask_status),
            r_masked("endpoint hashkv", mask_hash),
            r_masked("endpoint hashkv -w json", mask_hash),
            r_masked("endpoint health", mask_took),
            r("defrag"),
            r_masked("snapshot save {dir}/snap.db", mask_zap_info),
            r("move-leader {member}"),
            r("move-leader 1234"),
            r_masked("member list", mask_peer_urls),
            r("get d/1"),
        ],
    )
}

/// Replaces columns of etcdctl's simple (", "-separated) output.
fn mask_columns(s: &str, columns: &[(usize, &str)]) -> String {
    s.lines()
        .map(|line| {
            let mut fields: Vec<&str> = line.split(", ").collect();
            for &(i, placeholder) in columns {
                if let Some(f) = fields.get_mut(i) {
                    *f = placeholder;
                }
            }
            fields.join(", ") + "\n"
        })
        .collect()
}

/// `endpoint status`: `ep, id, version, db size, leader, learner, raft term,
/// raft index, applied index, errors`.
fn mask_status_table(s: &str) -> String {
    mask_columns(s, &[(2, "<version>"), (3, "<db size>"), (6, "<term>"), (7, "<index>"), (8, "<applied>")])
}

/// `endpoint status -w fields|json`.
fn mask_status(s: &str) -> String {
    let mut s = mask_string_after(s, "\"Version\" : \"", "<version>");
    s = mask_string_after(&s, "\"version\":\"", "<version>");
    for pat in [
        "\"DBSize\" : ",
        "\"RaftIndex\" : ",
        "\"RaftAppliedIndex\" : ",
        "\"dbSize\":",
        "\"dbSizeInUse\":",
        "\"raftIndex\":",
        "\"raftTerm\":",
        "\"raftAppliedIndex\":",
    ] {
        s = mask_number_after(&s, pat, "<n>");
    }
    s
}

/// `member list`: `id, status, name, peer urls, client urls, learner`.
/// The peer URLs differ (etcd here listens on a chosen port; a single
/// tessera store shows etcd's default, http://localhost:2380).
fn mask_peer_urls(s: &str) -> String {
    mask_columns(s, &[(3, "<peer urls>")])
}

/// `endpoint hashkv`: the hash is of each server's own storage.
fn mask_hash(s: &str) -> String {
    mask_number_after(&mask_number_after(s, "<endpoint>, ", "<hash>"), "\"hash\":", "<hash>")
}

/// `endpoint health`: `... is healthy: successfully committed proposal: took = 1.2ms`.
fn mask_took(s: &str) -> String {
    mask_run_after(s, "took = ", "<took>", |b| *b != b'\n', |_| true)
}

/// `snapshot save` logs its steps as zap JSON lines with times and sizes:
/// each is compared by its message.
fn mask_zap_info(s: &str) -> String {
    s.lines()
        .map(|line| match line.strip_prefix("{\"level\":\"info\"") {
            Some(rest) => {
                let msg = rest.split("\"msg\":\"").nth(1).and_then(|m| m.split('"').next()).unwrap_or(rest);
                format!("info: {msg}\n")
            }
            None => format!("{line}\n"),
        })
        .collect()
}

#[test]
fn leases_locks_elections_and_maintenance_match_etcd() {
    compare_with_etcd(vec![lease_scenario(), lock_elect_maintenance_scenario(), maintenance_scenario()]);
}
