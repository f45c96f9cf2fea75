package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// ev is an expected event.
type ev struct {
	typ mvccpb.Event_EventType
	key string
	val string
	rev int64
}

func (e ev) String() string {
	t := "PUT"
	if e.typ == mvccpb.DELETE {
		t = "DELETE"
	}
	return fmt.Sprintf("%s %s=%q@%d", t, e.key, e.val, e.rev)
}

func evOf(e *clientv3.Event) ev {
	return ev{e.Type, string(e.Kv.Key), string(e.Kv.Value), e.Kv.ModRevision}
}

func put(key, val string, rev int64) ev { return ev{mvccpb.PUT, key, val, rev} }
func del(key string, rev int64) ev      { return ev{mvccpb.DELETE, key, "", rev} }

// watchCreated opens a watch and waits for its created response, so later writes are seen.
func watchCreated(t *testing.T, ctx context.Context, c *clientv3.Client, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	t.Helper()
	wch := c.Watch(ctx, key, append(opts, clientv3.WithCreatedNotify())...)
	select {
	case r, ok := <-wch:
		if !ok {
			t.Fatalf("watch %q closed before its created response", key)
		}
		if !r.Created {
			t.Fatalf("watch %q: first response is not the created one: %+v", key, r)
		}
		if err := r.Err(); err != nil {
			t.Fatalf("watch %q: %v", key, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("watch %q: no created response within 10 s", key)
	}
	return wch
}

// collect reads events until n have arrived (progress notifications are skipped).
func collect(t *testing.T, wch clientv3.WatchChan, n int, limit time.Duration) []*clientv3.Event {
	t.Helper()
	var out []*clientv3.Event
	timeout := time.After(limit)
	for len(out) < n {
		select {
		case r, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events", len(out), n)
			}
			if err := r.Err(); err != nil {
				t.Fatalf("watch error after %d of %d events: %v", len(out), n, err)
			}
			out = append(out, r.Events...)
		case <-timeout:
			t.Fatalf("only %d of %d events within %v: %v", len(out), n, limit, out)
		}
	}
	return out
}

// quiet requires that no event arrives for d.
func quiet(t *testing.T, what string, wch clientv3.WatchChan, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case r, ok := <-wch:
			if !ok {
				t.Errorf("%s: watch channel closed", what)
				return
			}
			if len(r.Events) > 0 {
				t.Errorf("%s: unexpected events %v", what, r.Events)
			}
		case <-timeout:
			return
		}
	}
}

func wantEvents(t *testing.T, what string, got []*clientv3.Event, want []ev) {
	t.Helper()
	var g []string
	for _, e := range got {
		g = append(g, evOf(e).String())
	}
	var w []string
	for _, e := range want {
		w = append(w, e.String())
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s: events\n  %s\nwant\n  %s", what, strings.Join(g, "\n  "), strings.Join(w, "\n  "))
	}
}

