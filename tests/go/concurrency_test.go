package tests

// clientv3's concurrency package (Session, Mutex, Election, STM) against etcd-fdb. These are
// the recipes applications build on (leader election in controllers, distributed locks,
// optimistic multi-key transactions); each test asserts what their users rely on. The same
// file runs with clientv3 3.5 (go.mod) and 3.6 (go36.mod): go.cmake, tests/conformance/README.md.

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// newSession makes a session closed (its lease revoked) when the test ends, before the
// client and the server go away.
func newSession(t *testing.T, c *clientv3.Client, opts ...concurrency.SessionOption) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(c, opts...)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func leaseTTL(t *testing.T, c *clientv3.Client, id clientv3.LeaseID) *clientv3.LeaseTimeToLiveResponse {
	t.Helper()
	r, err := c.TimeToLive(ctxT(t, 10*time.Second), id, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatalf("TimeToLive(%x): %v", id, err)
	}
	return r
}

// waitClosed fails the test unless ch is closed within d.
func waitClosed(t *testing.T, what string, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not done after %v", what, d)
	}
}

// waitKeyGone polls until key is absent, failing after d; it returns how long that took.
func waitKeyGone(t *testing.T, c *clientv3.Client, key string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if len(mustGet(t, c, key).Kvs) == 0 {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("key %q still present after %v", key, d)
	return 0
}

// txnOwnWriteRangeBugs lists where a Range inside a Txn, after the Txn's own Put, differs
// from etcd: etcd sorts and filters the new key by the Txn's revision (the newest). Mutex
// relies on it: its acquiring Txn puts the waiter's key and reads the prefix's first
// created key in one round trip. Keys go under pfx.
func txnOwnWriteRangeBugs(t *testing.T, c *clientv3.Client, pfx string) []string {
	t.Helper()
	mustPut(t, c, pfx+"b", "older")
	rc := mustPut(t, c, pfx+"c", "newer").Header.Revision
	first := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(1)}
	tr, err := c.Txn(ctxT(t, 10*time.Second)).Then(
		clientv3.OpPut(pfx+"a", "own"),
		clientv3.OpGet(pfx, append(first, clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))...),
		clientv3.OpGet(pfx, append(first, clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend))...),
		clientv3.OpGet(pfx, append(first, clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))...),
		clientv3.OpGet(pfx, clientv3.WithPrefix(), clientv3.WithMinModRev(rc)),
		clientv3.OpGet(pfx, clientv3.WithPrefix(), clientv3.WithMaxCreateRev(rc)),
	).Commit()
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	var bugs []string
	for i, want := range []string{pfx + "b", pfx + "a", pfx + "b", pfx + "a," + pfx + "c", pfx + "b," + pfx + "c"} {
		what := []string{"sort by create ascending, limit 1", "sort by create descending, limit 1",
			"sort by mod ascending, limit 1", "min_mod_revision", "max_create_revision"}[i]
		got := strings.Join(keys(tr.Responses[i+1].GetResponseRange().Kvs), ",")
		if got != want {
			bugs = append(bugs, fmt.Sprintf("%s: got [%s], want [%s]", what, got, want))
		}
	}
	mustDelete(t, c, pfx, clientv3.WithPrefix())
	return bugs
}


// TestTxnRangeOwnWrites: a Range after a Put in the same Txn sorts and filters the new key by
// the Txn's revision, as etcd does (Mutex's acquire depends on it).
func TestTxnRangeOwnWrites(t *testing.T) {
	s := startServer(t, serverOpts{})
	if bugs := txnOwnWriteRangeBugs(t, s.client(t), "/txn-range/"); len(bugs) > 0 {
		t.Fatalf("a Range in a Txn sorts and filters the Txn's own writes wrongly: %s",
			strings.Join(bugs, "; "))
	}
}

// TestConcurrencyClientVersion logs which clientv3 this run uses (3.5 or 3.6).
func TestConcurrencyClientVersion(t *testing.T) {
	t.Logf("go.etcd.io/etcd/api/v3 version %s (%s)", version.Version, clientSeries)
	if want := clientSeries + "."; len(version.Version) < len(want) || version.Version[:len(want)] != want {
		t.Errorf("api version %s, built for %s: go.mod and the build tag disagree", version.Version, clientSeries)
	}
}

