package k8s

// kube-apiserver's compactor (etcd3.NewCompactor, etcd3.Compact) on etcd-fdb: upstream's
// compact_test.go (TestCompact, TestCompactConflict), with each "revision + 1" replaced by
// the revision etcd-fdb actually gave the write (its revisions are sparse).

import (
	"context"
	"strconv"
	"testing"
	"time"

	etcdrpc "go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"k8s.io/apiserver/pkg/storage/etcd3"
	testingclock "k8s.io/utils/clock/testing"
)

func newPlainClient(t *testing.T) *clientv3.Client {
	server := startEtcdFDB(t, serverConfig{})
	return newClient(t, server.endpoint).Client
}

// compactRevKey reads compact_rev_key: the revision it records and the revision of the
// write that recorded it.
func compactRevKey(t *testing.T, ctx context.Context, client *clientv3.Client) (recorded, modRevision int64) {
	t.Helper()
	resp, err := client.Get(ctx, "compact_rev_key")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("compact_rev_key: %d keys", len(resp.Kvs))
	}
	recorded, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return recorded, resp.Kvs[0].ModRevision
}

func assertCompacted(t *testing.T, ctx context.Context, client *clientv3.Client, rev int64) {
	t.Helper()
	if _, err := client.Get(ctx, "/somekey", clientv3.WithRev(rev)); err != etcdrpc.ErrCompacted {
		t.Errorf("Expecting rev %d compacted, but err=%v", rev, err)
	}
}

func assertNotCompacted(t *testing.T, ctx context.Context, client *clientv3.Client, rev int64) {
	t.Helper()
	if _, err := client.Get(ctx, "/somekey", clientv3.WithRev(rev)); err != nil {
		t.Errorf("Get on rev %d failed: %v", rev, err)
	}
}

func waitForClockWaiters(t *testing.T, clock *testingclock.FakeClock) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; {
		if clock.HasWaiters() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("No waiters")
}

// TestCompact: each cycle of the compactor records the current revision (the revision of its
// own compact_rev_key write) and compacts at the one the previous cycle recorded.
func TestCompact(t *testing.T) {
	client := newPlainClient(t)
	ctx := context.Background()
	clock := testingclock.NewFakeClock(time.Now())
	c := etcd3.NewCompactor(client, time.Minute, clock, nil)
	t.Cleanup(c.Stop)
	waitForClockWaiters(t, clock)

	t.Log("First compaction cycle saves revision before first write")
	clock.Step(time.Minute)
	waitForClockWaiters(t, clock)
	if compactRev := c.CompactRevision(); compactRev != 0 {
		t.Errorf("CompactRevision()=%d, expected 0", compactRev)
	}
	_, cycle1Rev := compactRevKey(t, ctx, client)

	t.Log("First write")
	putResp, err := client.Put(ctx, "/somekey", "data")
	if err != nil {
		t.Fatalf("Put failed: %v", err)
	}
	if putResp.Header.Revision <= cycle1Rev {
		t.Fatalf("write at %d not after the first cycle's %d", putResp.Header.Revision, cycle1Rev)
	}
	assertNotCompacted(t, ctx, client, putResp.Header.Revision)

	t.Log("Second compaction cycle compacts before first write")
	clock.Step(time.Minute)
	waitForClockWaiters(t, clock)
	assertNotCompacted(t, ctx, client, putResp.Header.Revision)
	if compactRev := c.CompactRevision(); compactRev != cycle1Rev {
		t.Errorf("CompactRevision()=%d, expected %d (upstream: first write's revision - 1)", compactRev, cycle1Rev)
	}
	recorded, cycle2Rev := compactRevKey(t, ctx, client)
	if recorded != cycle1Rev {
		t.Errorf("compact_rev_key records %d, expected %d", recorded, cycle1Rev)
	}

	t.Log("Create second revision")
	putResp1, err := client.Put(ctx, "/somekey", "data2")
	if err != nil {
		t.Fatalf("Put failed: %v", err)
	}
	assertNotCompacted(t, ctx, client, putResp1.Header.Revision)

	t.Log("Third compaction cycle compacts revision after first write")
	clock.Step(time.Minute)
	waitForClockWaiters(t, clock)
	assertCompacted(t, ctx, client, putResp.Header.Revision)
	if compactRev := c.CompactRevision(); compactRev != cycle2Rev {
		t.Errorf("CompactRevision()=%d, expected %d (upstream: first write's revision + 1)", compactRev, cycle2Rev)
	}
	assertNotCompacted(t, ctx, client, putResp1.Header.Revision)
	_, cycle3Rev := compactRevKey(t, ctx, client)

	t.Log("Fourth compaction cycle compacts second write")
	clock.Step(time.Minute)
	waitForClockWaiters(t, clock)
	assertCompacted(t, ctx, client, putResp.Header.Revision)
	assertCompacted(t, ctx, client, putResp1.Header.Revision)
	if compactRev := c.CompactRevision(); compactRev != cycle3Rev {
		t.Errorf("CompactRevision()=%d, expected %d (upstream: second write's revision + 1)", compactRev, cycle3Rev)
	}
}

