'use strict';
// Self-checking exercise of the node `etcd3` client (1.1.2) against an etcd
// v3 endpoint (tessera with --initial-split-keys b,m,t, or etcd). Prints
// "ALL OK" and exits 0 only if every check passes. Run by tests/node_client.rs.
// Usage: node node_etcd3.js PORT [HOST]
// etcd3 module dir from TESSERA_NODE_MODULES (scripts/setup-clients.sh installs it).
const path = require('path');
const assert = require('assert');
const modDir = process.env.TESSERA_NODE_MODULES || path.join(__dirname, 'pkg', 'node_modules');
const { Etcd3, EtcdLockFailedError } = require(path.join(modDir, 'etcd3'));

const hardTimer = setTimeout(() => { console.error('HARD TIMEOUT (100s)'); process.exit(2); }, 100000);
hardTimer.unref();

const port = process.argv[2];
const host = process.argv[3] || '127.0.0.1';
if (!port) { console.error('usage: node check.js PORT [HOST]'); process.exit(1); }
const client = new Etcd3({ hosts: `http://${host}:${port}`, dialTimeout: 5000 });
const sleep = ms => new Promise(r => setTimeout(r, ms));
const withTimeout = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout ${ms}ms: ${what}`)), ms))]);

let failures = 0;
async function check(name, fn) {
  try {
    await withTimeout(fn(), 20000, name);
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join(' | ') : e}`);
  }
}