// TestSessionKeepAliveAndClose: a session is a lease kept alive for as long as the session
// lives; Close revokes it, which deletes every key attached to it (one DELETE event each).
func TestSessionKeepAliveAndClose(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)

	sess := newSession(t, c, concurrency.WithTTL(2))
	if sess.Lease() == clientv3.NoLease {
		t.Fatal("session has no lease")
	}
	ttl := leaseTTL(t, c, sess.Lease())
	if ttl.GrantedTTL != 2 || ttl.TTL <= 0 || ttl.TTL > 2 {
		t.Fatalf("new session lease: granted %d remaining %d, want 2 and (0,2]", ttl.GrantedTTL, ttl.TTL)
	}
	mustPut(t, c, "sess/a", "1", clientv3.WithLease(sess.Lease()))
	mustPut(t, c, "sess/b", "2", clientv3.WithLease(sess.Lease()))
	mustPut(t, c, "sess/other", "3") // not on the lease: survives Close

	// Keepalives keep the lease (and its keys) for well beyond its TTL.
	time.Sleep(4 * time.Second)
	select {
	case <-sess.Done():
		t.Fatal("session done while its lease was being kept alive")
	default:
	}
	// TimeToLive rounds down: between two keepalives (every TTL/3 or a little more) a live
	// lease of TTL 2 may show 0; an expired one shows -1.
	ttl = leaseTTL(t, c, sess.Lease())
	if ttl.TTL < 0 {
		t.Fatalf("after 2 TTLs of keepalives the lease has TTL %d (expired)", ttl.TTL)
	}
	got := map[string]bool{}
	for _, k := range ttl.Keys {
		got[string(k)] = true
	}
	if len(got) != 2 || !got["sess/a"] || !got["sess/b"] {
		t.Errorf("lease keys %q, want sess/a and sess/b", ttl.Keys)
	}
	if r := mustGet(t, c, "sess/", clientv3.WithPrefix()); r.Count != 3 {
		t.Fatalf("keys before Close: %d, want 3", r.Count)
	}

	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := c.Watch(wctx, "sess/", clientv3.WithPrefix(), clientv3.WithRev(currentRev(t, c)+1))

	if err := sess.Close(); err != nil {
		t.Fatalf("Session.Close: %v", err)
	}
	waitClosed(t, "Done after Close", sess.Done(), time.Second)
	if ttl := leaseTTL(t, c, sess.Lease()); ttl.TTL != -1 {
		t.Errorf("lease after Close: TTL %d, want -1 (revoked)", ttl.TTL)
	}
	r := mustGet(t, c, "sess/", clientv3.WithPrefix())
	wantKeys(t, "after Close", r.Kvs, "sess/other")

	// Revoking deletes the lease's keys in one revision, as etcd does.
	deleted := map[string]int64{}
	timeout := time.After(10 * time.Second)
	for len(deleted) < 2 {
		select {
		case wr := <-wch:
			if err := wr.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			for _, ev := range wr.Events {
				if ev.Type != mvccpb.DELETE {
					t.Fatalf("unexpected event %v %q", ev.Type, ev.Kv.Key)
				}
				deleted[string(ev.Kv.Key)] = ev.Kv.ModRevision
			}
		case <-timeout:
			t.Fatalf("DELETE events after Close: got %v, want sess/a and sess/b", deleted)
		}
	}
	if deleted["sess/a"] != deleted["sess/b"] || deleted["sess/a"] == 0 {
		t.Errorf("revoke deleted the keys at revisions %v, want one revision", deleted)
	}
	leases, err := c.Leases(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	for _, l := range leases.Leases {
		if l.ID == sess.Lease() {
			t.Errorf("Leases still lists the closed session's lease %x", l.ID)
		}
	}
}

// TestSessionKeepAliveRenewsTTL: after a keepalive answered with TTL n, the lease lives n
// more seconds (etcd resets the expiry to now + TTL on every keepalive). A session's holder
// may count on it: it keeps whatever it holds for a TTL after its last keepalive.
func TestSessionKeepAliveRenewsTTL(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	g, err := c.Grant(ctxT(t, 10*time.Second), 6)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	time.Sleep(1500 * time.Millisecond)
	ka, err := c.KeepAliveOnce(ctxT(t, 10*time.Second), g.ID)
	if err != nil {
		t.Fatalf("KeepAliveOnce: %v", err)
	}
	if ka.TTL != 6 {
		t.Fatalf("keepalive answered TTL %d, want 6", ka.TTL)
	}
	// TimeToLive rounds down: etcd answers 5 (or 6) here.
	if ttl := leaseTTL(t, c, g.ID); ttl.TTL < ka.TTL-1 {
		t.Fatalf("a keepalive answered TTL %d but the lease has %d s left", ka.TTL, ttl.TTL)
	}
}

