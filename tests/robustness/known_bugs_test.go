package robustness

// Short reproducers of the etcd-fdb bugs the robustness scenarios found (README.md, "Bugs
// found"), all fixed: each now guards against its bug coming back.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func newClient(t *testing.T, faults string) *clientv3.Client {
	lg := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	clus := newEtcdFdbCluster(context.Background(), t, lg, faults)
	c, err := clientv3.New(clientv3.Config{Endpoints: clus.EndpointsGRPC(), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A watch stream keeps delivering after 16 MiB of responses (etcd has no such limit).
func TestKnownBugWatchStreamStallsAfter16MiB(t *testing.T) {
	etcdFdbBinary(t)
	c := newClient(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	watch := c.Watch(ctx, "big", clientv3.WithPrefix())
	value := strings.Repeat("x", 1000000)
	const puts = 24 // 24 MB of events
	for i := 0; i < puts; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("big%d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	received := 0
	for received < puts {
		select {
		case resp := <-watch:
			received += len(resp.Events)
		case <-time.After(5 * time.Second):
			t.Fatalf("the watch received %d of %d events of 1 MB, then nothing for 5 s", received, puts)
		}
	}
}

// A watch that keeps up with the writes is never cancelled by a compaction (etcd 3.4.23:
// 0 cancellations among 29,000 events; etcd-fdb: about 2 per second).
func TestKnownBugCompactionCancelsCaughtUpWatch(t *testing.T) {
	etcdFdbBinary(t)
	c := newClient(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_, _ = c.Put(ctx, fmt.Sprintf("k%d", i%10), fmt.Sprint(w, i))
			}
		}(w)
	}
	wg.Add(1)
	go func() { // compacts at the newest revision, every millisecond
		defer wg.Done()
		for ctx.Err() == nil {
			if r, err := c.Get(ctx, "k0"); err == nil {
				_, _ = c.Compact(ctx, r.Header.Revision)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer wg.Wait()
	var last int64
	for resp := range c.Watch(ctx, "k", clientv3.WithPrefix()) {
		if resp.Canceled {
			t.Fatalf("the watch had received revision %d when a compaction at revision %d cancelled it: %v",
				last, resp.CompactRevision, resp.Err())
		}
		if n := len(resp.Events); n > 0 {
			last = resp.Events[n-1].Kv.ModRevision
		}
	}
}

// Compact succeeds under the store's faults, as every other write does (they are retried).
func TestKnownBugCompactTimesOutUnderStoreFaults(t *testing.T) {
	etcdFdbBinary(t)
	c := newClient(t, "7:300")
	ctx := context.Background()
	failed := 0
	for i := 0; i < 30; i++ {
		resp, err := c.Put(ctx, "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Compact(ctx, resp.Header.Revision); err != nil {
			failed++
			t.Logf("compact %d: %v", resp.Header.Revision, err)
		}
	}
	if failed > 0 {
		t.Errorf("%d of 30 compactions failed", failed)
	}
}
