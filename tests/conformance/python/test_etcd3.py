"""python-etcd3 (PyPI etcd3 0.12.0) against etcd-fdb: a smoke test of what its users call.

One etcd-fdb process (ETCD_FDB_BIN) serves the whole module: a fresh data directory, a free
loopback port, stopped with SIGTERM at the end (exit code 0 required). Each test uses its own
key prefix. Run with run.sh, which makes the virtual environment.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import warnings

import etcd3
import etcd3.events
import etcd3.exceptions

SERVER = None


def _quiet_closed_watchers(args, default=threading.excepthook):
    """etcd3 0.12's watcher thread reopens its stream after client.close() and dies with
    "Channel closed": a known client quirk, harmless, not worth a traceback in the log."""
    if (args.thread is not None and args.thread.name.startswith("etcd3_watch")
            and isinstance(args.exc_value, ValueError) and "Channel closed" in str(args.exc_value)):
        return
    default(args)


threading.excepthook = _quiet_closed_watchers


class Server:
    def __init__(self):
        binary = os.environ.get("ETCD_FDB_BIN")
        if not binary or not os.path.exists(binary):
            raise RuntimeError("ETCD_FDB_BIN must name the etcd-fdb binary (ctest sets it)")
        self.dir = tempfile.mkdtemp(prefix="etcd-fdb-python-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log_path = os.path.join(self.dir, "etcd-fdb.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", "http://127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.client = self.new_client()
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("etcd-fdb exited early (%s)\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                self.client.get("readiness-probe")
                break
            except etcd3.exceptions.Etcd3Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError("etcd-fdb not ready after 15 s\n" + self.log_tail())
                time.sleep(0.05)

    def new_client(self):
        return etcd3.client(host="127.0.0.1", port=self.port, timeout=10)

    def log_tail(self):
        with open(self.log_path, "rb") as f:
            return f.read()[-8000:].decode(errors="replace")

    def stop(self):
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("etcd-fdb did not exit within 30 s of SIGTERM\n" + self.log_tail())
        finally:
            self.log.close()
        if code != 0:
            raise RuntimeError("etcd-fdb exit status %d after SIGTERM (want 0)\n%s" % (code, self.log_tail()))
        shutil.rmtree(self.dir, ignore_errors=True)


def setUpModule():
    global SERVER
    SERVER = Server()


def tearDownModule():
    SERVER.stop()


class Etcd3Test(unittest.TestCase):
    def setUp(self):
        self.c = SERVER.client

    def wait_until(self, what, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail("%s: not true after %.0f s" % (what, timeout))
            time.sleep(0.05)

    def test_put_get(self):
        r1 = self.c.put("/kv/a", "1")
        self.assertGreater(r1.header.revision, 0)
        value, meta = self.c.get("/kv/a")
        self.assertEqual(value, b"1")
        self.assertEqual(meta.key, b"/kv/a")
        self.assertEqual(meta.version, 1)
        self.assertEqual(meta.create_revision, r1.header.revision)
        self.assertEqual(meta.mod_revision, r1.header.revision)

        r2 = self.c.put("/kv/a", b"2\x00binary", prev_kv=True)
        self.assertGreater(r2.header.revision, r1.header.revision)
        self.assertEqual(r2.prev_kv.value, b"1")
        value, meta = self.c.get("/kv/a")
        self.assertEqual(value, b"2\x00binary")
        self.assertEqual(meta.version, 2)
        self.assertEqual(meta.create_revision, r1.header.revision)
        self.assertEqual(meta.mod_revision, r2.header.revision)

        self.assertEqual(self.c.get("/kv/missing"), (None, None))
        self.assertTrue(self.c.put_if_not_exists("/kv/new", "x"))
        self.assertFalse(self.c.put_if_not_exists("/kv/new", "y"))
        self.assertEqual(self.c.get("/kv/new")[0], b"x")

    def test_get_prefix(self):
        for k in ("b", "a", "c"):
            self.c.put("/pfx/" + k, "v" + k)
        self.c.put("/pfx0", "outside")  # shares the prefix "/pfx" but not "/pfx/"
        got = [(m.key, v) for v, m in self.c.get_prefix("/pfx/")]
        self.assertEqual(got, [(b"/pfx/a", b"va"), (b"/pfx/b", b"vb"), (b"/pfx/c", b"vc")])
        desc = [m.key for _, m in self.c.get_prefix("/pfx/", sort_order="descend")]
        self.assertEqual(desc, [b"/pfx/c", b"/pfx/b", b"/pfx/a"])
        by_create = [m.key for _, m in self.c.get_prefix("/pfx/", sort_order="ascend", sort_target="create")]
        self.assertEqual(by_create, [b"/pfx/b", b"/pfx/a", b"/pfx/c"])
        keys_only = list(self.c.get_prefix("/pfx/", keys_only=True))
        self.assertEqual([m.key for _, m in keys_only], [b"/pfx/a", b"/pfx/b", b"/pfx/c"])
        self.assertTrue(all(not v for v, _ in keys_only))
        self.assertEqual([m.key for _, m in self.c.get_range("/pfx/a", "/pfx/c")], [b"/pfx/a", b"/pfx/b"])
        resp = self.c.get_prefix_response("/pfx/")  # (etcd3 0.12 ignores a limit argument)
        self.assertEqual(resp.count, 3)
        self.assertFalse(resp.more)

    def test_delete(self):
        for k in ("a", "b", "c"):
            self.c.put("/del/" + k, k)
        self.assertTrue(self.c.delete("/del/a"))
        self.assertFalse(self.c.delete("/del/a"))
        self.assertEqual(self.c.get("/del/a"), (None, None))
        resp = self.c.delete("/del/b", prev_kv=True, return_response=True)
        self.assertEqual(resp.deleted, 1)
        self.assertEqual(resp.prev_kvs[0].value, b"b")
        self.c.put("/del/d", "d")
        resp = self.c.delete_prefix("/del/")
        self.assertEqual(resp.deleted, 2)
        self.assertEqual(list(self.c.get_prefix("/del/")), [])

    def test_transaction(self):
        self.c.put("/txn/k", "old")
        tx = self.c.transactions
        ok, responses = self.c.transaction(
            compare=[tx.value("/txn/k") == "old", tx.version("/txn/k") == 1],
            success=[tx.put("/txn/k", "new"), tx.put("/txn/other", "o"), tx.get("/txn/k")],
            failure=[tx.get("/txn/k")])
        self.assertTrue(ok)
        self.assertEqual(len(responses), 3)
        self.assertEqual(responses[2][0][0], b"new")  # a get in a txn sees the txn's put
        self.assertEqual(self.c.get("/txn/other")[0], b"o")

        ok, responses = self.c.transaction(
            compare=[tx.value("/txn/k") == "old"],
            success=[tx.put("/txn/k", "never")],
            failure=[tx.get("/txn/k"), tx.delete("/txn/other")])
        self.assertFalse(ok)
        self.assertEqual(responses[0][0][0], b"new")
        self.assertEqual(self.c.get("/txn/other"), (None, None))
        self.assertEqual(self.c.get("/txn/k")[0], b"new")

        _, meta = self.c.get("/txn/k")
        ok, _ = self.c.transaction(compare=[tx.mod("/txn/k") == meta.mod_revision,
                                            tx.create("/txn/k") < meta.mod_revision + 1],
                                   success=[tx.put("/txn/k", "cas")], failure=[])
        self.assertTrue(ok)
        self.assertTrue(self.c.replace("/txn/k", "cas", "replaced"))
        self.assertFalse(self.c.replace("/txn/k", "cas", "again"))
        self.assertEqual(self.c.get("/txn/k")[0], b"replaced")

    def test_lease(self):
        lease = self.c.lease(ttl=2)
        self.assertGreater(lease.id, 0)
        self.assertEqual(lease.granted_ttl, 2)
        self.assertTrue(0 < lease.remaining_ttl <= 2)
        self.c.put("/lease/a", "1", lease=lease)
        self.c.put("/lease/b", "2", lease=lease.id)
        self.assertEqual(sorted(lease.keys), [b"/lease/a", b"/lease/b"])
        _, meta = self.c.get("/lease/a")
        self.assertEqual(meta.lease_id, lease.id)
        lease.revoke()
        self.assertEqual(list(self.c.get_prefix("/lease/")), [])
        self.assertEqual(lease.remaining_ttl, -1)

        # A lease that is not refreshed expires after its TTL and takes its key with it.
        short = self.c.lease(ttl=2)
        self.c.put("/lease/expiring", "x", lease=short)
        start = time.monotonic()
        self.wait_until("key of an expired lease deleted", lambda: self.c.get("/lease/expiring") == (None, None))
        self.assertGreater(time.monotonic() - start, 0.5)
        self.assertEqual(short.remaining_ttl, -1)

    def test_lease_refresh(self):
        lease = self.c.lease(ttl=30)
        # refresh() sends one LeaseKeepAliveRequest and half-closes the stream at once.
        refreshed = lease.refresh()
        self.assertTrue(refreshed, "no keepalive response after the client's half-close")
        self.assertEqual(refreshed[0].ID, lease.id)
        self.assertEqual(refreshed[0].TTL, 30)
        lease.revoke()

    def test_watch(self):
        events, cancel = self.c.watch("/watch/k")
        try:
            self.c.put("/watch/k", "v1")
            self.c.put("/watch/other", "ignored")
            self.c.delete("/watch/k")
            ev = next(events)
            self.assertIsInstance(ev, etcd3.events.PutEvent)
            self.assertEqual((ev.key, ev.value), (b"/watch/k", b"v1"))
            ev = next(events)
            self.assertIsInstance(ev, etcd3.events.DeleteEvent)
            self.assertEqual(ev.key, b"/watch/k")
        finally:
            cancel()

        # A prefix watch from a past revision replays history, with prev_kv.
        rev = self.c.put("/watch/p/1", "a").header.revision
        self.c.put("/watch/p/1", "b")
        self.c.put("/watch/p/2", "c")
        events, cancel = self.c.watch_prefix("/watch/p/", start_revision=rev, prev_kv=True)
        try:
            got = [next(events) for _ in range(3)]
            self.assertEqual([(e.key, e.value) for e in got],
                             [(b"/watch/p/1", b"a"), (b"/watch/p/1", b"b"), (b"/watch/p/2", b"c")])
            self.assertEqual(got[0].mod_revision, rev)
            self.assertEqual(got[1].prev_value, b"a")
        finally:
            cancel()

        # A callback watch and watch_once with a timeout.
        seen = threading.Event()
        received = []

        def callback(response):
            received.extend(response.events)
            seen.set()

        watch_id = self.c.add_watch_callback("/watch/cb", callback)
        self.c.put("/watch/cb", "called")
        self.assertTrue(seen.wait(10), "watch callback not called")
        self.c.cancel_watch(watch_id)
        self.assertEqual(received[0].value, b"called")
        with self.assertRaises(etcd3.exceptions.WatchTimedOut):
            self.c.watch_once("/watch/quiet", timeout=0.5)
        threading.Timer(0.2, lambda: self.c.put("/watch/once", "x")).start()
        ev = self.c.watch_once("/watch/once", timeout=10)
        self.assertEqual(ev.value, b"x")

    def test_lock(self):
        # etcd3 0.12's Lock gives tenacity an old-style wait callback, which tenacity 6 still
        # accepts with a DeprecationWarning.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message='"wait" function must accept', category=DeprecationWarning)
            self.lock_checks()

    def lock_checks(self):
        other = SERVER.new_client()
        try:
            lock = self.c.lock("job", ttl=10)
            self.assertTrue(lock.acquire(timeout=5))
            self.assertTrue(lock.is_acquired())
            rival = other.lock("job", ttl=10)
            self.assertFalse(rival.acquire(timeout=0.5))
            # A waiter gets the lock as soon as it is released.
            threading.Timer(0.3, lock.release).start()
            start = time.monotonic()
            self.assertTrue(rival.acquire(timeout=10))
            self.assertLess(time.monotonic() - start, 9)
            self.assertFalse(lock.is_acquired())
            self.assertTrue(rival.release())
            with self.c.lock("job", ttl=10) as held:
                self.assertTrue(held.is_acquired())
            self.assertEqual(list(self.c.get_prefix("/locks/")), [])
        finally:
            other.close()

    def test_status_and_members(self):
        status = self.c.status()
        self.assertTrue(status.version)
        self.assertIsNotNone(status.leader)
        members = list(self.c.members)
        self.assertEqual(len(members), 1)
        self.assertEqual(members[0].client_urls, ["http://127.0.0.1:%d" % SERVER.port])


if __name__ == "__main__":
    unittest.main()