// TestSessionOrphanExpires: Orphan stops the keepalives without revoking: the lease and its
// keys outlive the session for at most its TTL, then the server expires them.
func TestSessionOrphanExpires(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)

	sess := newSession(t, c, concurrency.WithTTL(2))
	mustPut(t, c, "orphan/k", "v", clientv3.WithLease(sess.Lease()))
	sess.Orphan()
	waitClosed(t, "Done after Orphan", sess.Done(), time.Second)
	if len(mustGet(t, c, "orphan/k").Kvs) != 1 {
		t.Fatal("Orphan deleted the lease's key at once")
	}
	if ttl := leaseTTL(t, c, sess.Lease()); ttl.TTL < 0 {
		t.Fatalf("Orphan revoked the lease (TTL %d)", ttl.TTL)
	}
	took := waitKeyGone(t, c, "orphan/k", 10*time.Second)
	t.Logf("orphaned lease expired %v after Orphan", took)
	if ttl := leaseTTL(t, c, sess.Lease()); ttl.TTL != -1 {
		t.Errorf("expired lease: TTL %d, want -1", ttl.TTL)
	}
}

// TestSessionDoneWhenLeaseRevoked: a session notices that its lease was revoked by someone
// else (Done is closed), which is how lock and election holders learn they lost it.
func TestSessionDoneWhenLeaseRevoked(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	other := s.client(t)

	sess := newSession(t, c, concurrency.WithTTL(5))
	if _, err := other.Revoke(ctxT(t, 10*time.Second), sess.Lease()); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	// clientv3 sends a keepalive every TTL/3 and gives up when the server says the lease
	// is gone.
	waitClosed(t, "Done after the lease was revoked", sess.Done(), 10*time.Second)
	sessionCtxCheck(t, sess)
}

// TestSessionWithLease: a session built on an existing lease keeps that lease alive, and its
// Close revokes it.
func TestSessionWithLease(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)

	g, err := c.Grant(ctxT(t, 10*time.Second), 2)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	sess := newSession(t, c, concurrency.WithLease(g.ID))
	if sess.Lease() != g.ID {
		t.Fatalf("session lease %x, want %x", sess.Lease(), g.ID)
	}
	mustPut(t, c, "wl/k", "v", clientv3.WithLease(g.ID))
	time.Sleep(3 * time.Second)
	if len(mustGet(t, c, "wl/k").Kvs) != 1 {
		t.Fatal("the session did not keep the given lease alive")
	}
	if err := sess.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if len(mustGet(t, c, "wl/k").Kvs) != 0 {
		t.Error("Close did not revoke the given lease")
	}
}