// TestWatchRanges: single key, range, prefix and from-key watches see exactly the events of
// their keys, in revision order, with the writes' revisions.
func TestWatchRanges(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)

	type watch struct {
		name string
		key  string
		opts []clientv3.OpOption
		in   func(k string) bool
		wch  clientv3.WatchChan
		want []ev
	}
	ws := []*watch{
		{name: "single k", key: "k", in: func(k string) bool { return k == "k" }},
		{name: "range [b,d)", key: "b", opts: []clientv3.OpOption{clientv3.WithRange("d")}, in: func(k string) bool { return k >= "b" && k < "d" }},
		{name: "prefix p/", key: "p/", opts: []clientv3.OpOption{clientv3.WithPrefix()}, in: func(k string) bool { return strings.HasPrefix(k, "p/") }},
		{name: "from key m", key: "m", opts: []clientv3.OpOption{clientv3.WithFromKey()}, in: func(k string) bool { return k >= "m" }},
		{name: "everything", key: "", opts: []clientv3.OpOption{clientv3.WithPrefix()}, in: func(k string) bool { return true }},
	}
	for _, w := range ws {
		w.wch = watchCreated(t, ctx, c, w.key, w.opts...)
	}
	record := func(e ev) {
		for _, w := range ws {
			if w.in(e.key) {
				w.want = append(w.want, e)
			}
		}
	}
	for _, k := range []string{"a", "b", "bz", "c", "d", "k", "k2", "kk", "m", "p", "p/", "p/1", "p0", "q", "z", "\xff"} {
		r := mustPut(t, c, k, "v-"+k)
		record(put(k, "v-"+k, r.Header.Revision))
	}
	for _, k := range []string{"k", "c", "p/1", "z"} {
		r := mustDelete(t, c, k)
		record(del(k, r.Header.Revision))
	}
	// One txn: its events share a revision and arrive in the txn's order.
	if _, err := c.Txn(ctx).Then(clientv3.OpPut("k", "t1"), clientv3.OpPut("b", "t2"), clientv3.OpDelete("p/"), clientv3.OpPut("p/2", "t3")).Commit(); err != nil {
		t.Fatal(err)
	}
	trev := mustGet(t, c, "k").Kvs[0].ModRevision
	record(put("k", "t1", trev))
	record(put("b", "t2", trev))
	record(del("p/", trev))
	record(put("p/2", "t3", trev))
	r := mustDelete(t, c, "b", clientv3.WithRange("p0"))
	// keys in [b, p0) at that point: b bz d k k2 kk m p p/2
	for _, k := range []string{"b", "bz", "d", "k", "k2", "kk", "m", "p", "p/2"} {
		record(del(k, r.Header.Revision))
	}
	if r.Deleted != 9 {
		t.Errorf("range delete deleted %d keys, want 9", r.Deleted)
	}
	for _, w := range ws {
		got := collect(t, w.wch, len(w.want), 10*time.Second)
		wantEvents(t, w.name, got, w.want)
		quiet(t, w.name, w.wch, 300*time.Millisecond)
	}
}

// TestWatchRevReplay: a watch from a past revision replays the history from there, then
// goes on with live events.
func TestWatchRevReplay(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	var all []ev
	for i := 0; i < 50; i++ {
		k := fmt.Sprintf("r/%d", i%7)
		v := fmt.Sprint(i)
		if i%5 == 4 {
			if d := mustDelete(t, c, k); d.Deleted == 1 {
				all = append(all, del(k, d.Header.Revision))
			}
			continue
		}
		all = append(all, put(k, v, mustPut(t, c, k, v).Header.Revision))
		mustPut(t, c, "other", v) // not in the watched range
	}
	for _, from := range []int{0, 1, 17, len(all) - 1} {
		start := all[from].rev
		wch := c.Watch(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(start))
		got := collect(t, wch, len(all)-from, 10*time.Second)
		wantEvents(t, fmt.Sprintf("replay from event %d (rev %d)", from, start), got, all[from:])
		// start between two revisions: the next write's events and on
		if from > 0 {
			wch2 := c.Watch(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(all[from-1].rev+1))
			got = collect(t, wch2, len(all)-from, 10*time.Second)
			wantEvents(t, fmt.Sprintf("replay from rev %d (just after event %d)", all[from-1].rev+1, from-1), got, all[from:])
		}
	}
	// Replay, then live.
	wch := c.Watch(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(all[40].rev))
	got := collect(t, wch, len(all)-40, 10*time.Second)
	wantEvents(t, "replay before live", got, all[40:])
	live := put("r/live", "x", mustPut(t, c, "r/live", "x").Header.Revision)
	wantEvents(t, "live after replay", collect(t, wch, 1, 10*time.Second), []ev{live})
	// A start revision in the future: nothing until the store reaches it.
	cur := currentRev(t, c)
	fut := c.Watch(ctx, "r/", clientv3.WithPrefix(), clientv3.WithRev(cur+2000000000))
	mustPut(t, c, "r/0", "not yet")
	quiet(t, "future start revision", fut, 500*time.Millisecond)
}

