package tests

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// The stress test: concurrent writers, many watchers, then every watcher's record is
// checked against the committed history (etcd's robustness guarantees: ordered, unique,
// reliable, atomic, bookmarkable progress notifications).

type stressConfig struct {
	writers       int
	opsPerWriter  int
	opInterval    time.Duration // per writer
	writeDeadline time.Duration
	watchers      int
	clients       int
	faults        string // ETCD_FDB_FAULTS, "" for none
	seed          int64
	pastPercent   int // watchers created during the writes that start at a past revision
	pastWindow    int // how far back, in acknowledged writes (0: anywhere)
	catchUp       time.Duration
}

const stressKeys = 200

func skey(i int) string { return fmt.Sprintf("s/%03d", i) }

// ---- the history ----

type hevent struct {
	typ     mvccpb.Event_EventType
	key     string
	val     string
	create  int64
	version int64
	prevVal string
	prevMod int64
	hasPrev bool
}

type hrev struct {
	rev    int64
	events []hevent
}

// ---- what a watcher saw ----

type wevent struct {
	rev     int64
	resp    int32 // index of the WatchResponse it came in
	typ     mvccpb.Event_EventType
	key     string
	val     string
	create  int64
	version int64
	prevVal string
	prevMod int64
	hasPrev bool
}

type progressMark struct {
	after int // events received before it
	rev   int64
}

type wspec struct {
	key, end string // end "": single key; fromKey: every key >= key
	fromKey  bool
	prefix   bool // use clientv3.WithPrefix (end is then the prefix end)
	prevKV   bool
	noPut    bool
	noDelete bool
	progress bool
	startRev int64 // 0: from now
}

func (s *wspec) matches(k string) bool {
	if s.fromKey {
		return k >= s.key
	}
	if s.end == "" {
		return k == s.key
	}
	return k >= s.key && k < s.end
}

func (s *wspec) wants(e *hevent) bool {
	if !s.matches(e.key) {
		return false
	}
	if (s.noPut && e.typ == mvccpb.PUT) || (s.noDelete && e.typ == mvccpb.DELETE) {
		return false
	}
	return true
}

func (s *wspec) String() string {
	r := fmt.Sprintf("key %q", s.key)
	switch {
	case s.fromKey:
		r += " from-key"
	case s.prefix:
		r += " prefix"
	case s.end != "":
		r += fmt.Sprintf(" range_end %q", s.end)
	}
	if s.prevKV {
		r += " prev_kv"
	}
	if s.noPut {
		r += " no_put"
	}
	if s.noDelete {
		r += " no_delete"
	}
	if s.progress {
		r += " progress_notify"
	}
	return r + fmt.Sprintf(" start_revision %d", s.startRev)
}

type watcherRec struct {
	id        int
	stream    int
	spec      wspec
	created   int64 // header revision of the created response
	from      int64 // first revision it must deliver
	createErr error
	mu        sync.Mutex
	events    []wevent
	marks     []progressMark
	nresp     int32
	lastSeen  int64 // max(progress rev, event rev)
	err       error // an error response / early close
	closed    bool
	done      chan struct{}
}

func randomSpec(rng *rand.Rand) wspec {
	var s wspec
	switch p := rng.Intn(100); {
	case p < 30: // single key
		s.key = skey(rng.Intn(stressKeys))
	case p < 55: // small range
		a := rng.Intn(stressKeys)
		b := a + 1 + rng.Intn(12)
		s.key, s.end = skey(a), skey(b)
		if b >= stressKeys {
			s.end = "s/~"
		}
	case p < 70: // prefix of ten keys
		s.key = fmt.Sprintf("s/%02d", rng.Intn(stressKeys/10))
		s.end = s.key[:len(s.key)-1] + string(s.key[len(s.key)-1]+1)
		s.prefix = true
	case p < 82: // prefix of a hundred keys
		s.key = fmt.Sprintf("s/%d", rng.Intn(2))
		s.end = s.key[:len(s.key)-1] + string(s.key[len(s.key)-1]+1)
		s.prefix = true
	case p < 94: // from key
		s.key = skey(rng.Intn(stressKeys))
		s.fromKey = true
	default: // everything
		s.key, s.end, s.prefix = "s/", "s0", true
	}
	s.prevKV = rng.Intn(5) == 0
	switch rng.Intn(20) {
	case 0:
		s.noPut = true
	case 1:
		s.noDelete = true
	}
	s.progress = rng.Intn(2) == 0
	return s
}