// TestMutexLockUnlock: Lock on a free mutex holds it at once (a key under the prefix,
// attached to the session's lease, whose create revision is IsOwner's guard); TryLock by
// another session fails with ErrLocked and leaves no waiter key; Unlock frees the mutex.
func TestMutexLockUnlock(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	s1 := newSession(t, c, concurrency.WithTTL(10))
	s2 := newSession(t, c, concurrency.WithTTL(10))

	m1 := concurrency.NewMutex(s1, "/lock/a")
	m2 := concurrency.NewMutex(s2, "/lock/a")
	if err := m1.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if want := fmt.Sprintf("/lock/a/%x", s1.Lease()); m1.Key() != want {
		t.Errorf("mutex key %q, want %q", m1.Key(), want)
	}
	if m1.Header() == nil || m1.Header().Revision <= 0 {
		t.Errorf("mutex header %v", m1.Header())
	}
	r := mustGet(t, c, m1.Key())
	if len(r.Kvs) != 1 || clientv3.LeaseID(r.Kvs[0].Lease) != s1.Lease() {
		t.Fatalf("lock key %v, want one key on lease %x", r.Kvs, s1.Lease())
	}

	// Only the owner's guarded transaction applies.
	tr, err := c.Txn(ctxT(t, 10*time.Second)).If(m1.IsOwner()).Then(clientv3.OpPut("/guarded", "by m1")).Commit()
	if err != nil || !tr.Succeeded {
		t.Fatalf("txn guarded by the owner: %v succeeded=%v", err, tr != nil && tr.Succeeded)
	}

	if err := m2.TryLock(ctxT(t, 10*time.Second)); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("TryLock on a held mutex: %v, want ErrLocked", err)
	}
	if r := mustGet(t, c, "/lock/a/", clientv3.WithPrefix()); r.Count != 1 {
		t.Errorf("after a failed TryLock the prefix has %d keys, want 1 (the owner's)", r.Count)
	}
	// Locking again with the same session is re-entrant: it reuses its key.
	m1b := concurrency.NewMutex(s1, "/lock/a")
	if err := m1b.TryLock(ctxT(t, 10*time.Second)); err != nil {
		t.Errorf("TryLock by the holding session: %v, want nil (same key)", err)
	}

	staleGuard := m1.IsOwner()
	if err := m1.Unlock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	if r := mustGet(t, c, "/lock/a/", clientv3.WithPrefix()); r.Count != 0 {
		t.Errorf("after Unlock the prefix has %d keys, want 0", r.Count)
	}
	unlockTwiceCheck(t, m1.Unlock(ctxT(t, 10*time.Second)))

	if err := m2.TryLock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("TryLock on a free mutex: %v", err)
	}
	// The former owner's guard (its key and create revision) no longer holds.
	tr, err = c.Txn(ctxT(t, 10*time.Second)).If(staleGuard).Then(clientv3.OpPut("/guarded", "by m1 again")).Commit()
	if err != nil || tr.Succeeded {
		t.Errorf("txn guarded by a former owner: %v succeeded=%v, want not applied", err, tr != nil && tr.Succeeded)
	}
	if err := m2.Unlock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}

	// sync.Locker on the same recipe.
	l := concurrency.NewLocker(s1, "/lock/b")
	l.Lock()
	if r := mustGet(t, c, "/lock/b/", clientv3.WithPrefix()); r.Count != 1 {
		t.Errorf("Locker.Lock: %d keys, want 1", r.Count)
	}
	l.Unlock()
	if r := mustGet(t, c, "/lock/b/", clientv3.WithPrefix()); r.Count != 0 {
		t.Errorf("Locker.Unlock: %d keys, want 0", r.Count)
	}
}

// TestMutexWaitersInOrder: Lock blocks while another session holds the mutex and returns
// once it is released; waiters get it in the order they queued (create revision); a waiter
// whose context ends gives up and removes its key.
func TestMutexWaitersInOrder(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	holder := concurrency.NewMutex(newSession(t, c, concurrency.WithTTL(10)), "/q")
	if err := holder.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Lock: %v", err)
	}

	// A waiter whose context expires returns the context's error and leaves no key.
	quitter := concurrency.NewMutex(newSession(t, c, concurrency.WithTTL(10)), "/q")
	qctx, qcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := quitter.Lock(qctx)
	qcancel()
	if err == nil {
		t.Fatal("Lock with an expiring context on a held mutex returned nil")
	}
	if r := mustGet(t, c, "/q/", clientv3.WithPrefix()); r.Count != 1 {
		t.Fatalf("after an abandoned Lock the prefix has %d keys, want 1", r.Count)
	}

	const waiters = 3
	order := make(chan int, waiters)
	mus := make([]*concurrency.Mutex, waiters)
	var wg sync.WaitGroup
	for i := 0; i < waiters; i++ {
		mus[i] = concurrency.NewMutex(newSession(t, c, concurrency.WithTTL(10)), "/q")
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := mus[i].Lock(ctx); err != nil {
				t.Errorf("waiter %d: Lock: %v", i, err)
				return
			}
			order <- i
			time.Sleep(100 * time.Millisecond)
			if err := mus[i].Unlock(ctx); err != nil {
				t.Errorf("waiter %d: Unlock: %v", i, err)
			}
		}(i)
		// Queue them one after another: wait until this waiter's key exists.
		deadline := time.Now().Add(10 * time.Second)
		for mustGet(t, c, "/q/", clientv3.WithPrefix()).Count != int64(i+2) {
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d never queued", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case i := <-order:
		t.Fatalf("waiter %d got the mutex while it was held", i)
	default:
	}
	if err := holder.Unlock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	wg.Wait()
	close(order)
	var got []int
	for i := range order {
		got = append(got, i)
	}
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("waiters got the mutex in order %v, want [0 1 2]", got)
	}
}