// TestWatchPrevKVAndFilters: WithPrevKV carries the previous version (none for a create),
// WithFilterPut / WithFilterDelete drop their event type.
func TestWatchPrevKVAndFilters(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	prev := watchCreated(t, ctx, c, "k", clientv3.WithPrevKV())
	plain := watchCreated(t, ctx, c, "k")
	noPut := watchCreated(t, ctx, c, "k", clientv3.WithFilterPut())
	noDel := watchCreated(t, ctx, c, "k", clientv3.WithFilterDelete())
	r1 := mustPut(t, c, "k", "v1").Header.Revision
	r2 := mustPut(t, c, "k", "v2").Header.Revision
	r3 := mustDelete(t, c, "k").Header.Revision
	r4 := mustPut(t, c, "k", "v3").Header.Revision
	all := []ev{put("k", "v1", r1), put("k", "v2", r2), del("k", r3), put("k", "v3", r4)}

	got := collect(t, prev, 4, 10*time.Second)
	wantEvents(t, "prev_kv", got, all)
	if len(got) == 4 {
		if got[0].PrevKv != nil {
			t.Errorf("prev_kv of a create: %v, want none", got[0].PrevKv)
		}
		if p := got[1].PrevKv; p == nil || string(p.Value) != "v1" || p.ModRevision != r1 || p.Version != 1 {
			t.Errorf("prev_kv of the second put: %v, want v1@%d version 1", p, r1)
		}
		if p := got[2].PrevKv; p == nil || string(p.Value) != "v2" || p.ModRevision != r2 || p.Version != 2 {
			t.Errorf("prev_kv of the delete: %v, want v2@%d version 2", p, r2)
		}
		if got[3].PrevKv != nil {
			t.Errorf("prev_kv of a put after a delete: %v, want none", got[3].PrevKv)
		}
		if got[2].Kv.Version != 0 || got[2].Kv.CreateRevision != 0 {
			t.Errorf("delete event kv: %+v, want version 0 create_revision 0", got[2].Kv)
		}
		if got[3].Kv.Version != 1 || got[3].Kv.CreateRevision != r4 || got[1].Kv.Version != 2 || got[1].Kv.CreateRevision != r1 {
			t.Errorf("event versions/create revisions wrong: %+v %+v", got[1].Kv, got[3].Kv)
		}
	}
	got = collect(t, plain, 4, 10*time.Second)
	wantEvents(t, "plain", got, all)
	for _, e := range got {
		if e.PrevKv != nil {
			t.Errorf("prev_kv without WithPrevKV: %v", e.PrevKv)
		}
	}
	wantEvents(t, "WithFilterPut", collect(t, noPut, 1, 10*time.Second), all[2:3])
	wantEvents(t, "WithFilterDelete", collect(t, noDel, 3, 10*time.Second), []ev{all[0], all[1], all[3]})
	quiet(t, "WithFilterPut", noPut, 300*time.Millisecond)
	quiet(t, "WithFilterDelete", noDel, 100*time.Millisecond)

	// The same from history (replay path) as live.
	rp := c.Watch(ctx, "k", clientv3.WithRev(r1), clientv3.WithPrevKV())
	got = collect(t, rp, 4, 10*time.Second)
	wantEvents(t, "prev_kv replay", got, all)
	if len(got) == 4 && (got[0].PrevKv != nil || got[1].PrevKv == nil || string(got[1].PrevKv.Value) != "v1" ||
		got[2].PrevKv == nil || string(got[2].PrevKv.Value) != "v2" || got[3].PrevKv != nil) {
		t.Errorf("prev_kv on replay: %v %v %v %v", got[0].PrevKv, got[1].PrevKv, got[2].PrevKv, got[3].PrevKv)
	}
	wantEvents(t, "WithFilterPut replay", collect(t, c.Watch(ctx, "k", clientv3.WithRev(r1), clientv3.WithFilterPut()), 1, 10*time.Second), all[2:3])
}

