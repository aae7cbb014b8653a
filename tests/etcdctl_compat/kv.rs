//! Scenarios of the KV commands: put, get, del, historical reads,
//! oversize values, txn, compaction, and reads and writes over regions.

use super::harness::*;

// ---------------------------------------------------------------------------
// scenarios: put / get / del / historical reads / oversize (keys c/ .. h/)

fn put_scenario() -> Scenario {
    scenario(
        "put",
        vec![
            r("put c/a 1"),
            r("put c/a 2 --prev-kv"),
            r("put c/b x --prev-kv"),
            r("put c/a 3 --prev-kv -w json"),
            r("put c/a 4 --prev-kv -w fields"),
            r("put c/b y -w json"),
            r("put c/b z -w fields"),
            // ignore-value: error on a missing key, keeps the value otherwise
            r("put c/nokey --ignore-value"),
            r("put c/a --ignore-value"),
            r("put c/a --ignore-value --prev-kv -w json"),
            // leases (etcdctl parses --lease as hex): none exists
            r("put c/a 5 --lease=123"),
            r("put c/a 5 --lease=abc -w json"),
            r("put c/a 5 --lease=0"),
            r("put c/a 6 --ignore-lease"),
            r("put c/a 7 --ignore-lease --lease=5"),
            // argument errors and the empty key
            r("put c/a v --ignore-value"),
            r(r#"put "" x"#),
            r("put"),
            r("put c/only-key"),
            r_in("put c/stdin", "value from stdin\nsecond line"),
            r_in("put c/empty-stdin", ""),
            r(r#"put "c/sp ace" "v a l""#),
            r("put c/extra v extra-arg"),
            r("get c/ --prefix -w json"),
            r("get c/stdin -w fields"),
            r("get c/a"),
        ],
    )
}

fn get_scenario() -> Scenario {
    let mut steps = vec![
        r("put d/k1 v3"),
        r("put d/k2 v2"),
        r("put d/k3 v1"),
        r("put d/k1 v9"),
        r("put d/k2 v0"),
        r("put d/k2 v5"),
        r("put d/t1 same"),
        r("put d/t2 same"),
        r("put d/t0 same"),
        r("get d/k1"),
        r("get d/k1 -w json"),
        r("get d/k1 -w fields"),
        r("get d/nothere"),
        r("get d/nothere -w json"),
        r("get d/nothere -w fields"),
        r("get d/k --prefix"),
        r("get d/k --prefix -w json"),
        r("get d/k --prefix -w fields"),
        r("get d/k2 d/k4"),
        r("get d/k1 d/k3 -w json"),
        r("get d/k --prefix --limit 2"),
        r("get d/k --prefix --limit 2 -w json"),
        r("get d/k --prefix --limit 3 -w json"),
        r("get d/k --prefix --limit=-3"),
    ];
    for target in ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"] {
        for order in ["ASCEND", "DESCEND"] {
            steps.push(r(&format!("get d/ --prefix --sort-by={target} --order={order}")));
        }
    }
    steps.extend([
        r("get d/k --prefix --sort-by=VERSION --order=DESCEND --limit 2 -w json"),
        r("get d/k --prefix --sort-by=KEY --order=DESCEND --limit 1 -w json"),
        r("get d/ --prefix --sort-by=MODIFY --limit 1 -w json"),
        r("get d/ --prefix --sort-by=VALUE --order=DESCEND --limit 4 -w fields"),
        r("get d/ --prefix --order=DESCEND"),
        r("get d/ --prefix --order=DESCEND --limit 2"),
        r("get d/ --prefix --sort-by=value"),
        r("get d/ --prefix --sort-by=CREATE"),
        // ties keep key order
        r("get d/t --prefix --sort-by=VALUE --order=DESCEND"),
        r("get d/t --prefix --sort-by=VERSION --order=ASCEND"),
        r("get d/ --prefix --sort-by=VERSION --order=DESCEND"),
        r("get d/ --prefix --order=down"),
        r("get d/k --prefix --keys-only"),
        r("get d/k --prefix --keys-only -w json"),
        r("get d/k --prefix --keys-only -w fields"),
        r("get d/k --prefix --print-value-only"),
        r("get d/k1 --print-value-only --keys-only"),
        r("get d/k1 --print-value-only -w json"),
        r("get d/k --prefix --count-only"),
        r("get d/k --prefix -w table"),
        r("get d/k --prefix --hex"),
        r("get d/k --prefix --consistency=s"),
        r("get d/k --prefix --consistency=x"),
        // empty key, range_end < key, range_end == key
        r(r#"get """#),
        r(r#"get "" -w json"#),
        r("get"),
        r("get d/k --prefix --from-key"),
        r("get d/k3 d/k1"),
        r("get d/k3 d/k1 -w json"),
        r("get d/k1 d/k1 -w json"),
        r("get d/k1 d/k2 extra-arg"),
    ]);
    scenario("get", steps)
}

fn historical_scenario() -> Scenario {
    scenario(
        "get --rev",
        vec![
            mark("r0", "e/r"),
            r("put e/r v1"), // r0+1
            r("put e/r v2"), // r0+2
            r("put e/s x"),  // r0+3
            r("del e/r"),    // r0+4
            r("put e/r v3"), // r0+5
            r("get e/r --rev={r0+1}"),
            r("get e/r --rev={r0+2} -w json"),
            r("get e/r --rev={r0+4}"),
            r("get e/r --rev={r0+4} -w json"),
            r("get e/ --prefix --rev={r0+3} -w json"),
            r("get e/ --prefix --rev={r0+3} --sort-by=KEY --order=DESCEND"),
            r("get e/ --prefix --rev={r0+2} --limit 1 -w json"),
            r("get e/ --prefix --rev={r0} -w json"),
            r("get e/r --rev=0"),
            r("get e/r --rev=-1"),
            r("get e/r --rev={r0+5} -w json"),
            r("get e/r --rev={r0+6}"),
            r("get e/r --rev=100000 -w json"),
            r("get e/ --prefix --rev=1"),
        ],
    )
}

fn del_scenario() -> Scenario {
    scenario(
        "del",
        vec![
            r("put f/1 a"),
            r("put f/2 b"),
            r("put f/3 c"),
            r("put f/4 d"),
            r("put f/5 e"),
            r("put f/6 f"),
            r("put g/1 x"),
            r("del f/1"),
            r("del f/1"),
            r("del f/2 --prev-kv"),
            r("del f/nope --prev-kv"),
            r("del f/nope -w json"),
            r("del f/3 f/5"),
            // range end below start: deletes nothing, no new revision
            r("del f/9 f/0"),
            r("del f/9 f/0 -w json"),
            r("del f/5 --prev-kv -w json"),
            r("del f/ --prefix --prev-kv -w fields"),
            r("put f/x 1"),
            r("del f/x -w json"),
            r("del f/x -w fields"),
            r("del f/ --prefix"),
            r(r#"del """#),
            r("del"),
            r("del f/a f/b f/c"),
            r("del f/ --prefix --from-key"),
            r("get f/ --prefix"),
            r("get g/ --prefix -w json"),
            r("put f/a 1"),
            r("put f/b 2"),
            r("del f/ --prefix --prev-kv"),
            r("get f/ --prefix -w json"),
        ],
    )
}

fn oversize_scenario() -> Scenario {
    let value = |n: usize| "x".repeat(n);
    scenario(
        "oversize put",
        vec![
            // > 2 MiB gRPC message: refused by etcdctl's client before sending
            r_in("put h/big2", value(2 << 20)),
            // > 1.5 MiB request: "etcdserver: request is too large"
            r_in("put h/big16", value(1_677_722)),
            r_in("put h/big15", value(1_572_864)),
            // comfortably below the limit: accepted
            r_in("put h/ok", value(1_500_000)),
            r("get h/ --prefix --keys-only -w json"),
            r("get h/ --prefix --keys-only"),
        ],
    )
}

#[test]
fn kv_put_get_del_match_etcd() {
    compare_with_etcd(vec![put_scenario(), get_scenario(), historical_scenario(), del_scenario(), oversize_scenario()]);
}

// ---------------------------------------------------------------------------
// txn (keys i/)

fn txn_scenarios() -> Vec<Scenario> {
    let many = |n: usize, f: &dyn Fn(usize) -> String| -> String { (1..=n).map(|i| f(i) + "\n").collect() };
    vec![
        scenario(
            "txn branches and compares",
            vec![
                r("put i/c1 one"),
                r("put i/c2 two"),
                txn(
                    "",
                    "value(\"i/c1\") = \"one\"\n\nput i/c1 uno\nget i/c1\ndel i/c2\nget i/c --prefix\n\nput i/c1 nope\n\n",
                ),
                txn("", "value(\"i/c1\") = \"one\"\n\nput i/c1 nope\n\nget i/c1\nput i/c3 three\n\n"),
                txn(
                    "",
                    "version(\"i/c1\") = \"2\"\ncreate(\"i/c1\") > \"0\"\nmod(\"i/c1\") < \"100000\"\n\nget i/c1\n\nget i/c3\n\n",
                ),
                txn("", "version(\"i/c1\") != \"2\"\n\nget i/c1\n\nget i/c3\n\n"),
                txn("", "value(\"i/c1\") > \"a\"\nvalue(\"i/c1\") < \"z\"\n\n\n\n"),
                txn("-w json", "value(\"i/c1\") != \"uno\"\n\n\n\n"),
                txn(
                    "-w json",
                    "value(\"i/c1\") = \"uno\"\n\nget i/c1\nput i/c3 x --prev-kv\ndel i/c2 --prev-kv\nget i/c --prefix --keys-only\n\nput i/c1 never\n\n",
                ),
                txn(
                    "",
                    "value(\"i/c1\") = \"uno\"\n\nget i/c1\nput i/c3 y --prev-kv\ndel i/c9 --prev-kv\nget i/c --prefix --keys-only\ndel i/nonex\nget i/nonex\n\nput i/c1 never\n\n",
                ),
                txn(
                    "-w fields",
                    "value(\"i/c1\") = \"uno\"\n\nget i/c1\nput i/c3 z --prev-kv\ndel i/c9 --prev-kv\nget i/c --prefix\ndel i/nonex\n\nput i/c1 never\n\n",
                ),
                // compares on a missing key: value fails, version/create/mod compare with 0
                txn("", "value(\"i/zz\") = \"\"\n\nput i/r 1\n\n\n"),
                txn(
                    "",
                    "version(\"i/zz\") = \"0\"\ncreate(\"i/zz\") = \"0\"\nmod(\"i/zz\") = \"0\"\n\nput i/r 1\n\n\n",
                ),
                mark("m", "i/r"),
                txn("", "mod(\"i/r\") = \"{m}\"\ncreate(\"i/r\") = \"{m}\"\n\nget i/r\n\n\n"),
                txn("", "mod(\"i/r\") < \"{m}\"\n\n\nget i/r\n\n"),
                txn("", "create(\"i/r\") > \"{m-1}\"\nversion(\"i/r\") = \"1\"\n\ndel i/r --prev-kv\n\n\n"),
                // empty txn
                txn("", "\n\n\n"),
                txn("-w json", "\n\n\n"),
                txn("-w fields", "\n\n\n"),
                r("get i/ --prefix -w json"),
            ],
        ),
        scenario(
            "txn duplicate keys",
            vec![
                txn("", "\nput i/d 1\nput i/d 2\n\n\n"),
                txn("", "\ndel i/d\nput i/d 2\n\n\n"),
                txn("", "\nput i/d 3\ndel i/d --prefix\n\n\n"),
                txn("", "\nput i/d 3\ndel i/ --prefix\n\n\n"),
                txn("", "\nput i/d 3 --prev-kv\ndel i/d --prev-kv\n\n\n"),
                txn("-w json", "\nget i/d\nget i/d\nput i/d 3\n\n\n"),
                txn("", "\nput i/d 4\n\nput i/d 5\n\n"),
                txn("-w json", "\ndel i/d\ndel i/d\n\n\n"),
                txn("-w json", "\nput i/e 1 --prev-kv\nget i/e\n\n\n"),
                r("get i/d i/f -w json"),
            ],
        ),
        scenario(
            "txn size limit",
            vec![
                txn("", format!("\n{}\n\n", many(128, &|i| format!("put i/m{i} v")))),
                txn("", format!("\n{}\n\n", many(129, &|i| format!("put i/n{i} v")))),
                txn("", format!("{}\n\n\n", many(129, &|i| format!("version(\"i/m{i}\") = \"1\"")))),
                txn("", format!("\n\n{}\n", many(129, &|i| format!("get i/m{i}")))),
                txn("", format!("\n{}\n\n", many(129, &|_| "get i/m1".to_string()))),
                txn(
                    "",
                    format!(
                        "{}\n{}\n{}\n",
                        many(128, &|i| format!("version(\"i/m{i}\") = \"1\"")),
                        many(128, &|i| format!("get i/m{i} --keys-only")),
                        many(128, &|i| format!("put i/m{i} w")),
                    ),
                ),
                r("get i/m128 -w json"),
                r("get i/m --prefix --limit 3 -w json"),
                r("get i/n --prefix -w json"),
            ],
        ),
        scenario(
            "txn errors",
            vec![
                txn("", "\nput i/l x --lease=123\n\n\n"),
                txn("", "\nput i/nokey --ignore-value\n\n\n"),
                txn("", "\nget i/c1 --rev=100000\n\n\n"),
                txn("", "value(\"\") = \"x\"\n\n\n\n"),
                txn("", "\nget \"\"\n\n\n"),
                txn("", "\ndel \"\"\n\n\n"),
                txn("", "\nput \"\" v\n\n\n"),
                // parse errors, detected by etcdctl itself (exit 3)
                txn("", "bogus\n\n"),
                txn("", "value(\"i/c1\") = \"a\"\n\nfoo bar\n\n"),
                txn("", ""),
                txn("", "value(\"i/c1\") = \"one\"\n\nget i/c1\n\n"),
                txn("", "value(\"i/c1\") = a\n\n\n\n"),
                txn("", "vaLue(\"i/c1\") = \"a\"\n\n\n\n"),
                txn("", "version(\"i/c1\") = \"x\"\n\n\n\n"),
                txn("", "\nput i/e 1\nget i/e -w json\n\n\n"),
                r("get i/ --prefix --keys-only"),
            ],
        ),
    ]
}

#[test]
fn txn_matches_etcd() {
    compare_with_etcd(txn_scenarios());
}

// ---------------------------------------------------------------------------
// compaction (keys k/); a fresh store, so revision numbers are absolute

fn compaction_scenario() -> Scenario {
    scenario(
        "compaction",
        vec![
            r("get k/a -w json"),
            r("get k/a --rev=1"),
            // nothing compacted yet: revision 0 and 1 are accepted
            r("compaction 0"),
            r("compaction 1"),
            r("compaction 1"),
            r("put k/a 1"), // 2
            r("put k/a 2"), // 3
            r("put k/b 3"), // 4
            r("put k/a 3"), // 5
            r("get k/ --prefix --rev=2 -w json"),
            r("compaction 3"),
            r("compaction 3"),
            r("compaction 2"),
            r("compaction 0"),
            r("compaction 100"),
            r("compaction 6"),
            r("get k/a --rev=2"),
            r("get k/a --rev=2 -w json"),
            r("get k/a --rev=3"),
            r("get k/ --prefix --rev=4 -w json"),
            r("get k/ --prefix --rev=1"),
            r("get k/a --rev=6"),
            r("compaction 4 --physical"),
            r("get k/a --rev=3"),
            r("get k/a --rev=4 -w json"),
            // compacting at the current revision is allowed
            r("compaction 5"),
            r("compaction 5 --physical"),
            r("get k/ --prefix -w json"),
            r("get k/a --rev=5"),
            txn("", "\nget k/a --rev=2\n\n\n"),
            txn("-w json", "\nget k/a --rev=5\n\n\n"),
            r("compaction"),
            r("compaction abc"),
            r("put k/c 1"), // 6
            r("compaction 6 -w json"),
            r("get k/ --prefix --sort-by=MODIFY --order=DESCEND -w json"),
        ],
    )
}

#[test]
fn compaction_matches_etcd() {
    compare_with_etcd(vec![compaction_scenario()]);
}

// ---------------------------------------------------------------------------
// reads spanning regions (single-key writes only, one per key)

fn cross_region_reads_scenario() -> Scenario {
    // 10 keys in all regions ("" .. b, b .. m, m .. t, t ..); keep <= 12 keys
    // so that etcd's sort keeps ties in key order.
    scenario(
        "cross-region reads",
        vec![
            r("put a/1 A"),
            r("put b B"),
            r("put b/1 B1"),
            r("put l/1 L"),
            r("put m M"),
            r("put m/1 M1"),
            r("put s/1 S"),
            r("put t T"),
            r("put t/1 T1"),
            r("put z/1 Z"),
            r(r#"get "" --prefix"#),
            r(r#"get "" --prefix --keys-only -w json"#),
            r(r#"get "" --from-key --keys-only"#),
            r("get a z"),
            r("get b t -w json"),
            r("get a/ z --limit 3"),
            r("get a/ z --limit 3 -w json"),
            r(r#"get "" --prefix --sort-by=KEY --order=DESCEND --limit 4"#),
            r(r#"get "" --prefix --sort-by=VALUE --order=DESCEND"#),
            r(r#"get "" --prefix --sort-by=CREATE --order=DESCEND --limit 2 -w json"#),
            r("get l/ --from-key"),
            r("get m --from-key --keys-only"),
            r("get b/1 --from-key --limit 2 -w json"),
            r("get b --prefix -w fields"),
            r("get m --prefix --print-value-only"),
            // range_end < key around the split points
            r("get b a"),
            r("get t a -w json"),
            r("get m b"),
            r("get t m -w json"),
            r(r#"get "" --prefix --rev=4 -w json"#),
            r("put b/1 B2"),
            r("put m/1 M2"),
            r(r#"get "" --prefix --sort-by=MODIFY --order=DESCEND -w fields"#),
            r(r#"get "" --prefix --sort-by=VERSION"#),
            r("get a z --rev=11 --keys-only"),
        ],
    )
}

/// Splits and merges between etcdctl steps change nothing etcdctl prints:
/// the same revisions, values, versions and errors as etcd 3.4 (which has no
/// regions). Keys s/... live in the region [m, t) of the compared tessera;
/// the splits cut it at s/k and s/p, the merges fold the parts back.
fn reshaping_scenario() -> Scenario {
    scenario(
        "splits and merges between steps",
        vec![
            r("put s/a 1"),
            r("put s/m 2"),
            r("put s/z 3"),
            admin("split --at s/k"),
            r("get s/ --prefix -w json"),
            r("put s/a 10"),
            txn("", "\nput s/b x\nput s/n y\n\n\n"),
            admin("split --at s/p"),
            r("get s/ --prefix"),
            admin("merge --left {region:s/k} --right {region:s/p}"),
            r("del s/ --prefix -w json"),
            admin("merge --left {region:s/a} --right {region:s/k}"),
            r("get s/ --prefix --rev=2 -w json"),
            r("put s/c 5"),
            r("get s/c -w json"),
        ],
    )
}

#[test]
fn splits_and_merges_leave_etcdctl_output_unchanged() {
    compare_with_etcd(vec![reshaping_scenario()]);
}

#[test]
fn cross_region_reads_match_etcd() {
    compare_with_etcd(vec![cross_region_reads_scenario()]);
}

// ---------------------------------------------------------------------------
// writes spanning regions: DeleteRange / Txn over several regions

fn cross_region_writes_scenario() -> Scenario {
    let seed = || vec![r("put a/1 A"), r("put b/1 B"), r("put l/1 L"), r("put m/1 M"), r("put t/1 T"), r("put z/1 Z")];
    let mut steps = seed();
    steps.extend([
        r("del b a"),
        r("del b a -w json"),
        r("del m b"),
        r("del t a -w json"),
        r("del b/1 --from-key --prev-kv -w json"),
        r(r#"get "" --prefix --keys-only"#),
    ]);
    steps.extend(seed());
    steps.extend([
        r("del a/ z/ --prev-kv"),
        r(r#"get "" --prefix --keys-only"#),
        txn(
            "",
            "value(\"z/1\") = \"Z\"\nversion(\"b/1\") = \"0\"\n\nput a/x 1\nput m/x 2\nput t/x 3\nget \"\" --prefix --keys-only\n\nput z/x 4\n\n",
        ),
        txn(
            "-w json",
            "value(\"a/x\") = \"1\"\nvalue(\"t/x\") = \"3\"\n\ndel a/x --prev-kv\ndel m/ --prefix\nput b/x 5\nget a z --keys-only\n\n\n",
        ),
        txn("", "value(\"b/x\") = \"nope\"\n\n\nput l/x 6\nput s/x 7\ndel t/x\n\n"),
        txn("", "\nput a/d 1\nput z/d 2\ndel \"\" --from-key\n\n\n"),
        r(r#"get "" --prefix -w json"#),
        r(r#"del "" --prefix --prev-kv -w fields"#),
        r(r#"get "" --prefix"#),
    ]);
    steps.extend(seed());
    steps.extend([r(r#"del "" --from-key"#), r(r#"get "" --from-key -w json"#)]);
    scenario("cross-region writes", steps)
}

#[test]
fn cross_region_writes_match_etcd() {
    compare_with_etcd(vec![cross_region_writes_scenario()]);
}