// TestMutexMutualExclusion: goroutines, each with its own client and session, increment a
// counter with a plain read-modify-write guarded only by the mutex. No increment may be lost
// and no two goroutines may be inside the critical section at once.
func TestMutexMutualExclusion(t *testing.T) {
	s := startServer(t, serverOpts{})
	const workers, rounds = 5, 20
	mustPut(t, s.client(t), "/counter", "0")

	var inside, maxInside int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		c := s.client(t)
		sess := newSession(t, c, concurrency.WithTTL(10))
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			m := concurrency.NewMutex(sess, "/counter-lock")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			for i := 0; i < rounds; i++ {
				if err := m.Lock(ctx); err != nil {
					t.Errorf("worker %d: Lock: %v", w, err)
					return
				}
				n := atomic.AddInt32(&inside, 1)
				for {
					old := atomic.LoadInt32(&maxInside)
					if n <= old || atomic.CompareAndSwapInt32(&maxInside, old, n) {
						break
					}
				}
				g, err := c.Get(ctx, "/counter")
				if err == nil {
					v, _ := strconv.Atoi(string(g.Kvs[0].Value))
					time.Sleep(time.Duration(rand.Intn(2)) * time.Millisecond)
					// The write is applied only while this session still owns the lock.
					var tr *clientv3.TxnResponse
					tr, err = c.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut("/counter", strconv.Itoa(v+1))).Commit()
					if err == nil && !tr.Succeeded {
						err = errors.New("IsOwner failed while holding the lock")
					}
				}
				atomic.AddInt32(&inside, -1)
				if uerr := m.Unlock(ctx); uerr != nil && err == nil {
					err = uerr
				}
				if err != nil {
					t.Errorf("worker %d round %d: %v", w, i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	g := mustGet(t, s.client(t), "/counter")
	if want := strconv.Itoa(workers * rounds); string(g.Kvs[0].Value) != want {
		t.Errorf("counter %s, want %s (increments were lost)", g.Kvs[0].Value, want)
	}
	if maxInside != 1 {
		t.Errorf("%d holders inside the critical section at once", maxInside)
	}
	if r := mustGet(t, s.client(t), "/counter-lock/", clientv3.WithPrefix()); r.Count != 0 {
		t.Errorf("%d lock keys left", r.Count)
	}
}

// TestMutexReleasedWithSession: the lock is released when the holder's session ends, by
// Close, by a revoke from another client, or by its lease expiring after Orphan (a crashed
// holder); a waiter then gets it.
func TestMutexReleasedWithSession(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	admin := s.client(t)

	cases := []struct {
		name string
		end  func(*testing.T, *concurrency.Session)
	}{
		{"close", func(t *testing.T, sess *concurrency.Session) {
			if err := sess.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}},
		{"revoke", func(t *testing.T, sess *concurrency.Session) {
			if _, err := admin.Revoke(ctxT(t, 10*time.Second), sess.Lease()); err != nil {
				t.Errorf("Revoke: %v", err)
			}
		}},
		{"expire", func(t *testing.T, sess *concurrency.Session) { sess.Orphan() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pfx := "/rel-" + tc.name
			holderSess := newSession(t, c, concurrency.WithTTL(2))
			holder := concurrency.NewMutex(holderSess, pfx)
			if err := holder.Lock(ctxT(t, 10*time.Second)); err != nil {
				t.Fatalf("Lock: %v", err)
			}
			waiter := concurrency.NewMutex(newSession(t, c, concurrency.WithTTL(10)), pfx)
			got := make(chan error, 1)
			go func() { got <- waiter.Lock(ctxT(t, 30*time.Second)) }()
			deadline := time.Now().Add(10 * time.Second)
			for mustGet(t, c, pfx+"/", clientv3.WithPrefix()).Count != 2 {
				if time.Now().After(deadline) {
					t.Fatal("waiter never queued")
				}
				time.Sleep(20 * time.Millisecond)
			}
			select {
			case err := <-got:
				t.Fatalf("waiter returned while the lock was held: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			start := time.Now()
			tc.end(t, holderSess)
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("waiter Lock: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("waiter did not get the lock after the holder's session ended")
			}
			t.Logf("waiter got the lock %v after the holder's session ended", time.Since(start))
			if ttl := leaseTTL(t, c, holderSess.Lease()); ttl.TTL != -1 {
				t.Errorf("the holder's lease has TTL %d after the waiter got the lock, want -1", ttl.TTL)
			}
			r := mustGet(t, c, pfx+"/", clientv3.WithPrefix())
			wantKeys(t, "lock keys", r.Kvs, waiter.Key())
			if err := waiter.Unlock(ctxT(t, 10*time.Second)); err != nil {
				t.Fatalf("Unlock: %v", err)
			}
		})
	}
}

func leaderValue(t *testing.T, e *concurrency.Election) string {
	t.Helper()
	r, err := e.Leader(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	return string(r.Kvs[0].Value)
}

// nextObserved returns the next value Observe reports, failing after 10 s.
func nextObserved(t *testing.T, ch <-chan clientv3.GetResponse) string {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("Observe channel closed")
		}
		if len(r.Kvs) != 1 {
			t.Fatalf("Observe: %d kvs", len(r.Kvs))
		}
		return string(r.Kvs[0].Value)
	case <-time.After(10 * time.Second):
		t.Fatal("Observe: nothing for 10 s")
	}
	return ""
}

// TestElection: Campaign makes the first candidate leader; Leader and Observe report its
// value and every Proclaim; a second candidate blocks until the leader resigns; Proclaim by
// a non-leader fails; ResumeElection takes over a leadership from its key and revision.
func TestElection(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	obsSess := newSession(t, c, concurrency.WithTTL(10))
	observer := concurrency.NewElection(obsSess, "/elect")

	if _, err := observer.Leader(ctxT(t, 10*time.Second)); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Fatalf("Leader with no candidate: %v, want ErrElectionNoLeader", err)
	}
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	obs := observer.Observe(octx)

	s1 := newSession(t, c, concurrency.WithTTL(10))
	e1 := concurrency.NewElection(s1, "/elect")
	if err := e1.Campaign(ctxT(t, 10*time.Second), "one"); err != nil {
		t.Fatalf("Campaign: %v", err)
	}
	if want := fmt.Sprintf("/elect/%x", s1.Lease()); e1.Key() != want {
		t.Errorf("leader key %q, want %q", e1.Key(), want)
	}
	if e1.Rev() <= 0 || e1.Header() == nil {
		t.Errorf("leader rev %d header %v", e1.Rev(), e1.Header())
	}
	if v := leaderValue(t, observer); v != "one" {
		t.Errorf("Leader %q, want one", v)
	}
	if v := nextObserved(t, obs); v != "one" {
		t.Errorf("Observe %q, want one", v)
	}

	if err := e1.Proclaim(ctxT(t, 10*time.Second), "one-b"); err != nil {
		t.Fatalf("Proclaim: %v", err)
	}
	if v := leaderValue(t, observer); v != "one-b" {
		t.Errorf("Leader after Proclaim %q, want one-b", v)
	}
	if v := nextObserved(t, obs); v != "one-b" {
		t.Errorf("Observe after Proclaim %q, want one-b", v)
	}

	s2 := newSession(t, c, concurrency.WithTTL(10))
	e2 := concurrency.NewElection(s2, "/elect")
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctxT(t, 30*time.Second), "two") }()
	select {
	case err := <-won:
		t.Fatalf("second Campaign returned while there is a leader: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := concurrency.NewElection(s2, "/elect").Proclaim(ctxT(t, 10*time.Second), "usurper"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Errorf("Proclaim by a non-leader: %v, want ErrElectionNotLeader", err)
	}
	// A resumed election with the wrong revision is refused by the server-side compare.
	forged := concurrency.ResumeElection(s2, "/elect/", e1.Key(), e1.Rev()+1)
	if err := forged.Proclaim(ctxT(t, 10*time.Second), "forged"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Errorf("Proclaim with a wrong leader revision: %v, want ErrElectionNotLeader", err)
	}
	if v := leaderValue(t, observer); v != "one-b" {
		t.Errorf("Leader while a candidate waits %q, want one-b", v)
	}

	if err := e1.Resign(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatalf("second Campaign: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second candidate not elected after the leader resigned")
	}
	if v := leaderValue(t, observer); v != "two" {
		t.Errorf("Leader after Resign %q, want two", v)
	}
	if v := nextObserved(t, obs); v != "two" {
		t.Errorf("Observe after Resign %q, want two", v)
	}

	// A Campaign abandoned by its context (while another candidate leads) returns an error
	// and leaves no candidate key behind.
	e3 := concurrency.NewElection(newSession(t, c, concurrency.WithTTL(10)), "/elect")
	cctx, ccancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := e3.Campaign(cctx, "three")
	ccancel()
	if err == nil {
		t.Error("Campaign with an expiring context returned nil while another candidate leads")
	}
	if r := mustGet(t, c, "/elect/", clientv3.WithPrefix()); r.Count != 1 {
		t.Errorf("%d candidate keys after an abandoned Campaign, want 1 (the leader's)", r.Count)
	}
	if err := e1.Proclaim(ctxT(t, 10*time.Second), "stale"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Errorf("Proclaim after Resign: %v, want ErrElectionNotLeader", err)
	}

	// Another process resumes the leadership from the key and revision (e.g. after a restart
	// with the same lease) and proclaims; ResumeElection takes the prefix with its "/".
	resumed := concurrency.ResumeElection(s2, "/elect/", e2.Key(), e2.Rev())
	if err := resumed.Proclaim(ctxT(t, 10*time.Second), "two-b"); err != nil {
		t.Fatalf("Proclaim on a resumed election: %v", err)
	}
	if v := leaderValue(t, observer); v != "two-b" {
		t.Errorf("Leader after a resumed Proclaim %q, want two-b", v)
	}
	if v := nextObserved(t, obs); v != "two-b" {
		t.Errorf("Observe after a resumed Proclaim %q, want two-b", v)
	}
	if err := resumed.Resign(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Resign: %v", err)
	}
	if _, err := observer.Leader(ctxT(t, 10*time.Second)); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Errorf("Leader after everyone resigned: %v, want ErrElectionNoLeader", err)
	}
	ocancel()
	for range obs {
	}
}