func (s *wspec) opts() []clientv3.OpOption {
	o := []clientv3.OpOption{clientv3.WithCreatedNotify()}
	switch {
	case s.fromKey:
		o = append(o, clientv3.WithFromKey())
	case s.prefix:
		o = append(o, clientv3.WithPrefix())
	case s.end != "":
		o = append(o, clientv3.WithRange(s.end))
	}
	if s.prevKV {
		o = append(o, clientv3.WithPrevKV())
	}
	if s.noPut {
		o = append(o, clientv3.WithFilterPut())
	}
	if s.noDelete {
		o = append(o, clientv3.WithFilterDelete())
	}
	if s.progress {
		o = append(o, clientv3.WithProgressNotify())
	}
	if s.startRev > 0 {
		o = append(o, clientv3.WithRev(s.startRev))
	}
	return o
}

// stream is one gRPC watch stream: a client and a context (clientv3 keys its streams by the
// context's metadata).
type wstream struct {
	c   *clientv3.Client
	ctx context.Context
}

// run reads the watch channel until it closes or stop is closed.
func (w *watcherRec) run(wch clientv3.WatchChan, stop <-chan struct{}) {
	defer close(w.done)
	first := true
	for {
		var r clientv3.WatchResponse
		var ok bool
		select {
		case r, ok = <-wch:
		case <-stop:
			return
		}
		w.mu.Lock()
		if !ok {
			w.closed = true
			if first && w.createErr == nil {
				w.createErr = fmt.Errorf("channel closed before the created response")
			}
			w.mu.Unlock()
			return
		}
		if first {
			first = false
			if !r.Created || r.Err() != nil {
				w.createErr = fmt.Errorf("first response %+v (err %v)", r, r.Err())
				w.mu.Unlock()
				// drain until closed
				for range wch {
				}
				return
			}
			w.created = r.Header.Revision
			w.from = w.spec.startRev
			if w.from == 0 {
				w.from = w.created + 1
			}
			w.mu.Unlock()
			continue
		}
		if err := r.Err(); err != nil {
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
			continue
		}
		if r.IsProgressNotify() {
			w.marks = append(w.marks, progressMark{len(w.events), r.Header.Revision})
			if r.Header.Revision > w.lastSeen {
				w.lastSeen = r.Header.Revision
			}
			w.mu.Unlock()
			continue
		}
		idx := w.nresp
		w.nresp++
		for _, e := range r.Events {
			we := wevent{rev: e.Kv.ModRevision, resp: idx, typ: e.Type, key: string(e.Kv.Key), val: string(e.Kv.Value),
				create: e.Kv.CreateRevision, version: e.Kv.Version}
			if e.PrevKv != nil {
				we.hasPrev = true
				we.prevVal = string(e.PrevKv.Value)
				we.prevMod = e.PrevKv.ModRevision
			}
			w.events = append(w.events, we)
			if we.rev > w.lastSeen {
				w.lastSeen = we.rev
			}
		}
		w.mu.Unlock()
	}
}

// ---- writers ----

type writeOp struct {
	id      string // value prefix "writer.seq"
	kind    string
	acked   bool
	maybe   bool  // failed with an error: may or may not have been applied
	rev     int64 // response revision when acked
	wrote   bool  // acked and made a revision
	nevents int   // acked: events its revision must have
	err     error
}