func nextProgress(t *testing.T, wch clientv3.WatchChan, limit time.Duration) (clientv3.WatchResponse, []*clientv3.Event) {
	t.Helper()
	var evs []*clientv3.Event
	timeout := time.After(limit)
	for {
		select {
		case r, ok := <-wch:
			if !ok {
				t.Fatalf("watch closed while waiting for a progress notification")
			}
			if r.IsProgressNotify() {
				return r, evs
			}
			evs = append(evs, r.Events...)
		case <-timeout:
			t.Fatalf("no progress notification within %v (%d events meanwhile)", limit, len(evs))
		}
	}
}

// TestWatchProgressNotify: with --experimental-watch-progress-notify-interval 1s a quiet
// watcher that asked for it receives progress notifications at the current revision.
func TestWatchProgressNotify(t *testing.T) {
	s := startServer(t, serverOpts{args: []string{"--experimental-watch-progress-notify-interval", "1s"}})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	mustPut(t, c, "x", "1")
	wch := watchCreated(t, ctx, c, "quiet", clientv3.WithProgressNotify())
	noNotify := watchCreated(t, ctx, c, "quiet2")
	rev := currentRev(t, c)
	start := time.Now()
	r, _ := nextProgress(t, wch, 5*time.Second)
	if r.Header.Revision != rev {
		t.Errorf("progress notification at %d, want the current revision %d", r.Header.Revision, rev)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("first progress notification after %v with a 1 s interval", d)
	}
	// Writes elsewhere move the reported revision.
	rev = mustPut(t, c, "elsewhere", "1").Header.Revision
	r, _ = nextProgress(t, wch, 5*time.Second)
	if r.Header.Revision != rev {
		t.Errorf("progress notification after a write elsewhere at %d, want %d", r.Header.Revision, rev)
	}
	// An event on the watched key, then progress at or after it.
	rev = mustPut(t, c, "quiet", "now").Header.Revision
	r, evs := nextProgress(t, wch, 5*time.Second)
	wantEvents(t, "event before progress", evs, []ev{put("quiet", "now", rev)})
	if r.Header.Revision != rev {
		t.Errorf("progress notification at %d after the event at %d", r.Header.Revision, rev)
	}
	// A watch without WithProgressNotify gets none.
	quiet(t, "watch without progress_notify", noNotify, 100*time.Millisecond)
	select {
	case r := <-noNotify:
		t.Errorf("a watch without WithProgressNotify got %+v", r)
	default:
	}
}

// TestWatchProgressNotifyFutureStart: a progress notification never reports a revision the
// store has not reached. etcd sends none to a watcher whose start revision is in the future
// (progressIfSync: rev < w.startRev).
func TestWatchProgressNotifyFutureStart(t *testing.T) {
	s := startServer(t, serverOpts{args: []string{"--experimental-watch-progress-notify-interval", "1s"}})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	cur := mustPut(t, c, "x", "1").Header.Revision
	wch := watchCreated(t, ctx, c, "k", clientv3.WithProgressNotify(), clientv3.WithRev(cur+1000000000))
	timeout := time.After(2500 * time.Millisecond)
	for {
		select {
		case r := <-wch:
			now := currentRev(t, c)
			if r.IsProgressNotify() && r.Header.Revision > now {
				t.Errorf("progress notification at revision %d, beyond the store's current revision %d", r.Header.Revision, now)
				return
			}
		case <-timeout:
			return
		}
	}
}