// TestElectionFailover: when the leader's session ends (Close, or its lease expires after
// Orphan, as when the leader crashes), the next candidate in line is elected and observers
// see it.
func TestElectionFailover(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	observer := concurrency.NewElection(newSession(t, c, concurrency.WithTTL(10)), "/fo")
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	obs := observer.Observe(octx)

	const n = 3
	sessions := make([]*concurrency.Session, n)
	elected := make(chan int, n)
	for i := 0; i < n; i++ {
		sessions[i] = newSession(t, c, concurrency.WithTTL(2))
		e := concurrency.NewElection(sessions[i], "/fo")
		go func(i int) {
			if err := e.Campaign(ctxT(t, time.Minute), "node-"+strconv.Itoa(i)); err != nil {
				t.Errorf("node %d: Campaign: %v", i, err)
				return
			}
			elected <- i
		}(i)
		deadline := time.Now().Add(10 * time.Second)
		for mustGet(t, c, "/fo/", clientv3.WithPrefix()).Count != int64(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("candidate %d never queued", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	expect := func(i int) {
		t.Helper()
		select {
		case got := <-elected:
			if got != i {
				t.Fatalf("node %d elected, want node %d", got, i)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("node %d not elected", i)
		}
		if v := nextObserved(t, obs); v != "node-"+strconv.Itoa(i) {
			t.Errorf("Observe %q, want node-%d", v, i)
		}
		if v := leaderValue(t, observer); v != "node-"+strconv.Itoa(i) {
			t.Errorf("Leader %q, want node-%d", v, i)
		}
	}
	expect(0)
	select {
	case i := <-elected:
		t.Fatalf("node %d elected while node 0 leads", i)
	case <-time.After(300 * time.Millisecond):
	}
	if err := sessions[0].Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expect(1)
	start := time.Now()
	sessions[1].Orphan() // the leader stops renewing its lease: it has crashed
	expect(2)
	t.Logf("node 2 elected %v after node 1 stopped renewing its lease", time.Since(start))
}

// transfer moves a random amount between two random accounts in one STM transaction; an
// account never goes negative.
func transfer(c *clientv3.Client, iso concurrency.Isolation, accounts int, rng *rand.Rand, applies *int64) error {
	from, to := rng.Intn(accounts), rng.Intn(accounts-1)
	if to >= from {
		to++
	}
	amount := 1 + rng.Intn(20)
	_, err := concurrency.NewSTM(c, func(stm concurrency.STM) error {
		atomic.AddInt64(applies, 1)
		fk, tk := "/acct/"+strconv.Itoa(from), "/acct/"+strconv.Itoa(to)
		fb, err := strconv.Atoi(stm.Get(fk))
		if err != nil {
			return err
		}
		tb, err := strconv.Atoi(stm.Get(tk))
		if err != nil {
			return err
		}
		if fb < amount {
			return nil // not enough money: nothing to do
		}
		stm.Put(fk, strconv.Itoa(fb-amount))
		stm.Put(tk, strconv.Itoa(tb+amount))
		return nil
	}, concurrency.WithIsolation(iso))
	return err
}

// TestSTMConcurrentTransfers: concurrent transfers between accounts through STM conserve the
// total, for each isolation level that promises it, and conflicting transactions are retried.
func TestSTMConcurrentTransfers(t *testing.T) {
	s := startServer(t, serverOpts{})
	for _, tc := range []struct {
		name string
		iso  concurrency.Isolation
	}{
		{"Serializable", concurrency.Serializable},
		{"SerializableSnapshot", concurrency.SerializableSnapshot},
		{"RepeatableReads", concurrency.RepeatableReads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const accounts, workers, rounds, initial = 5, 6, 15, 100
			c := s.client(t)
			mustDelete(t, c, "/acct/", clientv3.WithPrefix())
			for i := 0; i < accounts; i++ {
				mustPut(t, c, "/acct/"+strconv.Itoa(i), strconv.Itoa(initial))
			}
			var applies int64
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wc := s.client(t)
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(w)))
					for i := 0; i < rounds; i++ {
						if err := transfer(wc, tc.iso, accounts, rng, &applies); err != nil {
							t.Errorf("worker %d: STM: %v", w, err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			r := mustGet(t, c, "/acct/", clientv3.WithPrefix())
			sum := 0
			for _, kv := range r.Kvs {
				v, _ := strconv.Atoi(string(kv.Value))
				if v < 0 {
					t.Errorf("account %s is negative: %d", kv.Key, v)
				}
				sum += v
			}
			if len(r.Kvs) != accounts || sum != accounts*initial {
				t.Errorf("%d accounts hold %d, want %d holding %d", len(r.Kvs), sum, accounts, accounts*initial)
			}
			t.Logf("%d transactions, %d applies (%d retries)", workers*rounds, applies, applies-workers*rounds)
		})
	}
}

// TestSTMConflictRetry: an STM transaction whose read set changes before it commits is run
// again; with Serializable isolation, every read of one attempt sees one revision (a later
// write is not seen by a later read in the same attempt).
func TestSTMConflictRetry(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	other := s.client(t)
	mustPut(t, c, "/x", "1")
	mustPut(t, c, "/y", "1")

	var seen []string
	resp, err := concurrency.NewSTM(c, func(stm concurrency.STM) error {
		x := stm.Get("/x")
		if len(seen) == 0 {
			// Another client writes both keys between this attempt's reads.
			mustPut(t, other, "/x", "2")
			mustPut(t, other, "/y", "2")
		}
		y := stm.Get("/y")
		seen = append(seen, x+y)
		stm.Put("/sum", x+"+"+y)
		return nil
	}, concurrency.WithIsolation(concurrency.Serializable))
	if err != nil {
		t.Fatalf("NewSTM: %v", err)
	}
	if !resp.Succeeded {
		t.Error("STM response not Succeeded")
	}
	if fmt.Sprint(seen) != "[11 22]" {
		t.Errorf("attempts saw %v, want [11 22] (a consistent snapshot, then a retry)", seen)
	}
	if g := mustGet(t, c, "/sum"); string(g.Kvs[0].Value) != "2+2" {
		t.Errorf("/sum = %s, want 2+2", g.Kvs[0].Value)
	}

	// An error from the apply function aborts: nothing is written, the error is returned.
	boom := errors.New("boom")
	_, err = concurrency.NewSTM(c, func(stm concurrency.STM) error {
		stm.Put("/sum", "aborted")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("STM apply error: got %v, want boom", err)
	}
	if g := mustGet(t, c, "/sum"); string(g.Kvs[0].Value) != "2+2" {
		t.Errorf("/sum = %s after an aborted STM, want 2+2", g.Kvs[0].Value)
	}

	// Rev, Del and a missing key, with prefetching.
	var rev int64
	_, err = concurrency.NewSTM(c, func(stm concurrency.STM) error {
		rev = stm.Rev("/x")
		if v := stm.Get("/missing"); v != "" {
			return fmt.Errorf("missing key read as %q", v)
		}
		stm.Del("/y")
		return nil
	}, concurrency.WithPrefetch("/x", "/y"), concurrency.WithIsolation(concurrency.SerializableSnapshot))
	if err != nil {
		t.Fatalf("NewSTM: %v", err)
	}
	if g := mustGet(t, c, "/x"); rev != g.Kvs[0].ModRevision {
		t.Errorf("STM Rev(/x) %d, want its mod revision %d", rev, g.Kvs[0].ModRevision)
	}
	if g := mustGet(t, c, "/y"); len(g.Kvs) != 0 {
		t.Error("STM Del did not delete /y")
	}
}
