//! The scenario model, the normalisation of what legitimately differs
//! between two clusters, and the runner that compares etcd and tessera.

use super::common::{self, etcdctl, etcdctl_until, Etcd, Tessera};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// scenario model

pub enum Step {
    /// One etcdctl invocation (args after `--endpoints URL`), optional stdin.
    /// Args and stdin may contain `{mark}`, `{mark+N}`, `{mark-N}`. `mask`
    /// hides what this command prints that differs between two clusters
    /// (sizes, hashes, raft indexes), in stdout and stderr.
    Run { args: Vec<String>, stdin: Option<String>, mask: Option<fn(&str) -> String> },
    /// Runs `get <key> -w json` (compared like any step) and remembers etcd's
    /// header revision under `name` for later `{name}` placeholders.
    Mark { name: &'static str, key: &'static str },
    /// A long-lived invocation (`watch`): runs until its stdout contains
    /// `until`, then is killed; its output is compared like any step.
    Until { args: Vec<String>, until: &'static str },
    /// `lease grant <ttl>` on both; each server's lease id is remembered as
    /// `name`: `{lease:name}` in later args becomes that server's own id (in
    /// hex, as etcdctl takes it), and the ids in outputs read `<lease:name>`.
    Grant { name: &'static str, ttl: i64 },
    /// `tessera admin <args>` against tessera only (a split or merge between
    /// two etcdctl steps, which must change nothing etcdctl prints).
    Admin { args: Vec<String> },
}

/// Keys under these prefixes end in a lease id etcdctl itself granted (lock
/// and elect sessions); outputs show it as `<session>`.
pub const SESSION_PREFIXES: [&str; 2] = ["lk//", "el//"];

/// What differs between the two servers in a step: the endpoint, the member
/// id, a scratch directory for files etcdctl writes, and the ids of the
/// leases each granted.
pub struct Side {
    pub endpoint: String,
    pub member: u64,
    pub dir: tempfile::TempDir,
    pub leases: Vec<(&'static str, i64)>,
}

impl Side {
    fn new(endpoint: &str) -> Side {
        let (out, err, code) = etcdctl(endpoint, &["endpoint", "status", "-w", "json"], None);
        assert_eq!(code, 0, "endpoint status on {endpoint}: {err}");
        let at = out.find("\"member_id\":").unwrap_or_else(|| panic!("no member id in {out}")) + 12;
        let member = out[at..].split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok());
        let member = member.unwrap_or_else(|| panic!("no member id in {out}"));
        let dir = tempfile::Builder::new().prefix("tessera-etcdctl-").tempdir().expect("scratch dir");
        Side { endpoint: endpoint.to_string(), member, dir, leases: Vec::new() }
    }

    /// `{lease:name}` -> this server's id in hex; `{member}` -> its member id
    /// in hex; `{dir}` -> its scratch directory.
    fn fill(&self, s: &str) -> String {
        let mut s = s.replace("{member}", &format!("{:x}", self.member));
        s = s.replace("{dir}", &self.dir.path().display().to_string());
        for (name, id) in &self.leases {
            s = s.replace(&format!("{{lease:{name}}}"), &format!("{id:x}"));
        }
        s
    }

    /// This server's lease ids and member id (hex and decimal), endpoint and
    /// scratch directory -> placeholders.
    fn mask(&self, s: &str) -> String {
        let mut s = s.replace(self.endpoint.trim_start_matches("http://"), "<endpoint>");
        s = s.replace(&self.dir.path().display().to_string(), "<dir>");
        let m = self.member;
        for form in [format!("{m:016x}"), format!("{m:x}"), m.to_string()] {
            s = s.replace(&form, "<member>");
        }
        for (name, id) in &self.leases {
            // etcdctl prints ids zero-padded to 16 hex digits.
            s = s.replace(&format!("{id:016x}"), &format!("<lease:{name}>"));
            s = s.replace(&format!("{id:x}"), &format!("<lease:{name}>"));
            s = s.replace(&id.to_string(), &format!("<lease:{name}>"));
        }
        for p in SESSION_PREFIXES {
            s = mask_hex_after(&s, p, "<session>");
        }
        s
    }
}

/// Replaces a run of hex digits right after `pat` with `placeholder`.
pub fn mask_hex_after(s: &str, pat: &str, placeholder: &str) -> String {
    mask_run_after(s, pat, placeholder, u8::is_ascii_hexdigit, |run| !run.is_empty())
}

/// The lease id in `lease <hex> granted with TTL(...)`.
pub fn granted_id(stdout: &str) -> Option<i64> {
    let hex = stdout.strip_prefix("lease ")?.split_whitespace().next()?;
    i64::from_str_radix(hex, 16).ok()
}

pub struct Scenario {
    pub name: &'static str,
    pub steps: Vec<Step>,
}

pub fn scenario(name: &'static str, steps: Vec<Step>) -> Scenario {
    Scenario { name, steps }
}

/// A step from a shell-like command line: whitespace separates words,
/// "double" or 'single' quotes group (and `""` is an empty argument).
pub fn r(cmdline: &str) -> Step {
    Step::Run { args: split_words(cmdline), stdin: None, mask: None }
}

/// Like [`r`], for a command whose output holds per-cluster values that
/// `mask` hides.
pub fn r_masked(cmdline: &str, mask: fn(&str) -> String) -> Step {
    Step::Run { args: split_words(cmdline), stdin: None, mask: Some(mask) }
}

/// A `watch` (or other endless) step, stopped once `until` was printed.
pub fn until(cmdline: &str, until: &'static str) -> Step {
    Step::Until { args: split_words(cmdline), until }
}

/// Like [`r`], with `input` on stdin.
pub fn r_in(cmdline: &str, input: impl Into<String>) -> Step {
    Step::Run { args: split_words(cmdline), stdin: Some(input.into()), mask: None }
}

/// `etcdctl txn [flags]` with `input` on stdin (compares, blank line, success
/// ops, blank line, failure ops, blank line).
pub fn txn(flags: &str, input: impl Into<String>) -> Step {
    r_in(&format!("txn {flags}"), input)
}

pub fn admin(cmdline: &str) -> Step {
    Step::Admin { args: split_words(cmdline) }
}

pub fn mark(name: &'static str, key: &'static str) -> Step {
    Step::Mark { name, key }
}

pub fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    cur.push(q);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Replaces `{name}`, `{name+N}`, `{name-N}` with revisions from `marks`.
pub fn substitute(s: &str, marks: &HashMap<&'static str, i64>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let Some(close_rel) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 1..open + close_rel];
        let (name, delta) = match inner.find(['+', '-']) {
            Some(i) => (&inner[..i], inner[i..].parse::<i64>().ok()),
            None => (inner, Some(0)),
        };
        match (marks.get(name), delta) {
            (Some(base), Some(delta)) => {
                out.push_str(&rest[..open]);
                out.push_str(&(base + delta).to_string());
            }
            _ => out.push_str(&rest[..open + close_rel + 1]),
        }
        rest = &rest[open + close_rel + 1..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// normalisation

/// Replaces, after each `pat`, the run of bytes `in_run` accepts with
/// `placeholder` when `masked` says so (else keeps it).
pub fn mask_run_after(
    s: &str,
    pat: &str,
    placeholder: &str,
    in_run: fn(&u8) -> bool,
    masked: fn(&str) -> bool,
) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(pat) {
        let after = i + pat.len();
        out.push_str(&rest[..after]);
        let len = rest[after..].bytes().take_while(in_run).count();
        let run = &rest[after..after + len];
        out.push_str(if masked(run) { placeholder } else { run });
        rest = &rest[after + len..];
    }
    out.push_str(rest);
    out
}

/// Replaces a non-zero decimal number right after `pat` with `placeholder`.
/// Zeros stay (etcd leaves cluster/member id and term 0 in nested txn
/// response headers; a server that fills them must show up as a diff).
pub fn mask_number_after(s: &str, pat: &str, placeholder: &str) -> String {
    mask_run_after(s, pat, placeholder, u8::is_ascii_digit, |n| n.bytes().any(|b| b != b'0'))
}

/// Replaces the rest of a JSON string value after `pat` (up to the closing
/// quote) with `placeholder`.
pub fn mask_string_after(s: &str, pat: &str, placeholder: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(pat) {
        let after = i + pat.len();
        out.push_str(&rest[..after]);
        let end = rest[after..].find('"').map_or(rest.len(), |j| after + j);
        out.push_str(placeholder);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Only what legitimately differs between two clusters:
/// * `-w json` header: `cluster_id`, `member_id`, `raft_term` (non-zero values);
/// * `-w fields` header: `"ClusterID"`, `"MemberID"`, `"RaftTerm"` (non-zero values);
/// * etcdctl's zap warning line on errors: `"ts"` and `"target"`
///   (`endpoint://client-<uuid>/<host:port>`). Its `"error"` field, which
///   carries the gRPC code and message, is compared as is.
pub fn normalize(s: &str) -> String {
    let mut s = s.to_string();
    for (pat, ph) in [
        ("\"cluster_id\":", "<cluster_id>"),
        ("\"member_id\":", "<member_id>"),
        ("\"raft_term\":", "<raft_term>"),
        ("\"ClusterID\" : ", "<cluster_id>"),
        ("\"MemberID\" : ", "<member_id>"),
        ("\"RaftTerm\" : ", "<raft_term>"),
    ] {
        s = mask_number_after(&s, pat, ph);
    }
    s = mask_string_after(&s, "{\"level\":\"warn\",\"ts\":\"", "<ts>");
    s = mask_string_after(&s, "\"target\":\"endpoint://client-", "<target>");
    s
}

/// Revision in the first `"revision":N` of a `-w json` output.
pub fn header_revision(json: &str) -> Option<i64> {
    let i = json.find("\"revision\":")? + "\"revision\":".len();
    let digits: String = json[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

// ---------------------------------------------------------------------------
// diff and runner

pub fn shorten(line: &str) -> String {
    const MAX: usize = 300;
    if line.len() <= MAX {
        return line.to_string();
    }
    let mut cut = MAX;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}... <{} bytes in all>", &line[..cut], line.len())
}

/// Line diff (LCS) of `expected` (etcd) vs `actual` (tessera): `-` etcd only,
/// `+` tessera only.
pub fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.split('\n').collect();
    let b: Vec<&str> = actual.split('\n').collect();
    let mut out = String::new();
    if a.len() * b.len() > 4_000_000 {
        let _ = writeln!(out, "  (too long to diff) etcd:");
        for l in a.iter().take(50) {
            let _ = writeln!(out, "  - {}", shorten(l));
        }
        let _ = writeln!(out, "  tessera:");
        for l in b.iter().take(50) {
            let _ = writeln!(out, "  + {}", shorten(l));
        }
        return out;
    }
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            let _ = writeln!(out, "    {}", shorten(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "  - {}", shorten(a[i]));
            i += 1;
        } else {
            let _ = writeln!(out, "  + {}", shorten(b[j]));
            j += 1;
        }
    }
    out
}

pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs one step on both servers at once; with `until`, as a long-lived
/// command stopped once it printed that.
/// Outputs are raw: normalise them with [`normalize`] and [`Side::mask`].
pub fn run_both(sides: &[Side; 2], args: &[String], stdin: Option<&str>, until: Option<&str>) -> (Outcome, Outcome) {
    let run = |side: &Side| {
        let args: Vec<String> = args.iter().map(|a| side.fill(a)).collect();
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let stdin = stdin.map(|s| side.fill(s));
        let (stdout, stderr, code) = match until {
            Some(u) => etcdctl_until(&side.endpoint, &args, u),
            None => etcdctl(&side.endpoint, &args, stdin.as_deref()),
        };
        Outcome { stdout, stderr, code }
    };
    std::thread::scope(|s| {
        let e = s.spawn(|| run(&sides[0]));
        let t = s.spawn(|| run(&sides[1]));
        let e = e.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let t = t.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (e, t)
    })
}

pub fn describe_step(args: &[String], stdin: Option<&str>) -> String {
    let shown: Vec<String> = args
        .iter()
        .map(|a| if a.is_empty() || a.contains(char::is_whitespace) { format!("{a:?}") } else { a.clone() })
        .collect();
    let mut d = format!("etcdctl {}", shown.join(" "));
    if let Some(input) = stdin {
        let shown = if input.len() > 400 {
            format!("<{} bytes, starting {:?}>", input.len(), &input[..40.min(input.len())])
        } else {
            format!("{input:?}")
        };
        let _ = write!(d, "  <<< stdin {shown}");
    }
    d
}

/// Time budget of one test fn (startup included); the test fns run in
/// parallel, so this is also about the budget of the whole file.
pub const BUDGET: Duration = Duration::from_secs(50);

/// Starts one etcd and one tessera, runs all scenarios in order on both and
/// panics with a readable report listing every mismatch.
pub fn compare_with_etcd(scenarios: Vec<Scenario>) {
    common::require_etcd();
    let started = Instant::now();
    let (etcd, tessera) = std::thread::scope(|s| {
        let e = s.spawn(Etcd::start);
        let t = s.spawn(|| Tessera::start(&["--name", "ref"]));
        let e = e.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let t = t.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (e, t)
    });
    let boot = started.elapsed();

    let mut marks: HashMap<&'static str, i64> = HashMap::new();
    let mut sides = [Side::new(etcd.endpoint()), Side::new(tessera.endpoint())];
    let mut report = String::new();
    let (mut steps_run, mut mismatches) = (0usize, 0usize);
    for sc in &scenarios {
        for (idx, step) in sc.steps.iter().enumerate() {
            // Bounded: each etcdctl call has its own 20 s limit, and no new step
            // starts once the budget of this test fn is used up.
            if started.elapsed() > BUDGET {
                panic!(
                    "comparison exceeded its {BUDGET:?} budget at [{}] step {} after {steps_run} steps \
                     ({mismatches} mismatches so far):\n{report}",
                    sc.name,
                    idx + 1
                );
            }
            if let Step::Admin { args } = step {
                let endpoint = &sides[1].endpoint;
                let args: Vec<String> = args.iter().map(|a| region_of(endpoint, a)).collect();
                common::admin(endpoint, &args);
                continue;
            }
            let mask = match step {
                Step::Run { mask: Some(m), .. } => *m,
                _ => |s: &str| s.to_string(),
            };
            let (args, stdin, mark_name, stop_at) = match step {
                Step::Run { args, stdin, .. } => (
                    args.iter().map(|a| substitute(a, &marks)).collect::<Vec<_>>(),
                    stdin.as_ref().map(|s| substitute(s, &marks)),
                    None,
                    None,
                ),
                Step::Mark { name, key } => {
                    (vec!["get".to_string(), key.to_string(), "-w".into(), "json".into()], None, Some(*name), None)
                }
                Step::Until { args, until } => {
                    (args.iter().map(|a| substitute(a, &marks)).collect::<Vec<_>>(), None, None, Some(*until))
                }
                Step::Grant { ttl, .. } => (vec!["lease".into(), "grant".into(), ttl.to_string()], None, None, None),
                Step::Admin { .. } => unreachable!("run above"),
            };
            let (e, t) = run_both(&sides, &args, stdin.as_deref(), stop_at);
            if let Step::Grant { name, .. } = step {
                for (side, out) in sides.iter_mut().zip([&e, &t]) {
                    let id = granted_id(&out.stdout)
                        .unwrap_or_else(|| panic!("[{}] no lease id in {:?} / {:?}", sc.name, out.stdout, out.stderr));
                    side.leases.push((name, id));
                }
            }
            let clean = |side: &Side, o: Outcome| Outcome {
                stdout: mask(&side.mask(&normalize(&o.stdout))),
                stderr: mask(&side.mask(&normalize(&o.stderr))),
                code: o.code,
            };
            let (e, t) = (clean(&sides[0], e), clean(&sides[1], t));
            steps_run += 1;
            if let Some(name) = mark_name {
                let rev = header_revision(&e.stdout).unwrap_or_else(|| {
                    panic!("[{}] mark {name}: no revision in etcd output {:?} / {:?}", sc.name, e.stdout, e.stderr)
                });
                marks.insert(name, rev);
            }
            if e.stdout == t.stdout && e.stderr == t.stderr && e.code == t.code {
                continue;
            }
            mismatches += 1;
            let _ =
                writeln!(report, "\n=== [{}] step {}: {}", sc.name, idx + 1, describe_step(&args, stdin.as_deref()));
            if e.code != t.code {
                let _ = writeln!(report, "  exit code: etcd {} / tessera {}", e.code, t.code);
            }
            if e.stdout != t.stdout {
                let _ = write!(report, "  stdout (- etcd, + tessera):\n{}", line_diff(&e.stdout, &t.stdout));
            }
            if e.stderr != t.stderr {
                let _ = write!(report, "  stderr (- etcd, + tessera):\n{}", line_diff(&e.stderr, &t.stderr));
            }
        }
    }
    let took = started.elapsed();
    eprintln!(
        "{} scenarios, {steps_run} etcdctl steps on each server, {mismatches} mismatches; startup {boot:?}, total {took:?}",
        scenarios.len()
    );
    if mismatches > 0 {
        const MAX_REPORT: usize = 200_000;
        if report.len() > MAX_REPORT {
            let mut cut = MAX_REPORT;
            while !report.is_char_boundary(cut) {
                cut -= 1;
            }
            report.truncate(cut);
            report.push_str("\n... (report truncated)\n");
        }
        panic!(
            "tessera differs from etcd 3.4 in {mismatches} of {steps_run} etcdctl invocations:\n{report}\n\
             --- tessera output (tail) ---\n{}",
            tessera.log_tail(8 << 10)
        );
    }
    drop(etcd);
    drop(tessera);
}

/// An admin argument `{region:KEY}` becomes the id of the region holding
/// KEY now (ids are not fixed: each store takes them from its own share,
/// src/raftstore/region_ids.rs); any other argument stays as it is.
fn region_of(endpoint: &str, arg: &str) -> String {
    let Some(key) = arg.strip_prefix("{region:").and_then(|a| a.strip_suffix('}')) else {
        return arg.to_string();
    };
    let listed = common::admin(endpoint, &["regions", "--json"]);
    let regions: Vec<serde_json::Value> = serde_json::from_str(&listed).expect("admin regions --json");
    let holds = |r: &serde_json::Value| {
        let (start, end) = (r["start_key"].as_str().unwrap_or(""), r["end_key"].as_str().unwrap_or(""));
        start <= key && (end.is_empty() || key < end)
    };
    // The innermost (a cluster's meta region, if listed, spans every key).
    let region = regions
        .iter()
        .filter(|r| holds(r))
        .max_by_key(|r| {
            (r["start_key"].as_str().unwrap_or("").to_string(), !r["end_key"].as_str().unwrap_or("").is_empty())
        })
        .unwrap_or_else(|| panic!("no region holds {key}: {listed}"));
    region["id"].to_string()
}
