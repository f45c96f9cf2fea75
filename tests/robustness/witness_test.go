package robustness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/tests/v3/robustness/client"
	"go.etcd.io/etcd/tests/v3/robustness/identity"
	"go.etcd.io/etcd/tests/v3/robustness/report"
)

// witness watches the whole keyspace (with prev_kv and progress notifications) and never
// loses a revision to a compaction, so that persistedRequests can tell which writes of
// unknown outcome were applied. Upstream's watcher (client.CollectClusterWatchEvents) can:
// after a kill its client reconnects with gRPC's backoff, about a second, and a compaction
// made meanwhile cancels its resumed watch ("required revision has been compacted"); the
// revisions in between, where the writes interrupted by the kill are, are then seen by no
// watcher. Upstream has etcd's WAL for them; etcd-fdb has none. The witness stops watching
// before each kill and, once etcd-fdb is started again, watches from its last revision on a
// new client, which connects at once, and waits until it has caught up, before the other
// clients are back. Its watches are validated with the others.
type witness struct {
	ctx       context.Context // the scenario's: a watch outlives the failpoint that starts it
	endpoints []string
	ids       identity.Provider
	baseTime  time.Time

	mu      sync.Mutex
	lastRev int64 // revision of the last event received
	err     error // a cancellation of a watch that had caught up
	clients []*client.RecordingClient
	cancel  context.CancelFunc
	done    chan struct{}
}

func newWitness(ctx context.Context, endpoints []string, ids identity.Provider, baseTime time.Time) *witness {
	return &witness{ctx: ctx, endpoints: endpoints, ids: ids, baseTime: baseTime, lastRev: 1}
}

// start watches from the revision after the last event received, on a new client, and
// returns once the watch has caught up (a progress notification came: etcd sends those only
// to watchers that have every event up to it), or ctx ends.
func (w *witness) start(ctx context.Context) error {
	c, err := client.NewRecordingClient(w.endpoints, w.ids, w.baseTime)
	if err != nil {
		return err
	}
	watchCtx, cancel := context.WithCancel(w.ctx)
	w.mu.Lock()
	w.clients = append(w.clients, c)
	w.cancel = cancel
	w.done = make(chan struct{})
	from := w.lastRev + 1
	done := w.done
	w.mu.Unlock()

	caughtUp := make(chan struct{})
	go func() {
		defer close(done)
		signalled := false
		for watchCtx.Err() == nil {
			w.mu.Lock()
			from := w.lastRev + 1
			w.mu.Unlock()
			for resp := range c.Watch(watchCtx, "", from, true, true, true) {
				if n := len(resp.Events); n > 0 {
					w.mu.Lock()
					w.lastRev = resp.Events[n-1].Kv.ModRevision
					w.mu.Unlock()
				}
				if resp.IsProgressNotify() && !signalled {
					signalled = true
					close(caughtUp)
				}
				if resp.Canceled && resp.CompactRevision > 0 {
					// etcd cancels only a watcher that asks for compacted history, never
					// one that has caught up; the revisions up to the compaction are lost to
					// the witness, and the test fails (knownBugCompactCancelsWatchers).
					w.mu.Lock()
					if signalled && w.err == nil {
						w.err = fmt.Errorf("the whole-keyspace watch, caught up, had received revision %d "+
							"when a compaction at revision %d cancelled it", w.lastRev, resp.CompactRevision)
					}
					w.lastRev = max(w.lastRev, resp.CompactRevision-1)
					w.mu.Unlock()
				}
			}
		}
	}()
	deadline := time.After(30 * time.Second)
	for {
		_ = c.RequestProgress(watchCtx)
		select {
		case <-caughtUp:
			return nil
		case <-done:
			return fmt.Errorf("the witness's watch from revision %d ended before catching up", from)
		case <-deadline:
			return fmt.Errorf("the witness's watch from revision %d did not catch up in 30 s", from)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the current watch and waits until its last response is recorded.
func (w *witness) stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.cancel, w.done = nil, nil
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// delivered returns the revision of the last event received.
func (w *witness) delivered() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastRev
}

// waitFor waits until the witness has received the event of revision rev.
func (w *witness) waitFor(ctx context.Context, rev int64) error {
	for {
		w.mu.Lock()
		last := w.lastRev
		w.mu.Unlock()
		if last >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the witness received events up to revision %d, not %d: %w", last, rev, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// reports stops the witness and returns what its clients recorded, and the cancellation of
// a caught-up watch, if one happened.
func (w *witness) reports() ([]report.ClientReport, error) {
	w.stop()
	var out []report.ClientReport
	for _, c := range w.clients {
		out = append(out, c.Report())
		c.Close()
	}
	return out, w.err
}