// TestWatchRequestProgress: Watcher.RequestProgress answers with a progress notification at
// a revision >= the last write, after every event of the writes that preceded it.
func TestWatchRequestProgress(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	mustPut(t, c, "x", "1")
	wch := watchCreated(t, ctx, c, "rp/", clientv3.WithPrefix())
	other := watchCreated(t, ctx, c, "zz") // on the same stream: the notification is broadcast
	rev := currentRev(t, c)
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	r, evs := nextProgress(t, wch, 5*time.Second)
	if r.Header.Revision != rev || len(evs) != 0 {
		t.Errorf("progress on a quiet stream at %d (%d events), want %d", r.Header.Revision, len(evs), rev)
	}
	r, _ = nextProgress(t, other, 5*time.Second)
	if r.Header.Revision != rev {
		t.Errorf("broadcast progress to the second watcher at %d, want %d", r.Header.Revision, rev)
	}

	for round := 0; round < 5; round++ {
		// A burst of concurrent writes, then a progress request right away.
		const writers, each = 8, 25
		var wg sync.WaitGroup
		var mu sync.Mutex
		var maxRev int64
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					pr, err := c.Put(ctx, fmt.Sprintf("rp/%d/%d", w, i), fmt.Sprint(round))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if pr.Header.Revision > maxRev {
						maxRev = pr.Header.Revision
					}
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
		if err := c.RequestProgress(ctx); err != nil {
			t.Fatal(err)
		}
		r, evs := nextProgress(t, wch, 10*time.Second)
		if len(evs) != writers*each {
			t.Errorf("round %d: %d events before the progress notification, want all %d of the burst", round, len(evs), writers*each)
		}
		if r.Header.Revision < maxRev {
			t.Errorf("round %d: progress notification at %d, below the last write's revision %d", round, r.Header.Revision, maxRev)
		}
		var last int64
		for _, e := range evs {
			if e.Kv.ModRevision < last {
				t.Errorf("round %d: events out of order: %d after %d", round, e.Kv.ModRevision, last)
				break
			}
			last = e.Kv.ModRevision
		}
		if last > r.Header.Revision {
			t.Errorf("round %d: progress at %d after an event at %d", round, r.Header.Revision, last)
		}
		if r, _ := nextProgress(t, other, 5*time.Second); r.Header.Revision < maxRev {
			t.Errorf("round %d: the other watcher's progress at %d < %d", round, r.Header.Revision, maxRev)
		}
	}
}