func runWriter(ctx context.Context, c *clientv3.Client, w int, cfg stressConfig, stopAt time.Time, rec *[]*writeOp, lastRev *int64, revMu *sync.Mutex, revs *[]int64) {
	rng := rand.New(rand.NewSource(cfg.seed*1000 + int64(w)))
	tick := time.NewTicker(cfg.opInterval)
	defer tick.Stop()
	for seq := 0; seq < cfg.opsPerWriter && time.Now().Before(stopAt); seq++ {
		<-tick.C
		op := &writeOp{id: fmt.Sprintf("%d.%d", w, seq)}
		*rec = append(*rec, op)
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		switch p := rng.Intn(100); {
		case p < 50:
			op.kind = "put"
			var r *clientv3.PutResponse
			r, err = c.Put(octx, skey(rng.Intn(stressKeys)), op.id+".0")
			if err == nil {
				op.rev, op.wrote, op.nevents = r.Header.Revision, true, 1
			}
		case p < 65:
			op.kind = "delete"
			var r *clientv3.DeleteResponse
			r, err = c.Delete(octx, skey(rng.Intn(stressKeys)))
			if err == nil {
				op.rev, op.wrote, op.nevents = r.Header.Revision, r.Deleted > 0, int(r.Deleted)
			}
		case p < 75:
			op.kind = "delete-range"
			a := rng.Intn(stressKeys)
			var r *clientv3.DeleteResponse
			r, err = c.Delete(octx, skey(a), clientv3.WithRange(skey(a+1+rng.Intn(4))))
			if err == nil {
				op.rev, op.wrote, op.nevents = r.Header.Revision, r.Deleted > 0, int(r.Deleted)
			}
		default:
			op.kind = "txn"
			perm := rng.Perm(stressKeys)
			k1, k2, k3, k4 := skey(perm[0]), skey(perm[1]), skey(perm[2]), skey(perm[3])
			var r *clientv3.TxnResponse
			r, err = c.Txn(octx).
				If(clientv3.Compare(clientv3.Version(k1), ">", 0)).
				Then(clientv3.OpPut(k2, op.id+".0"), clientv3.OpPut(k3, op.id+".1"), clientv3.OpDelete(k4), clientv3.OpGet(k1)).
				Else(clientv3.OpPut(k4, op.id+".0"), clientv3.OpGet(k2)).
				Commit()
			if err == nil {
				// The txn's revision is read back from the keys it wrote (see
				// TestKVTxnHeaderRevision: header.revision is not relied on here).
				op.wrote = true
				if r.Succeeded {
					op.nevents = 2 + int(r.Responses[2].GetResponseDeleteRange().GetDeleted())
				} else {
					op.nevents = 1
				}
				op.rev = -1 // resolved from the history by value
			}
		}
		cancel()
		if err != nil {
			op.maybe, op.err = true, err
		} else {
			op.acked = true
			if op.rev > 0 {
				revMu.Lock()
				if op.rev > *lastRev {
					*lastRev = op.rev
				}
				*revs = append(*revs, op.rev)
				revMu.Unlock()
			}
		}
	}
}

// ---- the test ----

func TestStressWatchGuarantees(t *testing.T) {
	runStress(t, stressConfig{
		writers: 8, opsPerWriter: 1800, opInterval: 9 * time.Millisecond, writeDeadline: 22 * time.Second,
		watchers: 1000, clients: 20, seed: 1, pastPercent: 50, catchUp: 30 * time.Second,
	})
}

func TestStressWatchGuaranteesWithFaults(t *testing.T) {
	runStress(t, stressConfig{
		writers: 8, opsPerWriter: 400, opInterval: 20 * time.Millisecond, writeDeadline: 10 * time.Second,
		watchers: 300, clients: 10, faults: "7:20", seed: 2, pastPercent: 25, pastWindow: 200, catchUp: 30 * time.Second,
	})
}