async function main() {
  await check('put/get string', async () => {
    await client.put('foo').value('bar');
    assert.strictEqual(await client.get('foo').string(), 'bar');
    assert.strictEqual(await client.get('nonexistent-key').string(), null);
  });

  await check('getAll().prefix across regions', async () => {
    // keys that land in regions [..b) [b..m) [m..t) [t..) with split keys b,m,t
    // prefix '' would be everything; use distinct prefix per key set below
    const keys = { a1: 'va', c1: 'vc', n1: 'vn', u1: 'vu' };
    for (const [k, v] of Object.entries(keys)) await client.put(k).value(v);
    const all = await client.getAll().prefix('').strings();
    for (const [k, v] of Object.entries(keys)) assert.strictEqual(all[k], v, `key ${k} in full scan`);
    const sorted = await client.getAll().prefix('').keys();
    const idx = ['a1', 'c1', 'n1', 'u1'].map(k => sorted.indexOf(k));
    assert.deepStrictEqual([...idx].sort((a, b) => a - b), idx, 'keys sorted');
    assert.deepStrictEqual(await client.getAll().prefix('c').strings(), { c1: 'vc' });
    assert.deepStrictEqual(await client.getAll().prefix('u').strings(), { u1: 'vu' });
    const cnt = await client.getAll().prefix('').count();
    assert.ok(cnt >= 5, `count ${cnt}`);
    // limit across regions
    const lim = await client.getAll().prefix('').limit(3).keys();
    assert.strictEqual(lim.length, 3);
  });

  await check('delete().prefix', async () => {
    await client.put('dp/a').value('1');
    await client.put('dp/b').value('2');
    await client.put('dq').value('3');
    const res = await client.delete().prefix('dp/').exec();
    assert.strictEqual(String(res.deleted), '2');
    assert.deepStrictEqual(await client.getAll().prefix('dp/').keys(), []);
    assert.strictEqual(await client.get('dq').string(), '3');
    // delete spanning all regions
    await client.delete().prefix('').exec();
    assert.strictEqual(await client.getAll().prefix('').count(), 0);
  });

  await check('txn if/then/else across 2 regions', async () => {
    await client.put('a1').value('x');
    await client.put('n1').value('y');
    let r = await client.if('a1', 'Value', '==', 'x').then(client.put('n1').value('from-then'))
      .else(client.put('n1').value('from-else')).commit();
    assert.strictEqual(r.succeeded, true);
    assert.strictEqual(await client.get('n1').string(), 'from-then');
    r = await client.if('a1', 'Value', '==', 'nope').then(client.put('n1').value('then2'))
      .else(client.put('n1').value('else2'), client.get('a1')).commit();
    assert.strictEqual(r.succeeded, false);
    assert.strictEqual(await client.get('n1').string(), 'else2');
    assert.strictEqual(r.responses.length, 2);
    assert.strictEqual(r.responses[1].response_range.kvs[0].value.toString(), 'x');
  });

  await check('watch prefix put+delete', async () => {
    const watcher = await client.watch().prefix('w/').create();
    const events = [];
    const got = new Promise(resolve => {
      watcher.on('put', kv => { events.push(['put', kv.key.toString(), kv.value.toString()]); if (events.length >= 2) resolve(); });
      watcher.on('delete', kv => { events.push(['delete', kv.key.toString()]); if (events.length >= 2) resolve(); });
    });
    await client.put('w/1').value('hello');
    await client.put('x/ignored').value('z');
    await client.delete().key('w/1').exec();
    await withTimeout(got, 10000, 'watch events');
    await watcher.cancel();
    assert.deepStrictEqual(events, [['put', 'w/1', 'hello'], ['delete', 'w/1']]);
  });

  await check('lease put/keepaliveOnce/revoke', async () => {
    const lease = client.lease(10);
    lease.on('lost', err => console.log('  (lease lost event)', err && err.message));
    const id = await lease.grant();
    assert.ok(id && id !== '0', `lease id ${id}`);
    await lease.put('lk').value('lv');
    assert.strictEqual(await client.get('lk').string(), 'lv');
    const ka = await lease.keepaliveOnce();
    assert.ok(Number(ka.TTL) > 0 && Number(ka.TTL) <= 10, `keepalive TTL ${ka.TTL}`);
    await lease.revoke();
    assert.strictEqual(await client.get('lk').string(), null);
  });

  await check('lock acquire/release, second waits', async () => {
    const l1 = await client.lock('l').ttl(10).acquire();
    // second lock: etcd3 1.x acquire() rejects with EtcdLockFailedError when held -> retry loop
    let failedWhileHeld = 0;
    let acquiredAt = null;
    let released = false;
    const second = (async () => {
      for (;;) {
        try {
          const l2 = await client.lock('l').ttl(10).acquire();
          acquiredAt = released;
          return l2;
        } catch (e) {
          if (!(e instanceof EtcdLockFailedError)) throw e;
          failedWhileHeld++;
          await sleep(100);
        }
      }
    })();
    await sleep(700);
    assert.ok(failedWhileHeld >= 1, 'second lock should fail while first held');
    assert.strictEqual(acquiredAt, null, 'second acquired while first held');
    released = true;
    await l1.release();
    const l2 = await withTimeout(second, 10000, 'second lock acquire');
    assert.strictEqual(acquiredAt, true);
    await l2.release();
    assert.strictEqual(await client.get('l').string(), null);
  });

  await check('election campaign/leader/resign', async () => {
    const election = client.election('e', 10);
    const c1 = election.campaign('x');
    await withTimeout(c1.wait(), 10000, 'c1 elected');
    assert.strictEqual(await election.leader(), 'x');
    const c2 = client.election('e', 10).campaign('y');
    let c2elected = false;
    c2.on('elected', () => { c2elected = true; });
    c2.on('error', e => console.log('  (c2 error)', e.message));
    await sleep(700);
    assert.strictEqual(c2elected, false, 'c2 elected while c1 leader');
    await c1.proclaim('x2');
    assert.strictEqual(await election.leader(), 'x2');
    await c1.resign();
    await withTimeout(c2.wait(), 10000, 'c2 elected after resign');
    assert.strictEqual(await election.leader(), 'y');
    await c2.resign();
    assert.strictEqual(await election.leader(), undefined);
  });
}

main().then(() => {
  client.close();
  if (failures === 0) { console.log('ALL OK'); process.exit(0); }
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}, e => { console.log('FATAL', e); process.exit(1); });