// TestWatchCompacted: a watch from below the compaction revision gets a response with
// CompactRevision set (ErrCompacted) and its channel closes; from the compaction revision
// on it replays; a live watch goes on across a compaction.
func TestWatchCompacted(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	live := watchCreated(t, ctx, c, "k")
	var revs []int64
	for i := 0; i < 6; i++ {
		revs = append(revs, mustPut(t, c, "k", fmt.Sprint(i)).Header.Revision)
	}
	if _, err := c.Compact(ctx, revs[3]); err != nil {
		t.Fatal(err)
	}
	for _, from := range []int64{revs[1], revs[3] - 1} {
		wch := c.Watch(ctx, "k", clientv3.WithRev(from))
		select {
		case r, ok := <-wch:
			if !ok {
				t.Fatalf("watch from %d: closed without a response", from)
			}
			if r.CompactRevision != revs[3] || !isErr(r.Err(), rpctypes.ErrCompacted) || !r.Canceled {
				t.Errorf("watch from %d: response %+v err %v, want CompactRevision %d, canceled, ErrCompacted", from, r, r.Err(), revs[3])
			}
			if r.Header.Revision != 0 { // etcd's compaction response carries no revision
				t.Errorf("watch from %d: compaction response header.revision %d, want 0", from, r.Header.Revision)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch from %d below the compaction: no response", from)
		}
		select {
		case r, ok := <-wch:
			if ok {
				t.Errorf("watch from %d: channel not closed after the compaction response: %+v", from, r)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("watch from %d: channel not closed after the compaction response", from)
		}
	}
	wch := c.Watch(ctx, "k", clientv3.WithRev(revs[3]))
	wantEvents(t, "watch from the compaction revision", collect(t, wch, 3, 10*time.Second),
		[]ev{put("k", "3", revs[3]), put("k", "4", revs[4]), put("k", "5", revs[5])})
	var want []ev
	for i, r := range revs {
		want = append(want, put("k", fmt.Sprint(i), r))
	}
	want = append(want, put("k", "after", mustPut(t, c, "k", "after").Header.Revision))
	wantEvents(t, "live watch across a compaction", collect(t, live, 7, 10*time.Second), want)
}

// TestWatchCancel: closing the watch's context cancels it (the channel closes); the server
// goes on serving, also after many watches came and went.
func TestWatchCancel(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	keep := watchCreated(t, ctx, c, "k")
	for i := 0; i < 50; i++ {
		wctx, cancel := context.WithCancel(ctx)
		wch := watchCreated(t, wctx, c, "k")
		cancel()
		timeout := time.After(10 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-wch:
				if !ok {
					break drain
				}
			case <-timeout:
				t.Fatalf("cancelled watch %d: channel not closed", i)
			}
		}
	}
	// A watch in its own stream (distinct metadata -> distinct gRPC stream), then cancelled.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := watchCreated(t, wctx, c, "k")
	cancel()
	for range wch {
	}
	r := mustPut(t, c, "k", "v")
	wantEvents(t, "the watch that stayed", collect(t, keep, 1, 10*time.Second), []ev{put("k", "v", r.Header.Revision)})
	if g := mustGet(t, c, "k"); string(g.Kvs[0].Value) != "v" {
		t.Errorf("Get after cancels: %v", g.Kvs)
	}
	// A fresh client and watch still work.
	c2 := s.client(t)
	w2 := watchCreated(t, ctx, c2, "k")
	r = mustPut(t, c, "k", "v2")
	wantEvents(t, "new watch after cancels", collect(t, w2, 1, 10*time.Second), []ev{put("k", "v2", r.Header.Revision)})
}

// TestWatchManyOnOneStream: 300 watches share one gRPC stream; each sees exactly its key.
func TestWatchManyOnOneStream(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	const n = 300
	wchs := make([]clientv3.WatchChan, n)
	for i := range wchs {
		wchs[i] = c.Watch(ctx, fmt.Sprintf("m/%03d", i), clientv3.WithCreatedNotify())
	}
	all := watchCreated(t, ctx, c, "m/", clientv3.WithPrefix())
	for i := range wchs {
		select {
		case r := <-wchs[i]:
			if !r.Created {
				t.Fatalf("watch %d: %+v", i, r)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch %d not created", i)
		}
	}
	want := make([]ev, n)
	for _, i := range []int{0, 299, 150, 7} { // some keys twice
		mustPut(t, c, fmt.Sprintf("m/%03d", i), "early")
	}
	var allWant []ev
	for _, i := range []int{0, 299, 150, 7} {
		g := mustGet(t, c, fmt.Sprintf("m/%03d", i))
		allWant = append(allWant, put(fmt.Sprintf("m/%03d", i), "early", g.Kvs[0].ModRevision))
	}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("m/%03d", i)
		want[i] = put(k, "v", mustPut(t, c, k, "v").Header.Revision)
		allWant = append(allWant, want[i])
	}
	for _, i := range []int{0, 299, 150, 7} {
		got := collect(t, wchs[i], 2, 10*time.Second)
		wantEvents(t, fmt.Sprintf("watch %d", i), got[1:], want[i:i+1])
	}
	for i := 0; i < n; i++ {
		switch i {
		case 0, 299, 150, 7:
			continue
		}
		wantEvents(t, fmt.Sprintf("watch %d", i), collect(t, wchs[i], 1, 10*time.Second), want[i:i+1])
	}
	wantEvents(t, "prefix watch on the same stream", collect(t, all, len(allWant), 10*time.Second), allWant)
	for i := 0; i < n; i += 37 {
		quiet(t, fmt.Sprintf("watch %d", i), wchs[i], 20*time.Millisecond)
	}
}

// TestShutdownWithOpenWatches: SIGTERM with open watch streams and a connected client still
// ends the process with exit code 0.
func TestShutdownWithOpenWatches(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	for i := 0; i < 10; i++ {
		watchCreated(t, ctx, c, fmt.Sprint("s", i), clientv3.WithProgressNotify())
	}
	mustPut(t, c, "s1", "x")
	s.stop()
}

// TestWatchSurvivesServerRestart: a watch open while the server is restarted (SIGTERM, then
// started again on the same port and data) is resumed by clientv3 and sees later writes, as
// with etcd: the server ends streams as "server stopped" (Unavailable), not as a cancel.
func TestWatchSurvivesServerRestart(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	wch := watchCreated(t, ctx, c, "restart/k")
	s.restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.Put(pctx, "restart/k", "after")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put after restart: %v", err)
		}
	}
	select {
	case resp, ok := <-wch:
		if !ok || resp.Canceled || resp.Err() != nil {
			t.Fatalf("the watch ended with the restart: open=%v canceled=%v err=%v", ok, resp.Canceled, resp.Err())
		}
		if len(resp.Events) != 1 || string(resp.Events[0].Kv.Value) != "after" {
			t.Fatalf("events after restart: %v", resp.Events)
		}
	case <-ctx.Done():
		t.Fatal("no event after the restart")
	}
}