func runStress(t *testing.T, cfg stressConfig) {
	opts := serverOpts{args: []string{"--experimental-watch-progress-notify-interval", "1s"}}
	if cfg.faults != "" {
		opts.env = []string{"ETCD_FDB_FAULTS=" + cfg.faults}
	}
	s := startServer(t, opts)
	begin := time.Now()
	rng := rand.New(rand.NewSource(cfg.seed))
	ctl := s.client(t)
	r0 := retryRev(t, ctl)

	// Watch streams: two per client (plain context, and one with metadata).
	var streams []wstream
	baseCtx, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	for i := 0; i < cfg.clients; i++ {
		c := s.client(t)
		streams = append(streams, wstream{c, baseCtx},
			wstream{c, metadata.AppendToOutgoingContext(baseCtx, "stream", fmt.Sprint(i))})
	}
	stop := make(chan struct{})
	var wmu sync.Mutex
	var watchers []*watcherRec
	startWatcher := func(spec wspec) *watcherRec {
		wmu.Lock()
		id := len(watchers)
		wmu.Unlock()
		st := id % len(streams)
		w := &watcherRec{id: id, stream: st, spec: spec, done: make(chan struct{})}
		wch := streams[st].c.Watch(streams[st].ctx, spec.key, spec.opts()...)
		go w.run(wch, stop)
		wmu.Lock()
		watchers = append(watchers, w)
		wmu.Unlock()
		return w
	}
	// A third of the watchers before any write.
	for i := 0; i < cfg.watchers/3; i++ {
		startWatcher(randomSpec(rng))
	}
	waitCreated(t, watchers, 30*time.Second)
	t.Logf("%d watchers created before the writes (%v)", len(watchers), time.Since(begin))

	// Writers.
	writeCtx, cancelWrites := context.WithCancel(context.Background())
	defer cancelWrites()
	wc := []*clientv3.Client{s.client(t), s.client(t), s.client(t), s.client(t)}
	ops := make([][]*writeOp, cfg.writers)
	var lastRev int64
	var revMu sync.Mutex
	var ackedRevs []int64
	stopAt := time.Now().Add(cfg.writeDeadline)
	var wg sync.WaitGroup
	for w := 0; w < cfg.writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			runWriter(writeCtx, wc[w%len(wc)], w, cfg, stopAt, &ops[w], &lastRev, &revMu, &ackedRevs)
		}(w)
	}
	// The rest of the watchers while writing: from now, or from a past revision.
	created := make(chan struct{})
	go func() {
		defer close(created)
		wrng := rand.New(rand.NewSource(cfg.seed + 77))
		rest := cfg.watchers - cfg.watchers/3
		for i := 0; i < rest; i++ {
			time.Sleep(cfg.writeDeadline / 2 / time.Duration(rest))
			spec := randomSpec(wrng)
			if wrng.Intn(100) < cfg.pastPercent {
				revMu.Lock()
				n := len(ackedRevs)
				var pick int64
				if n > 0 {
					lo := 0
					if cfg.pastWindow > 0 && n > cfg.pastWindow {
						lo = n - cfg.pastWindow
					}
					pick = ackedRevs[lo+wrng.Intn(n-lo)] // exactly a write's revision
					if wrng.Intn(2) == 0 {
						pick -= int64(wrng.Intn(1000)) // or between revisions
					}
				}
				revMu.Unlock()
				if pick <= r0 {
					pick = r0 + 1
				}
				spec.startRev = pick
			}
			startWatcher(spec)
		}
	}()
	// Progress requests on random streams while writing.
	progStop := make(chan struct{})
	var progWG sync.WaitGroup
	progWG.Add(1)
	go func() {
		defer progWG.Done()
		prng := rand.New(rand.NewSource(cfg.seed + 99))
		for {
			select {
			case <-progStop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			st := streams[prng.Intn(len(streams))]
			ctx, cancel := context.WithTimeout(st.ctx, time.Second)
			_ = st.c.RequestProgress(ctx)
			cancel()
		}
	}()
	wg.Wait()
	t.Logf("writers done (%v)", time.Since(begin))
	<-created
	t.Logf("watchers created (%v)", time.Since(begin))
	close(progStop)
	progWG.Wait()
	var nops, nacked, nmaybe int
	for _, o := range ops {
		for _, op := range o {
			nops++
			if op.acked {
				nacked++
			}
			if op.maybe {
				nmaybe++
			}
		}
	}
	final := retryRev(t, ctl)
	t.Logf("writes done: %d ops (%d acked, %d failed: maybe applied), revisions %d..%d (%v)", nops, nacked, nmaybe, r0, final, time.Since(begin))
	if cfg.faults == "" && nmaybe > 0 {
		for _, o := range ops {
			for _, op := range o {
				if op.maybe {
					t.Errorf("write %s (%s) failed without fault injection: %v", op.id, op.kind, op.err)
					break
				}
			}
		}
	}
	waitCreated(t, watchers, 30*time.Second)

	// Every watcher must get to the final revision: progress requests on every stream.
	deadline := time.Now().Add(cfg.catchUp)
	for {
		behind := map[int]bool{}
		for _, w := range watchers {
			w.mu.Lock()
			if w.createErr == nil && !w.closed && w.err == nil && w.lastSeen < final {
				behind[w.stream] = true
			}
			w.mu.Unlock()
		}
		if len(behind) == 0 {
			break
		}
		if time.Now().After(deadline) {
			n := 0
			for _, w := range watchers {
				w.mu.Lock()
				if w.createErr == nil && !w.closed && w.err == nil && w.lastSeen < final {
					if n < 10 {
						t.Errorf("watcher %d (%s, stream %d) never reached the final revision %d: last seen %d, %d events",
							w.id, w.spec.String(), w.stream, final, w.lastSeen, len(w.events))
					}
					n++
				}
				w.mu.Unlock()
			}
			t.Errorf("%d watchers did not reach the final revision within %v of the last write", n, cfg.catchUp)
			break
		}
		for st := range behind {
			ctx, cancel := context.WithTimeout(streams[st].ctx, time.Second)
			_ = streams[st].c.RequestProgress(ctx)
			cancel()
		}
		time.Sleep(200 * time.Millisecond)
	}
	close(stop) // the records are final; the streams stay open until the checks are done
	for _, w := range watchers {
		<-w.done
	}
	t.Logf("watchers caught up (%v)", time.Since(begin))

	// The committed history, read back with a watch on everything from r0+1, then checked
	// against the writers' acknowledgements and against Get at past revisions.
	hist := readHistory(t, ctl, r0, final)
	checkHistory(t, ctl, hist, ops, r0)
	t.Logf("history: %d revisions checked (%v)", len(hist), time.Since(begin))

	// Every watcher against the history.
	var total int
	failures := 0
	report := func(format string, args ...any) {
		failures++
		if failures <= 40 {
			t.Errorf(format, args...)
		}
	}
	for _, w := range watchers {
		if w.createErr != nil {
			if cfg.faults == "" {
				report("watcher %d (%s): creation failed: %v", w.id, w.spec.String(), w.createErr)
			}
			continue
		}
		if w.err != nil {
			report("watcher %d (%s): error response %v", w.id, w.spec.String(), w.err)
		}
		if w.closed {
			report("watcher %d (%s): channel closed by the server", w.id, w.spec.String())
		}
		total += len(w.events)
		upTo := final
		if w.lastSeen < final {
			upTo = w.lastSeen // reported above as not caught up: check what it confirmed
		}
		checkWatcher(w, hist, upTo, report)
	}
	if failures > 40 {
		t.Errorf("... %d watcher failures in all", failures)
	}
	t.Logf("%d watchers, %d events delivered, checked (%v)", len(watchers), total, time.Since(begin))

	// Closing every watch stream at once (clientv3 cancels each watch as its context ends)
	// must leave the server serving.
	cancelAll()
	time.Sleep(500 * time.Millisecond)
	select {
	case <-s.exited:
		t.Fatalf("etcd-fdb died when the watch streams were closed: %v\n%s", s.waitErr, s.logTail())
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := ctl.Get(ctx, "s/000"); err != nil {
		t.Fatalf("etcd-fdb does not answer after the watch streams were closed: %v", err)
	}
}

func retryRev(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	var err error
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var r *clientv3.GetResponse
		r, err = c.Get(ctx, "\x00rev")
		cancel()
		if err == nil {
			return r.Header.Revision
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("Get: %v", err)
	return 0
}

func waitCreated(t *testing.T, ws []*watcherRec, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, w := range ws {
		for {
			w.mu.Lock()
			ok := w.created != 0 || w.createErr != nil || w.closed
			w.mu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("watcher %d (%s) not created within %v", w.id, w.spec.String(), limit)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func readHistory(t *testing.T, c *clientv3.Client, r0, final int64) []hrev {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wch := c.Watch(ctx, "s/", clientv3.WithPrefix(), clientv3.WithRev(r0+1), clientv3.WithPrevKV())
	var hist []hrev
	for len(hist) == 0 || hist[len(hist)-1].rev < final {
		r, ok := <-wch
		if !ok {
			t.Fatalf("history watch closed at %d of %d", len(hist), final)
		}
		if err := r.Err(); err != nil {
			t.Fatalf("history watch: %v", err)
		}
		for _, e := range r.Events {
			he := hevent{typ: e.Type, key: string(e.Kv.Key), val: string(e.Kv.Value), create: e.Kv.CreateRevision, version: e.Kv.Version}
			if e.PrevKv != nil {
				he.hasPrev, he.prevVal, he.prevMod = true, string(e.PrevKv.Value), e.PrevKv.ModRevision
			}
			rev := e.Kv.ModRevision
			if len(hist) > 0 && hist[len(hist)-1].rev == rev {
				hist[len(hist)-1].events = append(hist[len(hist)-1].events, he)
				continue
			}
			if len(hist) > 0 && rev < hist[len(hist)-1].rev {
				t.Fatalf("history watch: revision %d after %d", rev, hist[len(hist)-1].rev)
			}
			hist = append(hist, hrev{rev: rev, events: []hevent{he}})
		}
	}
	if hist[len(hist)-1].rev != final {
		t.Fatalf("history ends at %d, the store at %d", hist[len(hist)-1].rev, final)
	}
	return hist
}

type kvstate struct {
	val     string
	mod     int64
	create  int64
	version int64
}

// checkHistory verifies the history read through a watch independently: it is consistent
// with itself (prev_kv, versions, create revisions), with Get at past revisions and at the
// end, and with every acknowledged write (none lost, none applied twice, one revision each).
func checkHistory(t *testing.T, c *clientv3.Client, hist []hrev, ops [][]*writeOp, r0 int64) {
	t.Helper()
	state := map[string]kvstate{}
	// Past states at sampled revisions, checked with Get WithRev.
	samples := map[int64]map[string]kvstate{}
	rng := rand.New(rand.NewSource(5))
	for i := 0; i < 25 && len(hist) > 0; i++ {
		samples[hist[rng.Intn(len(hist))].rev] = nil
	}
	byOp := map[string]int64{} // op id -> revision its puts appeared at
	errs := 0
	fail := func(format string, args ...any) {
		errs++
		if errs <= 20 {
			t.Errorf("history: "+format, args...)
		}
	}
	for _, h := range hist {
		opAt := ""
		for _, e := range h.events {
			cur, exists := state[e.key]
			if e.hasPrev != exists || (exists && (e.prevVal != cur.val || e.prevMod != cur.mod)) {
				fail("rev %d %s: prev_kv (%v %q@%d), state (%v %q@%d)", h.rev, e.key, e.hasPrev, e.prevVal, e.prevMod, exists, cur.val, cur.mod)
			}
			if e.typ == mvccpb.PUT {
				want := kvstate{e.val, h.rev, h.rev, 1}
				if exists {
					want.create, want.version = cur.create, cur.version+1
				}
				if e.create != want.create || e.version != want.version {
					fail("rev %d %s: create %d version %d, want %d %d", h.rev, e.key, e.create, e.version, want.create, want.version)
				}
				state[e.key] = want
				parts := strings.Split(e.val, ".")
				if len(parts) != 3 {
					fail("rev %d %s: value %q written by no writer", h.rev, e.key, e.val)
					continue
				}
				id := parts[0] + "." + parts[1]
				if opAt != "" && opAt != id {
					fail("rev %d: events of two writes %s and %s in one revision", h.rev, opAt, id)
				}
				opAt = id
			} else {
				if !exists {
					fail("rev %d: delete of %s which does not exist", h.rev, e.key)
				}
				delete(state, e.key)
			}
		}
		if opAt != "" {
			if prev, ok := byOp[opAt]; ok && prev != h.rev {
				fail("write %s applied twice: at revisions %d and %d", opAt, prev, h.rev)
			}
			byOp[opAt] = h.rev
		}
		if _, ok := samples[h.rev]; ok {
			snap := map[string]kvstate{}
			for k, v := range state {
				snap[k] = v
			}
			samples[h.rev] = snap
		}
	}
	// Acknowledged writes.
	revOwner := map[int64]string{}
	histAt := map[int64]*hrev{}
	for i := range hist {
		histAt[hist[i].rev] = &hist[i]
	}
	for _, o := range ops {
		for _, op := range o {
			if !op.acked || !op.wrote {
				if op.acked && op.rev > 0 {
					if h := histAt[op.rev]; h == nil && op.rev > r0 {
						fail("%s %s wrote nothing but answered with revision %d, which is not a revision of the history", op.kind, op.id, op.rev)
					}
				}
				continue
			}
			rev := op.rev
			if rev == -1 { // a txn: find it by value
				r, ok := byOp[op.id]
				if !ok {
					fail("acknowledged %s %s is not in the history (lost)", op.kind, op.id)
					continue
				}
				rev = r
			}
			h := histAt[rev]
			if h == nil {
				fail("acknowledged %s %s at revision %d: no such revision in the history (lost)", op.kind, op.id, rev)
				continue
			}
			if other, ok := revOwner[rev]; ok {
				fail("acknowledged writes %s and %s share revision %d", other, op.id, rev)
			}
			revOwner[rev] = op.id
			if len(h.events) != op.nevents {
				fail("acknowledged %s %s: %d events at revision %d, want %d", op.kind, op.id, len(h.events), rev, op.nevents)
			}
			if r, ok := byOp[op.id]; (op.kind == "put" || op.kind == "txn") && (!ok || r != rev) {
				fail("acknowledged %s %s at %d: its value is at %d in the history (found %v)", op.kind, op.id, rev, r, ok)
			}
		}
	}
	// Revisions whose events carry no value (only deletes) must belong to some write.
	for _, h := range hist {
		if _, ok := revOwner[h.rev]; ok {
			continue
		}
		hasPut := false
		for _, e := range h.events {
			hasPut = hasPut || e.typ == mvccpb.PUT
		}
		if hasPut {
			id := ""
			for _, e := range h.events {
				if e.typ == mvccpb.PUT {
					p := strings.Split(e.val, ".")
					id = p[0] + "." + p[1]
					break
				}
			}
			if op := findOp(ops, id); op == nil || (!op.maybe && !op.acked) {
				fail("revision %d comes from unknown write %s", h.rev, id)
			} else if op.acked {
				fail("revision %d holds acknowledged write %s, acknowledged at another revision %d", h.rev, id, op.rev)
			}
		}
	}
	// Get at sampled past revisions and at the end.
	samples[hist[len(hist)-1].rev] = state
	revsSorted := make([]int64, 0, len(samples))
	for r := range samples {
		revsSorted = append(revsSorted, r)
	}
	sort.Slice(revsSorted, func(i, j int) bool { return revsSorted[i] < revsSorted[j] })
	for _, rev := range revsSorted {
		want := samples[rev]
		var g *clientv3.GetResponse
		var err error
		for try := 0; try < 20; try++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			g, err = c.Get(ctx, "s/", clientv3.WithPrefix(), clientv3.WithRev(rev))
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("Get WithRev(%d): %v", rev, err)
		}
		got := map[string]kvstate{}
		for _, kv := range g.Kvs {
			got[string(kv.Key)] = kvstate{string(kv.Value), kv.ModRevision, kv.CreateRevision, kv.Version}
		}
		if len(got) != len(want) {
			fail("Get WithRev(%d): %d keys, the history says %d", rev, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				fail("Get WithRev(%d) %s: %+v, the history says %+v", rev, k, got[k], v)
			}
		}
	}
	if errs > 20 {
		t.Errorf("history: %d problems in all", errs)
	}
}

func findOp(ops [][]*writeOp, id string) *writeOp {
	var w, s int
	if _, err := fmt.Sscanf(id, "%d.%d", &w, &s); err != nil || w < 0 || w >= len(ops) || s < 0 || s >= len(ops[w]) {
		return nil
	}
	return ops[w][s]
}

// checkWatcher compares one watcher's record with the history.
func checkWatcher(w *watcherRec, hist []hrev, upTo int64, report func(string, ...any)) {
	name := fmt.Sprintf("watcher %d (%s, created at %d, stream %d)", w.id, w.spec.String(), w.created, w.stream)
	// Expected: every matching event with revision in [from, final].
	var want []wevent
	for _, h := range hist {
		if h.rev < w.from {
			continue
		}
		if h.rev > upTo {
			break
		}
		for _, e := range h.events {
			if w.spec.wants(&e) {
				we := wevent{rev: h.rev, typ: e.typ, key: e.key, val: e.val, create: e.create, version: e.version}
				if w.spec.prevKV {
					we.hasPrev, we.prevVal, we.prevMod = e.hasPrev, e.prevVal, e.prevMod
				}
				want = append(want, we)
			}
		}
	}
	got := w.events
	// Ordered.
	for i := 1; i < len(got); i++ {
		if got[i].rev < got[i-1].rev {
			report("%s: not ordered: event %d at revision %d after revision %d", name, i, got[i].rev, got[i-1].rev)
			break
		}
	}
	// Unique.
	seen := map[string]int{}
	for i, e := range got {
		k := fmt.Sprintf("%d/%s/%d", e.rev, e.key, e.typ)
		if j, ok := seen[k]; ok {
			report("%s: duplicate event %s (events %d and %d)", name, fmtW(e), j, i)
			break
		}
		seen[k] = i
	}
	// Reliable and exact: the same sequence as the history.
	if len(got) > 0 && got[0].rev < w.from {
		report("%s: event at %d before its start revision %d", name, got[0].rev, w.from)
	}
	n := len(got)
	if len(want) < n {
		n = len(want)
	}
	for i := 0; i < n; i++ {
		g, x := got[i], want[i]
		g.resp = 0
		if g != x {
			report("%s: event %d is %s, the history has %s (%d events delivered, %d expected)", name, i, fmtW(got[i]), fmtW(x), len(got), len(want))
			return
		}
	}
	if len(got) < len(want) {
		report("%s: missed %d events, the first %s (%d delivered, %d expected)", name, len(want)-len(got), fmtW(want[len(got)]), len(got), len(want))
		return
	}
	if len(got) > len(want) {
		report("%s: %d events more than the history has, the first %s", name, len(got)-len(want), fmtW(got[len(want)]))
		return
	}
	// Atomic: the events of one revision in one response.
	for i := 1; i < len(got); i++ {
		if got[i].rev == got[i-1].rev && got[i].resp != got[i-1].resp {
			report("%s: the events of revision %d were split across responses %d and %d", name, got[i].rev, got[i-1].resp, got[i].resp)
			break
		}
	}
	// Bookmarkable: after a progress notification at R, no event at or below R.
	for _, m := range w.marks {
		if m.after < len(got) && got[m.after].rev <= m.rev {
			report("%s: progress notification at %d, then event %s", name, m.rev, fmtW(got[m.after]))
			break
		}
	}
}

func fmtW(e wevent) string {
	t := "PUT"
	if e.typ == mvccpb.DELETE {
		t = "DELETE"
	}
	s := fmt.Sprintf("%s %s=%q@%d(create %d, version %d)", t, e.key, e.val, e.rev, e.create, e.version)
	if e.hasPrev {
		s += fmt.Sprintf(" prev %q@%d", e.prevVal, e.prevMod)
	}
	return s
}
