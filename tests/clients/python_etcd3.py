#!/usr/bin/env python3
"""Self-checking exercise of the python `etcd3` client (kragniz, 0.12) against an
etcd v3 endpoint (tessera started with --initial-split-keys b,m,t, or etcd).
Usage: python_etcd3.py PORT [HOST]  (run by tests/python_client.rs)
Prints "ALL OK" and exits 0 only if every check passes; exits 1 otherwise.
Whole run is bounded by a hard alarm (exit 2)."""
import os
import queue
import sys
import threading
import time
import traceback
import uuid

import etcd3  # noqa: E402
import etcd3.events  # noqa: E402

HARD_LIMIT = 120


def _watchdog():
    time.sleep(HARD_LIMIT)
    print(f"FATAL: hard time limit {HARD_LIMIT}s exceeded", flush=True)
    os._exit(2)


threading.Thread(target=_watchdog, daemon=True).start()

PORT = int(sys.argv[1])
HOST = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
KEYS = ["a1", "c1", "n1", "u1"]  # one per region with split keys b,m,t

c = etcd3.client(HOST, PORT, timeout=5)
failures = []


def check(fn):
    name = fn.__name__
    t0 = time.time()
    try:
        fn()
        print(f"PASS {name} ({time.time() - t0:.2f}s)", flush=True)
    except Exception as e:  # noqa: BLE001
        failures.append(name)
        print(f"FAIL {name} ({time.time() - t0:.2f}s): {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=6, file=sys.stdout)
    return fn


def val(k):
    v, _ = c.get(k)
    return v


def cleanup():
    for k in KEYS:
        c.delete_prefix(k)
    c.delete_prefix("w/")


def eq(a, b, what=""):
    assert a == b, f"{what}: expected {b!r}, got {a!r}"


# ---------------------------------------------------------------- checks
@check
def t00_cleanup():
    cleanup()
    for k in KEYS:
        eq(val(k), None, f"get {k} after cleanup")


@check
def t01_put_get():
    for k in KEYS:
        r = c.put(k, "v-" + k)
        assert r.header.revision > 0, f"put {k}: bad revision {r.header.revision}"
    for k in KEYS:
        v, meta = c.get(k)
        eq(v, ("v-" + k).encode(), f"get {k}")
        eq(meta.key, k.encode(), f"meta.key {k}")
        eq(meta.version, 1, f"meta.version {k}")
        assert meta.create_revision > 0 and meta.mod_revision == meta.create_revision, \
            f"{k}: create_rev={meta.create_revision} mod_rev={meta.mod_revision}"
    # overwrite bumps version
    c.put("a1", "v-a1b")
    v, meta = c.get("a1")
    eq(v, b"v-a1b", "get a1 after overwrite")
    eq(meta.version, 2, "a1 version after overwrite")
    c.put("a1", "v-a1")
    eq(val("missing-key-zz"), None, "get missing key")


@check
def t02_get_prefix_and_range():
    for k in KEYS:
        c.put(k + "/x", "x-" + k)
        c.put(k + "/y", "y-" + k)
    for k in KEYS:
        got = sorted((m.key, v) for v, m in c.get_prefix(k))
        exp = sorted([(k.encode(), ("v-" + k).encode()),
                      ((k + "/x").encode(), ("x-" + k).encode()),
                      ((k + "/y").encode(), ("y-" + k).encode())])
        eq(got, exp, f"get_prefix {k}")
    # sorted / limited prefix get
    got = [m.key for v, m in c.get_prefix("c1", sort_order="descend", sort_target="key")]
    eq(got, [b"c1/y", b"c1/x", b"c1"], "get_prefix c1 descend")
    # cross-region range scan a..v (spans all 4 regions)
    got = [m.key for v, m in c.get_range("a", "v")]
    exp = [k.encode() + s for k in KEYS for s in (b"", b"/x", b"/y")]
    got = [k for k in got if k in exp]
    eq(got, exp, "get_range a..v across regions (ascending key order)")
    # get_all must contain all of them
    allkeys = {m.key for v, m in c.get_all()}
    missing = set(exp) - allkeys
    assert not missing, f"get_all missing {missing}"


@check
def t03_delete():
    eq(c.delete("n1/x"), True, "delete existing n1/x")
    eq(val("n1/x"), None, "n1/x after delete")
    eq(c.delete("n1/x"), False, "delete missing n1/x")
    # prev_kv
    r = c.delete("u1/x", prev_kv=True, return_response=True)
    eq(r.deleted, 1, "deleted count u1/x")
    eq([kv.value for kv in r.prev_kvs], [b"x-u1"], "prev_kvs u1/x")


@check
def t04_delete_prefix():
    for k in KEYS:
        r = c.delete_prefix(k + "/")
        assert r.deleted >= 1, f"delete_prefix {k}/ deleted {r.deleted}"
        eq(list(c.get_prefix(k + "/")), [], f"get_prefix {k}/ after delete_prefix")
        eq(val(k), ("v-" + k).encode(), f"{k} survives delete_prefix {k}/")


@check
def t05_transaction():
    for k in KEYS:
        c.put(k, "v-" + k)  # version now 2 for each? depends; read it
    va1 = c.get("a1")[1].version
    ok, resps = c.transaction(
        compare=[c.transactions.version("a1") == va1,
                 c.transactions.value("c1") == "v-c1"],
        success=[c.transactions.put("n1", "txn-n1"),
                 c.transactions.put("u1", "txn-u1"),
                 c.transactions.get("a1")],
        failure=[c.transactions.put("a1", "SHOULD-NOT")],
    )
    eq(ok, True, "txn succeeded")
    eq(len(resps), 3, "txn response count")
    got_get = resps[2]
    eq([v for v, m in got_get], [b"v-a1"], "txn get a1 result")
    eq(val("n1"), b"txn-n1", "n1 after txn")
    eq(val("u1"), b"txn-u1", "u1 after txn")
    eq(val("a1"), b"v-a1", "a1 untouched after txn")
    # n1/u1 written atomically: same mod_revision
    eq(c.get("n1")[1].mod_revision, c.get("u1")[1].mod_revision,
       "n1/u1 mod_revision equal (one txn)")
    # failing compare -> failure branch
    ok, resps = c.transaction(
        compare=[c.transactions.value("c1") == "wrong"],
        success=[c.transactions.put("a1", "SHOULD-NOT")],
        failure=[c.transactions.put("u1", "fail-u1"), c.transactions.delete("n1")],
    )
    eq(ok, False, "txn with false compare")
    eq(val("a1"), b"v-a1", "a1 untouched by failed txn")
    eq(val("u1"), b"fail-u1", "u1 set by failure branch")
    eq(val("n1"), None, "n1 deleted by failure branch")
    # create_revision == 0 compare (used by locks) and mod compare
    ok, _ = c.transaction(
        compare=[c.transactions.create("n1") == 0,
                 c.transactions.mod("a1") > 0],
        success=[c.transactions.put("n1", "v-n1")], failure=[])
    eq(ok, True, "txn create(n1)==0 & mod(a1)>0")
    eq(val("n1"), b"v-n1", "n1 recreated")
    c.put("u1", "v-u1")


def drain_events(q, want):
    """The events of watch callbacks queued on q, until `want` arrived or 5 s passed."""
    events = []
    deadline = time.time() + 5
    while len(events) < want and time.time() < deadline:
        try:
            r = q.get(timeout=max(0.05, deadline - time.time()))
        except queue.Empty:
            break
        if isinstance(r, Exception):
            raise r
        events.extend(r.events)
    return events


@check
def t06_watch_callback():
    q = queue.Queue()
    wid = c.add_watch_callback("w/cb", q.put, range_end="w/cc")
    try:
        time.sleep(0.3)
        c.put("w/cb1", "one")
        c.put("w/cb2", "two")
        c.delete("w/cb1")
        c.put("w/zz-outside", "nope")
        events = drain_events(q, 3)
        got = [(type(e).__name__, e.key) for e in events]
        eq(got, [("PutEvent", b"w/cb1"), ("PutEvent", b"w/cb2"), ("DeleteEvent", b"w/cb1")],
           "watch callback events")
        eq(events[0].value, b"one", "watch event value")
    finally:
        c.cancel_watch(wid)


@check
def t07_watch_prefix_iterator():
    it, cancel = c.watch_prefix("w/it/")
    timer = threading.Timer(6, cancel)  # bound the iterator
    timer.start()
    got = []
    try:
        def writer():
            time.sleep(0.3)
            for i in range(3):
                c.put(f"w/it/{i}", f"val{i}")
        threading.Thread(target=writer, daemon=True).start()
        for ev in it:
            got.append((ev.key, ev.value))
            if len(got) == 3:
                break
    finally:
        timer.cancel()
        cancel()
    eq(got, [(f"w/it/{i}".encode(), f"val{i}".encode()) for i in range(3)],
       "watch_prefix iterator events")


@check
def t08_watch_cross_region():
    # a watch whose range spans all regions
    q = queue.Queue()
    wid = c.add_watch_callback("a", q.put, range_end="v")
    try:
        time.sleep(0.3)
        for k in KEYS:
            c.put(k, "w-" + k)
        keys = [e.key for e in drain_events(q, 4)]
        eq(keys, [k.encode() for k in KEYS], "cross-region watch events in order")
    finally:
        c.cancel_watch(wid)
    for k in KEYS:
        c.put(k, "v-" + k)


@check
def t09_watch_start_revision():
    r = c.put("w/rev", "r1")
    rev = r.header.revision
    c.put("w/rev", "r2")
    resp = c.watch_once_response("w/rev", timeout=5, start_revision=rev)
    vals = [e.value for e in resp.events]
    assert vals[:1] == [b"r1"], f"watch from start_revision: got {vals}"


@check
def t10_lease():
    lease = c.lease(10)
    assert lease.id > 0, f"lease id {lease.id}"
    c.put("a1/leased", "L", lease=lease)
    c.put("t1/leased", "L", lease=lease)   # other region
    eq(val("a1/leased"), b"L", "leased key present")
    eq(c.get("a1/leased")[1].lease_id, lease.id, "kv lease_id")
    r = lease.refresh()
    ttl = r[0].TTL
    assert 8 <= ttl <= 10, f"refresh TTL {ttl}"
    rem = lease.remaining_ttl
    assert 0 < rem <= 10, f"remaining_ttl {rem}"
    eq(lease.granted_ttl, 10, "granted_ttl")
    eq(sorted(lease.keys), [b"a1/leased", b"t1/leased"], "lease.keys")
    lease.revoke()
    eq(val("a1/leased"), None, "a1/leased gone after revoke")
    eq(val("t1/leased"), None, "t1/leased gone after revoke")
    info = c.get_lease_info(lease.id)
    assert info.TTL == -1, f"revoked lease TTL {info.TTL} (want -1)"


@check
def t11_lease_expiry():
    lease = c.lease(2)
    c.put("c1/exp", "E", lease=lease)
    eq(val("c1/exp"), b"E", "expiring key present")
    deadline = time.time() + 10
    while time.time() < deadline and val("c1/exp") is not None:
        time.sleep(0.25)
    eq(val("c1/exp"), None, "key gone after lease TTL expiry")


@check
def t12_lock():
    name = "pylock-" + uuid.uuid4().hex[:6]
    lk = c.lock(name, ttl=5)
    eq(lk.acquire(timeout=5), True, "acquire")
    eq(lk.is_acquired(), True, "is_acquired after acquire")
    other = c.lock(name, ttl=5)
    eq(other.acquire(timeout=1), False, "second lock acquire while held")
    eq(other.is_acquired(), False, "other.is_acquired while held")
    lk.refresh()
    eq(lk.release(), True, "release")
    eq(lk.is_acquired(), False, "is_acquired after release")
    eq(other.acquire(timeout=5), True, "second lock acquire after release")
    eq(other.release(), True, "second release")
    with c.lock(name, ttl=5) as l3:
        eq(l3.is_acquired(), True, "context-manager lock")
    eq(l3.is_acquired(), False, "context-manager lock released")


@check
def t13_lock_wait_for_release():
    # lock released by another holder while we wait (exercises watch in acquire)
    name = "pylock-" + uuid.uuid4().hex[:6]
    a = c.lock(name, ttl=5)
    eq(a.acquire(timeout=5), True, "a acquire")
    threading.Timer(1.0, a.release).start()
    b = c.lock(name, ttl=5)
    t0 = time.time()
    eq(b.acquire(timeout=5), True, "b acquire after a releases")
    assert time.time() - t0 < 4.5, "b acquire took too long"
    b.release()


@check
def t14_members():
    members = list(c.members)
    assert len(members) >= 1, "no members"
    for m in members:
        assert m.id != 0, f"member id 0: {m}"
        assert m.name, f"member name empty: {m}"
        assert any(f":{PORT}" in u for u in m.client_urls), \
            f"member client_urls {list(m.client_urls)} lack port {PORT}"


@check
def t14_status():
    members = list(c.members)
    st = c.status()
    assert st.version and st.version[0].isdigit(), f"status version {st.version!r}"
    assert st.leader is not None, \
        f"status leader id not among member ids {[m.id for m in members]}"
    assert st.raft_term >= 1, f"raft_term {st.raft_term}"
    assert st.raft_index >= 1, f"raft_index {st.raft_index}"
    assert st.db_size > 0, f"db_size {st.db_size}"
    print(f"     status: version={st.version} leader={st.leader.id:x} "
          f"name={st.leader.name!r} db_size={st.db_size} "
          f"raft_index={st.raft_index} raft_term={st.raft_term} members={len(members)}")


@check
def t14_snapshot():
    # python etcd3's own test_snapshot: the client saves a snapshot and
    # `etcdctl snapshot status` reads it; here its revision is checked too.
    import json
    import subprocess
    import tempfile
    c.put(KEYS[0] + "snap", "v")
    _, meta = c.get(KEYS[0] + "snap")
    with tempfile.NamedTemporaryFile() as f:
        c.snapshot(f)
        f.flush()
        out = subprocess.run(
            ["etcdctl", "snapshot", "status", f.name, "-w", "json"],
            env={**os.environ, "ETCDCTL_API": "3"}, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, f"etcdctl snapshot status: {out.stdout}{out.stderr}"
        status = json.loads(out.stdout)
        assert status["revision"] >= meta.mod_revision, f"status {status}, put at {meta.mod_revision}"
        print(f"     snapshot status: {status}")


@check
def t15_final_cleanup():
    cleanup()
    got = [m.key for v, m in c.get_range("a", "v")]
    got = [k for k in got if any(k.startswith(x.encode()) for x in KEYS)]
    eq(got, [], "keys left after cleanup")


# (no c.close(): it makes etcd3's watcher thread print a spurious traceback)
if failures:
    print(f"FAILED {len(failures)}: {' '.join(failures)}", flush=True)
    os._exit(1)
print("ALL OK", flush=True)
os._exit(0)