// TestWatchStreamCancelStorm: streams whose client cancels many watches and closes the
// stream at once (clientv3 sends a cancel request per watch when the context ends, while the
// stream goes away) leave the server serving.
func TestWatchStreamCancelStorm(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 120*time.Second)
	mustPut(t, c, "storm/x", "1")
	deadline := time.Now().Add(8 * time.Second)
	rounds := 0
	for time.Now().Before(deadline) {
		rounds++
		var wg sync.WaitGroup
		for st := 0; st < 4; st++ {
			wg.Add(1)
			go func(st int) {
				defer wg.Done()
				sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "storm", fmt.Sprint(rounds, "-", st)))
				var chans []clientv3.WatchChan
				for i := 0; i < 40; i++ {
					chans = append(chans, c.Watch(sctx, fmt.Sprintf("storm/%d", i), clientv3.WithCreatedNotify(), clientv3.WithRev(1)))
				}
				<-chans[len(chans)-1] // the last one is created: all are
				cancel()
				for _, ch := range chans {
					for range ch {
					}
				}
			}(st)
		}
		wg.Wait()
		gctx, gcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Get(gctx, "storm/x")
		gcancel()
		if err != nil {
			t.Fatalf("round %d: server no longer answers: %v", rounds, err)
		}
	}
	t.Logf("%d rounds of 4 streams x 40 watches", rounds)
	w := watchCreated(t, ctx, c, "storm/x")
	r := mustPut(t, c, "storm/x", "2")
	wantEvents(t, "after the storm", collect(t, w, 1, 10*time.Second), []ev{put("storm/x", "2", r.Header.Revision)})
}

// TestWatchStreamCarriesMoreThanItsBufferLimit: a stream whose client reads keeps receiving
// events however many bytes it has carried in total (the server bounds only what waits
// unsent, 16 MiB, not what was sent).
func TestWatchStreamCarriesMoreThanItsBufferLimit(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	ctx := ctxT(t, 120*time.Second)
	wch := watchCreated(t, ctx, c, "big/", clientv3.WithPrefix())
	value := strings.Repeat("x", 1000000)
	const n = 40 // 40 MB through one stream
	for i := 0; i < n; i++ {
		mustPut(t, c, fmt.Sprintf("big/%02d", i), value)
	}
	got := 0
	for got < n {
		select {
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				t.Fatalf("watch ended after %d events: %v", got, resp.Err())
			}
			got += len(resp.Events)
		case <-ctx.Done():
			t.Fatalf("only %d of %d events of 1 MB arrived", got, n)
		}
	}
}