// TestCompactConflict: compactors agree through compact_rev_key's version (the "logical
// time"); one that lost the race learns the time and the revision the winner compacted.
func TestCompactConflict(t *testing.T) {
	client := newPlainClient(t)
	ctx := context.Background()

	putResp, err := client.Put(ctx, "/somekey", "data")
	if err != nil {
		t.Fatalf("Put failed: %v", err)
	}

	t.Log("First compact on time 0")
	wantCompactRev := putResp.Header.Revision
	curTime, curRev, compactRev, err := etcd3.Compact(ctx, client, 0, wantCompactRev)
	if err != nil {
		t.Fatalf("compact failed: %v", err)
	}
	if compactRev != wantCompactRev {
		t.Errorf("Expect compact revision = %d, get = %d", wantCompactRev, compactRev)
	}
	if curTime != 1 {
		t.Errorf("Expect current logical time = 1, get = %v", curTime)
	}
	_, wantCurrentRev := compactRevKey(t, ctx, client)
	if curRev != wantCurrentRev || curRev <= putResp.Header.Revision {
		t.Errorf("Expect current revision = %d (the compact_rev_key write, after %d), get = %d", wantCurrentRev, putResp.Header.Revision, curRev)
	}

	t.Log("Second compact on time 0")
	curTime2, curRev2, compactRev2, err := etcd3.Compact(ctx, client, 0, wantCompactRev+1)
	if err != nil {
		t.Fatalf("compact failed: %v", err)
	}
	if compactRev2 != wantCompactRev {
		t.Errorf("Expect compact revision = %d, get = %d", wantCompactRev, compactRev2)
	}
	if curTime != curTime2 {
		t.Errorf("Unexpected curTime (%v) != curTime2 (%v)", curTime, curTime2)
	}
	if curRev2 != wantCurrentRev {
		t.Errorf("Expect current revision = %d, get = %d", wantCurrentRev, curRev2)
	}

	t.Log("Third compact on time 1")
	curTime3, curRev3, compactRev3, err := etcd3.Compact(ctx, client, 1, wantCompactRev+1)
	if err != nil {
		t.Fatalf("compact failed: %v", err)
	}
	wantCompactRev++
	if compactRev3 != wantCompactRev {
		t.Errorf("Expect compact revision = %d, get = %d", wantCompactRev, compactRev3)
	}
	if curTime3 != 2 {
		t.Errorf("Expect current logical time = 2, get = %v", curTime3)
	}
	_, wantCurrentRev3 := compactRevKey(t, ctx, client)
	if curRev3 != wantCurrentRev3 || curRev3 <= wantCurrentRev {
		t.Errorf("Expect current revision = %d (the second compact_rev_key write, after %d), get = %d", wantCurrentRev3, wantCurrentRev, curRev3)
	}
}
