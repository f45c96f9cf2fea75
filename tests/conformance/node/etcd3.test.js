'use strict';
// The npm etcd3 client (1.1.2) against etcd-fdb: a smoke test of what its users call.
//
// One etcd-fdb process (ETCD_FDB_BIN) serves the whole file: a fresh data directory, a free
// loopback port, stopped with SIGTERM at the end (exit code 0 required). Each test uses its
// own keys. Run with run.sh (npm ci, then node --test).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Etcd3, EtcdLeaseInvalidError, EtcdLockFailedError, NotCampaigningError } = require('etcd3');

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

let server; // { proc, port, dir, logPath, exited }
let client;
const clients = [];

function newClient() {
  const c = new Etcd3({ hosts: `http://127.0.0.1:${server.port}` });
  clients.push(c);
  return c;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function logTail() {
  try {
    return fs.readFileSync(server.logPath, 'utf8').slice(-8000);
  } catch {
    return '';
  }
}

// waitUntil polls fn (async, returns truthy when done) for up to ms.
async function waitUntil(what, fn, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) assert.fail(`${what}: not true after ${ms} ms`);
    await sleep(50);
  }
}

// withTimeout resolves as promise does, or fails after ms (leaving no timer behind: a live
// timer would keep the test process running).
async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// nextEvent resolves with the next emission of event on emitter, failing after ms.
function nextEvent(emitter, event, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

before(async () => {
  const bin = process.env.ETCD_FDB_BIN;
  assert.ok(bin && fs.existsSync(bin), 'ETCD_FDB_BIN must name the etcd-fdb binary (ctest sets it)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-fdb-node-'));
  const port = await freePort();
  const logPath = path.join(dir, 'etcd-fdb.log');
  const log = fs.openSync(logPath, 'w');
  const proc = spawn(bin, ['--data-dir', path.join(dir, 'data'),
    '--listen-client-urls', `http://127.0.0.1:${port}`], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const exited = new Promise(resolve => proc.on('exit', (code, signal) => resolve({ code, signal })));
  server = { proc, port, dir, logPath, exited, done: false };
  exited.then(() => { server.done = true; });
  // Wait for the port first: etcd3 backs off for seconds from a host that refused it.
  const deadline = Date.now() + 15000;
  for (;;) {
    if (server.done) assert.fail(`etcd-fdb exited early\n${logTail()}`);
    const up = await new Promise(resolve => {
      const sock = net.connect(port, '127.0.0.1', () => { sock.destroy(); resolve(true); });
      sock.on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) assert.fail(`etcd-fdb not listening after 15 s\n${logTail()}`);
    await sleep(50);
  }
  client = newClient();
  await client.get('readiness-probe').string();
});

after(async () => {
  for (const c of clients) c.close();
  if (!server) return;
  if (server.done) assert.fail(`etcd-fdb exited before the end\n${logTail()}`);
  server.proc.kill('SIGTERM');
  let result;
  try {
    result = await withTimeout(server.exited, 30000, 'etcd-fdb exit after SIGTERM');
  } catch (err) {
    server.proc.kill('SIGKILL');
    assert.fail(`${err.message}\n${logTail()}`);
  }
  assert.equal(result.code, 0, `etcd-fdb exit after SIGTERM: ${JSON.stringify(result)}\n${logTail()}`);
  fs.rmSync(server.dir, { recursive: true, force: true });
});

test('put and get', { timeout: 60000 }, async () => {
  const r1 = await client.put('/kv/a').value('1');
  assert.ok(BigInt(r1.header.revision) > 0n);
  assert.equal(await client.get('/kv/a').string(), '1');
  const kv = (await client.get('/kv/a').exec()).kvs[0];
  assert.equal(kv.key.toString(), '/kv/a');
  assert.equal(kv.version, '1');
  assert.equal(kv.create_revision, r1.header.revision);
  assert.equal(kv.mod_revision, r1.header.revision);

  const prev = await client.put('/kv/a').value(Buffer.from([0, 1, 2])).getPrevious();
  assert.equal(prev.value.toString(), '1');
  assert.deepEqual(await client.get('/kv/a').buffer(), Buffer.from([0, 1, 2]));
  await client.put('/kv/json').value(JSON.stringify({ n: 42 }));
  assert.deepEqual(await client.get('/kv/json').json(), { n: 42 });
  await client.put('/kv/num').value(7);
  assert.equal(await client.get('/kv/num').number(), 7);
  assert.equal(await client.get('/kv/missing').string(), null);
  assert.equal(await client.get('/kv/missing').exists(), false);
});

test('prefix get, sort, limit and count', { timeout: 60000 }, async () => {
  for (const k of ['b', 'a', 'c']) await client.put(`/pfx/${k}`).value(`v${k}`);
  await client.put('/pfx0').value('outside');
  assert.deepEqual(await client.getAll().prefix('/pfx/').strings(),
    { '/pfx/a': 'va', '/pfx/b': 'vb', '/pfx/c': 'vc' });
  assert.deepEqual(await client.getAll().prefix('/pfx/').sort('Key', 'Descend').keys(),
    ['/pfx/c', '/pfx/b', '/pfx/a']);
  assert.deepEqual(await client.getAll().prefix('/pfx/').sort('Create', 'Ascend').keys(),
    ['/pfx/b', '/pfx/a', '/pfx/c']);
  const limited = await client.getAll().prefix('/pfx/').limit(2).exec();
  assert.equal(limited.kvs.length, 2);
  assert.equal(limited.more, true);
  assert.equal(limited.count, '3');
  assert.equal(await client.getAll().prefix('/pfx/').count(), 3);
  const ns = client.namespace('/pfx/');
  assert.deepEqual(await ns.getAll().keys(), ['a', 'b', 'c']);
});

test('delete', { timeout: 60000 }, async () => {
  for (const k of ['a', 'b', 'c', 'd']) await client.put(`/del/${k}`).value(k);
  assert.equal((await client.delete().key('/del/a').exec()).deleted, '1');
  assert.equal((await client.delete().key('/del/a').exec()).deleted, '0');
  const prev = await client.delete().key('/del/b').getPrevious();
  assert.equal(prev[0].value.toString(), 'b');
  assert.equal((await client.delete().prefix('/del/').exec()).deleted, '2');
  assert.deepEqual(await client.getAll().prefix('/del/').keys(), []);
});

test('transaction', { timeout: 60000 }, async () => {
  await client.put('/txn/k').value('old');
  const ok = await client.if('/txn/k', 'Value', '==', 'old').and('/txn/k', 'Version', '==', 1)
    .then(client.put('/txn/k').value('new'), client.put('/txn/other').value('o'), client.get('/txn/k'))
    .else(client.get('/txn/k'))
    .commit();
  assert.equal(ok.succeeded, true);
  assert.equal(ok.responses.length, 3);
  assert.equal(ok.responses[2].response_range.kvs[0].value.toString(), 'new'); // sees its own put
  assert.equal(await client.get('/txn/other').string(), 'o');

  const failed = await client.if('/txn/k', 'Value', '==', 'old')
    .then(client.put('/txn/k').value('never'))
    .else(client.get('/txn/k'), client.delete().key('/txn/other'))
    .commit();
  assert.equal(failed.succeeded, false);
  assert.equal(failed.responses[0].response_range.kvs[0].value.toString(), 'new');
  assert.equal(await client.get('/txn/other').string(), null);

  const kv = (await client.get('/txn/k').exec()).kvs[0];
  const cas = await client.if('/txn/k', 'Mod', '==', kv.mod_revision)
    .then(client.put('/txn/k').value('cas')).commit();
  assert.equal(cas.succeeded, true);
  const stale = await client.if('/txn/k', 'Mod', '==', kv.mod_revision)
    .then(client.put('/txn/k').value('stale')).commit();
  assert.equal(stale.succeeded, false);
  assert.equal(await client.get('/txn/k').string(), 'cas');
});

test('lease with TTL: keepalive, revoke, expiry', { timeout: 60000 }, async () => {
  const lease = client.lease(2);
  const id = await lease.grant();
  await lease.put('/lease/a').value('1');
  await client.put('/lease/b').value('2').lease(id);
  const kv = (await client.get('/lease/a').exec()).kvs[0];
  assert.equal(kv.lease, id);
  const ttl = await client.leaseClient.leaseTimeToLive({ ID: id, keys: true });
  assert.equal(ttl.grantedTTL, '2');
  assert.ok(Number(ttl.TTL) > 0 && Number(ttl.TTL) <= 2, `TTL ${ttl.TTL}`);
  assert.deepEqual(ttl.keys.map(String).sort(), ['/lease/a', '/lease/b']);
  const once = await lease.keepaliveOnce();
  assert.equal(once.TTL, '2');

  // The client keeps the lease alive on its own (every TTL/3) past its TTL.
  let kept = 0;
  lease.on('keepaliveSucceeded', () => { kept++; });
  await sleep(3500);
  assert.ok(kept >= 2, `keepalives in 3.5 s: ${kept}`);
  assert.equal(lease.revoked(), false);
  assert.equal(await client.get('/lease/a').string(), '1');

  await lease.revoke();
  assert.deepEqual(await client.getAll().prefix('/lease/').keys(), []);
  const after = await client.leaseClient.leaseTimeToLive({ ID: id });
  assert.equal(after.TTL, '-1');

  // A lease nobody keeps alive expires after its TTL, with its keys; its holder is told.
  const short = client.lease(2, { autoKeepAlive: false });
  await short.put('/lease/expiring').value('x');
  const start = Date.now();
  await waitUntil('key of an expired lease deleted', async () => !(await client.get('/lease/expiring').exists()));
  assert.ok(Date.now() - start > 500, `expired after ${Date.now() - start} ms`);
  await assert.rejects(short.keepaliveOnce(), EtcdLeaseInvalidError);
});

test('watch: events received', { timeout: 60000 }, async () => {
  const w = await client.watch().key('/watch/k').create();
  try {
    const put = nextEvent(w, 'put');
    await client.put('/watch/other').value('ignored');
    await client.put('/watch/k').value('v1');
    const [kv] = await put;
    assert.equal(kv.key.toString(), '/watch/k');
    assert.equal(kv.value.toString(), 'v1');
    const del = nextEvent(w, 'delete');
    await client.delete().key('/watch/k');
    const [dkv] = await del;
    assert.equal(dkv.key.toString(), '/watch/k');
  } finally {
    await w.cancel();
  }

  // A prefix watch from a past revision replays history, with previous values.
  const rev = (await client.put('/watch/p/1').value('a')).header.revision;
  await client.put('/watch/p/1').value('b');
  await client.put('/watch/p/2').value('c');
  const events = [];
  const replay = client.watch().prefix('/watch/p/').startRevision(rev).withPreviousKV().watcher();
  const three = new Promise(resolve => replay.on('put', (kv, prev) => {
    events.push([kv.key.toString(), kv.value.toString(), prev ? prev.value.toString() : null]);
    if (events.length === 3) resolve();
  }));
  try {
    await withTimeout(three, 10000, `replay (got ${JSON.stringify(events)})`);
    assert.deepEqual(events, [['/watch/p/1', 'a', null], ['/watch/p/1', 'b', 'a'], ['/watch/p/2', 'c', null]]);
  } finally {
    await replay.cancel();
  }
});

test('lock', { timeout: 60000 }, async () => {
  const other = newClient();
  const lock = client.lock('job').ttl(10);
  await lock.acquire();
  const leaseId = await lock.leaseId();
  assert.ok(leaseId);
  // etcd3's lock does not wait: a second acquire fails at once.
  await assert.rejects(other.lock('job').ttl(10).acquire(), EtcdLockFailedError);
  await lock.release();
  const rival = other.lock('job').ttl(10);
  await rival.acquire();
  await assert.rejects(client.lock('job').ttl(10).acquire(), EtcdLockFailedError);
  await rival.release();

  // do() holds the lock around a function; two callers run one after the other.
  let inside = 0;
  let max = 0;
  const critical = async () => {
    inside++;
    max = Math.max(max, inside);
    await sleep(50);
    inside--;
  };
  const results = await Promise.allSettled([client.lock('job2').ttl(10).do(critical),
    other.lock('job2').ttl(10).do(critical)]);
  assert.equal(max, 1);
  assert.ok(results.some(r => r.status === 'fulfilled'));
  for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof EtcdLockFailedError);

  // A lock whose lease is revoked (its holder died) is free again.
  const doomed = client.lock('job3').ttl(10);
  await doomed.acquire();
  await client.leaseClient.leaseRevoke({ ID: await doomed.leaseId() });
  await doomed.release().catch(() => undefined); // stops its keepalives
  const taken = await other.lock('job3').ttl(10).acquire();
  await taken.release();
});

test('election: campaign, leader, observe, proclaim, resign, failover', { timeout: 60000 }, async () => {
  const other = newClient();
  const third = newClient();
  const election = client.election('e', 5);
  assert.equal(await election.leader(), undefined);
  const observer = await election.observe();
  const changes = [];
  observer.on('change', v => { if (v !== undefined && v !== changes[changes.length - 1]) changes.push(v); });
  const campaigns = [];
  const campaign = (c, value) => {
    const cp = c.election('e', 5).campaign(value);
    cp.on('error', () => undefined); // a candidate whose lease is revoked reports it here
    campaigns.push(cp);
    return cp;
  };
  try {
    const one = campaign(client, 'one');
    await one.wait();
    assert.equal(await election.leader(), 'one');
    await waitUntil('observer sees one', () => observer.leader() === 'one');

    await one.proclaim('one-b');
    assert.equal(await election.leader(), 'one-b');
    await waitUntil('observer sees one-b', () => observer.leader() === 'one-b');

    // Candidates queue in the order their keys are created.
    const queued = n => waitUntil(`${n} candidates`, async () => (await client.getAll().prefix('election/e/').count()) === n);
    const two = campaign(other, 'two');
    let twoElected = false;
    two.on('elected', () => { twoElected = true; });
    await queued(2);
    const three = campaign(third, 'three');
    await queued(3);
    await sleep(500);
    assert.equal(twoElected, false, 'second candidate elected while the first leads');
    await two.proclaim('two-b'); // a waiting candidate updates its own key only
    assert.equal(await election.leader(), 'one-b');

    await one.resign();
    await two.wait();
    assert.equal(await election.leader(), 'two-b');
    await waitUntil('observer sees two-b', () => observer.leader() === 'two-b');
    await assert.rejects(one.proclaim('stale'), NotCampaigningError);

    // Failover: the leader's process dies (its lease is revoked); the next in line wins.
    const key = await two.getCampaignKey();
    const lease = (await client.get(key).exec()).kvs[0].lease;
    await client.leaseClient.leaseRevoke({ ID: lease });
    await three.wait();
    assert.equal(await election.leader(), 'three');
    await waitUntil('observer sees three', () => observer.leader() === 'three');
    assert.deepEqual(changes, ['one', 'one-b', 'two-b', 'three']);
  } finally {
    await observer.cancel();
    for (const cp of campaigns) await cp.resign().catch(() => undefined);
  }
  assert.equal(await election.leader(), undefined);
});
