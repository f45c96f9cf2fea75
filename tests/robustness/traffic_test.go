package robustness

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"go.etcd.io/etcd/tests/v3/framework/e2e"
	"go.etcd.io/etcd/tests/v3/robustness/client"
	"go.etcd.io/etcd/tests/v3/robustness/failpoint"
	"go.etcd.io/etcd/tests/v3/robustness/identity"
	"go.etcd.io/etcd/tests/v3/robustness/report"
	"go.etcd.io/etcd/tests/v3/robustness/traffic"
)

// compactOnWriteRevisions is upstream's etcd traffic with one change: its compaction loop.
// Upstream compacts at random.RandRange(lastRev, status.Header.Revision+5), a revision that
// with etcd's consecutive revisions is a past write or one of the next 5 (a "future
// revision" error). With etcd-fdb's sparse revisions almost every number in that range lies
// between two writes: the server accepts it, but the dense renaming of the history
// (revisions_test.go) has no point between two writes to map it to, so the model could not
// check it. This loop keeps upstream's period and shape (a Status, then a Compact at a
// random revision between the last compaction and the current one, sometimes the last
// compaction again, which must fail with "required revision has been compacted") but
// draws the revision from the write revisions the Status calls returned. What it no longer
// sends is a compaction at a future revision.
type compactOnWriteRevisions struct {
	traffic.Traffic
}

func (t compactOnWriteRevisions) RunCompactLoop(ctx context.Context, c *client.RecordingClient, period time.Duration, finish <-chan struct{}) {
	var lastRev int64 = 1 // upstream starts at 2; etcd-fdb's first write is far above both
	var seen []int64      // revisions of the store at past Status calls, at or after lastRev
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-finish:
			return
		case <-ticker.C:
		}
		statusCtx, cancel := context.WithTimeout(ctx, traffic.RequestTimeout)
		resp, err := c.Status(statusCtx, c.Endpoints()[0])
		cancel()
		if err != nil {
			continue
		}
		if resp.Header.Revision >= lastRev {
			seen = append(seen, resp.Header.Revision)
		}
		compactRev := lastRev
		if len(seen) > 0 && rand.Intn(10) != 0 {
			compactRev = seen[rand.Intn(len(seen))]
		}
		if _, err = c.Compact(ctx, compactRev); err != nil {
			continue
		}
		lastRev = compactRev
		kept := seen[:0]
		for _, rev := range seen {
			if rev >= lastRev {
				kept = append(kept, rev)
			}
		}
		seen = kept
	}
}

// killRepeatedly is upstream's KillFailpoint (SIGKILL, wait, start again on the same data
// dir), injected count times, every interval (± half of it).
type killRepeatedly struct {
	count    int
	interval time.Duration
}

func (f killRepeatedly) Name() string { return "Kill" }

func (f killRepeatedly) Available(e2e.EtcdProcessClusterConfig, e2e.EtcdProcess, traffic.Profile) bool {
	return true
}

func (f killRepeatedly) Inject(ctx context.Context, t *testing.T, lg *zap.Logger, clus *e2e.EtcdProcessCluster, baseTime time.Time, ids identity.Provider) ([]report.ClientReport, error) {
	for i := 0; i < f.count; i++ {
		if i > 0 {
			if err := sleep(ctx, f.interval/2+time.Duration(rand.Int63n(int64(f.interval)))); err != nil {
				return nil, err
			}
		}
		// A process that exited by itself would only be started again by KillFailpoint, and
		// a sanitizer report of the process about to be killed would be lost with it.
		for _, proc := range clus.Procs {
			logs := proc.Logs()
			if !proc.IsRunning() {
				return nil, fmt.Errorf("etcd-fdb %s exited by itself; its output ends with:\n%s",
					proc.Config().Name, strings.Join(lastLines(logs.Lines(), 40), ""))
			}
			if r := sanitizerReport(logs.Lines()); r != "" {
				return nil, fmt.Errorf("etcd-fdb %s: %s", proc.Config().Name, r)
			}
		}
		if _, err := failpoint.KillFailpoint.Inject(ctx, t, lg, clus, baseTime, ids); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// storeFaults stands for the faults the embedded store injects during the whole run when
// ETCD_FDB_FAULTS is set (commits failing with not_committed, transaction_too_old or
// commit_unknown_result, every future delayed); injecting it is waiting.
type storeFaults struct {
	duration time.Duration
}

func (f storeFaults) Name() string { return "StoreFaults" }

func (f storeFaults) Available(e2e.EtcdProcessClusterConfig, e2e.EtcdProcess, traffic.Profile) bool {
	return true
}

func (f storeFaults) Inject(ctx context.Context, _ *testing.T, _ *zap.Logger, _ *e2e.EtcdProcessCluster, _ time.Time, _ identity.Provider) ([]report.ClientReport, error) {
	return nil, sleep(ctx, f.duration)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
