package tests

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLeaseScaleExpiry: many leases with keys expire together, without keepalives.
//
// N leases (10,000; ETCD_FDB_LEASE_SCALE overrides it: the sanitizer build passes a smaller
// number, see go.cmake) of TTL 5 s, each with 10 keys attached in the same Txn right after
// its grant, and one watch on the prefix from before the first write. Then, without any
// keepalive, it requires:
//   - every key is deleted, exactly once (one DELETE event per key: no lease revoked twice),
//     and never before its lease could have expired (grant request sent + TTL);
//   - the 10 keys of a lease are deleted in one revision and arrive in one watch response;
//   - afterwards the prefix is empty, LeaseLeases lists no lease of the test and
//     LeaseTimeToLive reports them expired.
//
// A correctness test, not a timing one: the deadline (setup + TTL + 120 s, the 120 s tripled
// in a sanitizer build) only bounds a hang.
func TestLeaseScaleExpiry(t *testing.T) {
	const ttl = 5
	const keysPerLease = 10
	const workers = 64
	nLeases := 10000
	if v := os.Getenv("ETCD_FDB_LEASE_SCALE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ETCD_FDB_LEASE_SCALE=%q: want a positive number of leases", v)
		}
		nLeases = n
	}
	slack := 120 * time.Second
	if os.Getenv("ETCD_FDB_SANITIZED") != "" {
		slack *= 3
	}
	nKeys := nLeases * keysPerLease
	s := startServer(t, serverOpts{})
	c := s.client(t)
	wc := s.client(t) // the watch has its own connection, so setup traffic does not delay it
	keyOf := func(l, k int) string { return fmt.Sprintf("ls/%05d/%02d", l, k) }
	parse := func(key string) (l, k int, ok bool) {
		_, err := fmt.Sscanf(key, "ls/%05d/%02d", &l, &k)
		return l, k, err == nil && l >= 0 && l < nLeases && k >= 0 && k < keysPerLease
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r0 := currentRev(t, c)
	wch := watchCreated(t, ctx, wc, "ls/", clientv3.WithPrefix(), clientv3.WithRev(r0+1))

	// The watch is read from the start, so the server never holds a backlog for it.
	type delInfo struct {
		rev  int64
		resp int // which watch response
		at   time.Time
	}
	var (
		mu       sync.Mutex
		puts     = make([]int, nKeys)
		dels     = make([][]delInfo, nKeys)
		nDels    int
		watchErr error
		bad      []string
	)
	allDeleted := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		respN := 0
		for r := range wch {
			now := time.Now()
			if err := r.Err(); err != nil {
				mu.Lock()
				watchErr = err
				mu.Unlock()
				return
			}
			respN++
			mu.Lock()
			for _, e := range r.Events {
				l, k, ok := parse(string(e.Kv.Key))
				if !ok {
					bad = append(bad, "unexpected key "+string(e.Kv.Key))
					continue
				}
				i := l*keysPerLease + k
				if e.Type == mvccpb.PUT {
					puts[i]++
					continue
				}
				dels[i] = append(dels[i], delInfo{e.Kv.ModRevision, respN, now})
				nDels++
				if nDels == nKeys {
					close(allDeleted)
				}
			}
			mu.Unlock()
		}
	}()

	// Setup: each worker grants a lease and at once attaches its keys in one Txn.
	ids := make([]clientv3.LeaseID, nLeases)
	granted := make([]time.Time, nLeases) // when the grant request was sent
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range next {
				gctx, gcancel := context.WithTimeout(ctx, 30*time.Second)
				granted[l] = time.Now()
				g, err := c.Grant(gctx, ttl)
				if err != nil {
					gcancel()
					errs <- fmt.Errorf("grant %d: %v", l, err)
					return
				}
				ids[l] = g.ID
				ops := make([]clientv3.Op, keysPerLease)
				for k := range ops {
					ops[k] = clientv3.OpPut(keyOf(l, k), "v", clientv3.WithLease(g.ID))
				}
				_, err = c.Txn(gctx).Then(ops...).Commit()
				gcancel()
				if err != nil {
					errs <- fmt.Errorf("attach the keys of lease %d (%x): %v", l, g.ID, err)
					return
				}
			}
		}()
	}
	func() {
		defer close(next)
		for l := 0; l < nLeases; l++ {
			select {
			case next <- l:
			case err := <-errs:
				t.Fatalf("setup: %v", err)
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("setup: %v", err)
	default:
	}
	setup := time.Since(t0)
	t.Logf("%d leases granted and %d keys attached in %v", nLeases, nKeys, setup.Round(time.Millisecond))

	limit := ttl*time.Second + slack
	select {
	case <-allDeleted:
	case <-watchDone:
		t.Fatalf("the watch ended early: %v", watchErr)
	case <-time.After(limit):
		mu.Lock()
		n := nDels
		mu.Unlock()
		t.Fatalf("after setup + %v: %d of %d keys deleted", limit, n, nKeys)
	}
	tAll := time.Since(t0)

	// Every key deleted once, never early; each lease's keys in one revision and response.
	mu.Lock()
	problems := append([]string(nil), bad...)
	var lastDel time.Time
	for l := 0; l < nLeases && len(problems) < 20; l++ {
		first := dels[l*keysPerLease]
		for k := 0; k < keysPerLease; k++ {
			i := l*keysPerLease + k
			if puts[i] != 1 {
				problems = append(problems, fmt.Sprintf("%s: %d PUT events, want 1", keyOf(l, k), puts[i]))
			}
			if len(dels[i]) != 1 {
				problems = append(problems, fmt.Sprintf("%s (lease %x): %d DELETE events, want 1", keyOf(l, k), ids[l], len(dels[i])))
				continue
			}
			d := dels[i][0]
			if len(first) == 1 && (d.rev != first[0].rev || d.resp != first[0].resp) {
				problems = append(problems, fmt.Sprintf("lease %x: %s deleted at revision %d in response %d, %s at revision %d in response %d",
					ids[l], keyOf(l, 0), first[0].rev, first[0].resp, keyOf(l, k), d.rev, d.resp))
			}
			if early := granted[l].Add(ttl * time.Second).Sub(d.at); early > 0 {
				problems = append(problems, fmt.Sprintf("%s deleted %v before its lease %x could expire", keyOf(l, k), early, ids[l]))
			}
			if d.at.After(lastDel) {
				lastDel = d.at
			}
		}
	}
	mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}

	// Nothing is left: no key, no lease.
	if r := mustGet(t, c, "ls/", clientv3.WithPrefix(), clientv3.WithCountOnly()); r.Count != 0 {
		t.Errorf("%d keys left under ls/ after every DELETE event arrived", r.Count)
	}
	lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
	defer lcancel()
	ls, err := c.Leases(lctx)
	if err != nil {
		t.Fatalf("LeaseLeases: %v", err)
	}
	mine := make(map[clientv3.LeaseID]bool, nLeases)
	for _, id := range ids {
		mine[id] = true
	}
	left := 0
	for _, l := range ls.Leases {
		if mine[l.ID] {
			left++
		}
	}
	if left != 0 || len(ls.Leases) != 0 {
		t.Errorf("LeaseLeases lists %d leases (%d of this test) after all expired, want none", len(ls.Leases), left)
	}
	for _, l := range []int{0, nLeases / 2, nLeases - 1} {
		r, err := c.TimeToLive(lctx, ids[l])
		if err != nil {
			t.Errorf("TimeToLive(%x): %v", ids[l], err)
		} else if r.TTL != -1 {
			t.Errorf("TimeToLive(%x): TTL %d, want -1 (expired)", ids[l], r.TTL)
		}
	}
	var lastGrant time.Time
	for _, g := range granted {
		if g.After(lastGrant) {
			lastGrant = g
		}
	}
	t.Logf("all %d keys deleted %v after the first grant; the last DELETE came %v after the last lease's earliest expiry",
		nKeys, tAll.Round(time.Millisecond), lastDel.Sub(lastGrant.Add(ttl*time.Second)).Round(time.Millisecond))
}
