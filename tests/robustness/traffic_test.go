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
//
// delivered (set to the witness's) caps the revisions it compacts at with the last one the
// witness has received. It was needed while a compaction at a revision that etcd-fdb's watch
// hub had not yet read cancelled every watcher (fixed; TestKnownBugCompactionCancelsCaughtUpWatch
// guards it, compacting at the newest revision). Upstream's RandRange mostly picks such older revisions too.
type compactOnWriteRevisions struct {
	traffic.Traffic
	delivered func() int64
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
		rev := resp.Header.Revision
		if t.delivered != nil {
			rev = min(rev, t.delivered())
		}
		if rev >= lastRev {
			seen = append(seen, rev)
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
// dir), injected count times, every interval (± half of it). The witness stops watching
// before each kill and watches again, caught up, after each start.
type killRepeatedly struct {
	count    int
	interval time.Duration
	witness  *witness
}

func (f killRepeatedly) Name() string { return "Kill" }

// Timeout is the time upstream's failpoint.Inject allows (failpoint.TimeoutInterface; the
// default, a minute, is for one kill).
func (f killRepeatedly) Timeout() time.Duration {
	return time.Duration(f.count)*(f.interval*3/2+10*time.Second) + time.Minute
}

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
		f.witness.stop()
		if _, err := failpoint.KillFailpoint.Inject(ctx, t, lg, clus, baseTime, ids); err != nil {
			return nil, err
		}
		if err := f.witness.start(ctx); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// waitFailpoint is the failure window of a run without kills: with ETCD_FDB_FAULTS
// ("StoreFaults") the store injects faults during the whole run (commits failing with
// not_committed, transaction_too_old or commit_unknown_result, every future delayed), so
// injecting is waiting; without ("None"), it is only waiting.
type waitFailpoint struct {
	name     string
	duration time.Duration
}

func (f waitFailpoint) Name() string { return f.name }

func (f waitFailpoint) Timeout() time.Duration { return f.duration + time.Minute }

func (f waitFailpoint) Available(e2e.EtcdProcessClusterConfig, e2e.EtcdProcess, traffic.Profile) bool {
	return true
}

func (f waitFailpoint) Inject(ctx context.Context, _ *testing.T, _ *zap.Logger, _ *e2e.EtcdProcessCluster, _ time.Time, _ identity.Provider) ([]report.ClientReport, error) {
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
