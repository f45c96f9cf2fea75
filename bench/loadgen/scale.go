package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watch-scale: the memory of idle watchers and streams, then event delivery latency measured
// from the put's acknowledgement.
//
//  1. Opens S watch streams over C connections, each with one watcher: server VmRSS
//     before (rss_base_kb) and after (rss_streams_kb) -> bytes per stream.
//  2. Creates the other W-S watchers, round robin over the streams: VmRSS after
//     (rss_watchers_kb), after -settle -> bytes per idle watcher.
//     Watcher i watches the key scale/<i> (8 digits); every -range-every'th one watches the
//     range [scale/<i>, scale/<i>\xff) instead (a prefix of one key, as fixed-width keys
//     make it). Distinct keys: each put is one event for exactly one watcher.
//  3. Puts at a steady -put-rate to random watched keys for -duration. Each put's revision,
//     send and acknowledgement times are kept; each event's arrival time by revision. The
//     latency of an event is arrival - acknowledgement (p50/p99/p99.9; an event that arrives
//     before its put's acknowledgement counts as 0, and is counted in before_ack); send_p*
//     are arrival - send, as etcd's benchmark watch-latency measures it.
func cmdWatchScale(args []string) {
	fs := flag.NewFlagSet("watch-scale", flag.ExitOnError)
	var c common
	c.register(fs, 0, 10)
	watchers := fs.Int("watchers", 100000, "number of watchers")
	streams := fs.Int("streams", 1000, "number of gRPC watch streams (at most -watchers)")
	rangeEvery := fs.Int("range-every", 10, "every n-th watcher watches a range instead of a key (0: none)")
	rate := fs.Float64("put-rate", 1000, "puts per second during the measured duration (0: no puts)")
	putters := fs.Int("putters", 16, "goroutines issuing the puts (each on a schedule)")
	settle := fs.Duration("settle", 3*time.Second, "pause before each RSS reading")
	fs.Parse(args)
	if *streams > *watchers {
		*streams = *watchers
	}
	c.clients = *streams
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	key := func(i int) string { return fixedKey("scale/", i, 8) }

	type stream struct {
		ws      pb.Watch_WatchClient
		created int64
		revs    []int64 // event revisions and arrival times, while measuring
		at      []time.Time
		events  int64
		errs    int64
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ss := make([]*stream, *streams)
	var measuring int32
	var recvDone sync.WaitGroup
	waitCreated := func(want func(si int) int64, limit time.Duration) {
		deadline := time.Now().Add(limit)
		for {
			done := true
			for si, st := range ss {
				if atomic.LoadInt64(&st.created) < want(si) {
					done = false
					break
				}
			}
			if done {
				return
			}
			if time.Now().After(deadline) {
				die("watchers not all created within %v", limit)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	create := func(st *stream, i int) {
		cr := &pb.WatchCreateRequest{Key: []byte(key(i))}
		if *rangeEvery > 0 && i%*rangeEvery == *rangeEvery-1 {
			cr.RangeEnd = append([]byte(key(i)), 0xff)
		}
		if err := st.ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}); err != nil {
			die("watch create: %v", err)
		}
	}

	time.Sleep(*settle)
	rssBase := rssKB(c.serverPID)
	t0 := time.Now()
	for si := range ss {
		ws, err := pb.NewWatchClient(cs[si%len(cs)].ActiveConnection()).Watch(ctx)
		if err != nil {
			die("watch stream: %v", err)
		}
		st := &stream{ws: ws}
		ss[si] = st
		recvDone.Add(1)
		go func() {
			defer recvDone.Done()
			for {
				resp, err := st.ws.Recv()
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintf(os.Stderr, "loadgen: watch recv: %v\n", err)
						atomic.AddInt64(&st.errs, 1)
					}
					return
				}
				now := time.Now()
				if resp.Created {
					atomic.AddInt64(&st.created, 1)
				}
				if resp.Canceled {
					atomic.AddInt64(&st.errs, 1)
					fmt.Fprintf(os.Stderr, "loadgen: watch canceled: %s\n", resp.CancelReason)
				}
				for _, ev := range resp.Events {
					if atomic.LoadInt32(&measuring) == 1 {
						st.revs = append(st.revs, ev.Kv.ModRevision)
						st.at = append(st.at, now)
					}
					atomic.AddInt64(&st.events, 1)
				}
			}
		}()
		create(st, si)
	}
	waitCreated(func(int) int64 { return 1 }, 120*time.Second)
	streamSetup := time.Since(t0)
	time.Sleep(*settle)
	rssStreams := rssKB(c.serverPID)

	t1 := time.Now()
	var wg sync.WaitGroup
	for si, st := range ss {
		wg.Add(1)
		go func(si int, st *stream) {
			defer wg.Done()
			for i := si + *streams; i < *watchers; i += *streams {
				create(st, i)
			}
		}(si, st)
	}
	wg.Wait()
	waitCreated(func(si int) int64 { return int64((*watchers - si + *streams - 1) / *streams) }, 600*time.Second)
	watcherSetup := time.Since(t1)
	time.Sleep(*settle)
	rssWatchers := rssKB(c.serverPID)
	perStream, perWatcher := 0.0, 0.0
	if *streams > 0 {
		perStream = float64(rssStreams-rssBase) * 1024 / float64(*streams)
	}
	if *watchers > *streams {
		perWatcher = float64(rssWatchers-rssStreams) * 1024 / float64(*watchers-*streams)
	}

	// Steady puts, each to a random watched key.
	type putRec struct {
		rev       int64
		sent, ack time.Time
	}
	var putRecs []putRec
	var putErrs int64
	var mu sync.Mutex
	cpu0 := snapCPU(c.serverPID)
	atomic.StoreInt32(&measuring, 1)
	if *rate > 0 {
		interval := time.Duration(float64(time.Second) * float64(*putters) / *rate)
		start := time.Now()
		end := start.Add(c.duration)
		for p := 0; p < *putters; p++ {
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				rng := rand.New(rand.NewSource(int64(p) + 7))
				next := start.Add(time.Duration(p) * interval / time.Duration(*putters))
				var mine []putRec
				for {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
					if !time.Now().Before(end) {
						break
					}
					sent := time.Now()
					pctx, pcancel := ctxTimeout(opTimeout)
					r, err := cs[p%len(cs)].Put(pctx, key(rng.Intn(*watchers)), "value-of-64-bytes-0123456789012345678901234567890123456789012345")
					pcancel()
					if err != nil {
						atomic.AddInt64(&putErrs, 1)
						continue
					}
					mine = append(mine, putRec{r.Header.Revision, sent, time.Now()})
				}
				mu.Lock()
				putRecs = append(putRecs, mine...)
				mu.Unlock()
			}(p)
		}
		wg.Wait()
	}
	expected := int64(len(putRecs))
	var got int64
	waitUntil := time.Now().Add(60 * time.Second)
	for {
		got = 0
		for _, st := range ss {
			got += atomic.LoadInt64(&st.events)
		}
		if got >= expected || time.Now().After(waitUntil) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cpu1 := snapCPU(c.serverPID)
	rssEnd := rssKB(c.serverPID)
	atomic.StoreInt32(&measuring, 0)
	cancel()
	recvDone.Wait()

	byRev := make(map[int64]putRec, len(putRecs))
	for _, p := range putRecs {
		byRev[p.rev] = p
	}
	var ackLat, sendLat []time.Duration
	var beforeAck, errs int64
	for _, st := range ss {
		errs += atomic.LoadInt64(&st.errs)
		for i, rev := range st.revs {
			p, ok := byRev[rev]
			if !ok {
				continue
			}
			d := st.at[i].Sub(p.ack)
			if d < 0 {
				beforeAck++
				d = 0
			}
			ackLat = append(ackLat, d)
			sendLat = append(sendLat, st.at[i].Sub(p.sent))
		}
	}
	s := summarizeLat(ackLat, errs, c.duration.Seconds())
	s.cpu = cpuFields(cpu0, cpu1)
	ss2 := summarizeLat(sendLat, 0, c.duration.Seconds())
	var putLat []time.Duration
	for _, p := range putRecs {
		putLat = append(putLat, p.ack.Sub(p.sent))
	}
	ps := summarizeLat(putLat, putErrs, c.duration.Seconds())
	extra := fmt.Sprintf("watchers=%d streams=%d range_every=%d stream_setup_s=%.2f watcher_setup_s=%.2f creates_per_s=%.1f "+
		"rss_base_kb=%d rss_streams_kb=%d rss_watchers_kb=%d rss_end_kb=%d bytes_per_stream=%.0f bytes_per_watcher=%.0f "+
		"put_rate=%g puts=%d put_errors=%d put_p50_ms=%s put_p99_ms=%s events_expected=%d events_received=%d before_ack=%d "+
		"send_p50_ms=%s send_p99_ms=%s send_p999_ms=%s",
		*watchers, *streams, *rangeEvery, streamSetup.Seconds(), watcherSetup.Seconds(),
		float64(*watchers-*streams)/watcherSetup.Seconds(),
		rssBase, rssStreams, rssWatchers, rssEnd, perStream, perWatcher,
		*rate, len(putRecs), putErrs, ms(ps.p50), ms(ps.p99), expected, got, beforeAck,
		ms(ss2.p50), ms(ss2.p99), ms(ss2.p999))
	c.serverPID = 0
	result("watch-scale", &c, extra, s)
}

// keepalive-pipe: LeaseKeepAlive throughput with several requests in flight per stream.
// S streams over C connections; each stream has L leases of its own and keeps one
// keepalive per lease in flight (so L requests in flight per stream): a lease is sent
// again as soon as its answer arrives. Latency = answer - send of the same lease.
func cmdKeepalivePipe(args []string) {
	fs := flag.NewFlagSet("keepalive-pipe", flag.ExitOnError)
	var c common
	c.register(fs, 0, 10)
	streams := fs.Int("streams", 1, "LeaseKeepAlive streams")
	perStream := fs.Int("leases-per-stream", 100, "leases per stream = requests in flight per stream")
	ttl := fs.Int64("ttl", 60, "lease TTL in seconds")
	fs.Parse(args)
	c.clients = *streams
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Grants, 64 at a time.
	n := *streams * *perStream
	ids := make([]int64, n)
	var wg sync.WaitGroup
	next := int64(-1)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				gctx, gcancel := ctxTimeout(opTimeout)
				g, err := cs[w%len(cs)].Grant(gctx, *ttl)
				gcancel()
				if err != nil {
					die("grant: %v", err)
				}
				ids[i] = int64(g.ID)
			}
		}(w)
	}
	wg.Wait()

	type lstream struct {
		st   pb.Lease_LeaseKeepAliveClient
		free chan int64
		sent map[int64]time.Time
		mu   sync.Mutex
		lat  []time.Duration
		errs int64
	}
	ls := make([]*lstream, *streams)
	for si := range ls {
		st, err := pb.NewLeaseClient(cs[si%len(cs)].ActiveConnection()).LeaseKeepAlive(ctx)
		if err != nil {
			die("keepalive stream: %v", err)
		}
		l := &lstream{st: st, free: make(chan int64, *perStream), sent: make(map[int64]time.Time, *perStream)}
		for j := 0; j < *perStream; j++ {
			l.free <- ids[si**perStream+j]
		}
		ls[si] = l
	}
	start := time.Now()
	measureFrom := start.Add(c.warmup)
	end := measureFrom.Add(c.duration)
	var cpu0 cpuSnap
	cpuTaken := make(chan struct{})
	go func() {
		time.Sleep(time.Until(measureFrom))
		cpu0 = snapCPU(c.serverPID)
		close(cpuTaken)
	}()
	done := make(chan struct{})
	var senders, receivers sync.WaitGroup
	for _, l := range ls {
		senders.Add(1)
		receivers.Add(1)
		go func(l *lstream) { // sender: a lease goes out again as soon as its answer is in
			defer senders.Done()
			for {
				select {
				case <-done:
					return
				case id := <-l.free:
					l.mu.Lock()
					l.sent[id] = time.Now()
					l.mu.Unlock()
					if err := l.st.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
						die("keepalive send: %v", err)
					}
				}
			}
		}(l)
		go func(l *lstream) { // receiver
			defer receivers.Done()
			for {
				resp, err := l.st.Recv()
				if err != nil {
					if ctx.Err() == nil {
						die("keepalive recv: %v", err)
					}
					return
				}
				now := time.Now()
				l.mu.Lock()
				t0, ok := l.sent[resp.ID]
				delete(l.sent, resp.ID)
				l.mu.Unlock()
				if !ok || resp.TTL <= 0 {
					l.errs++
					continue
				}
				if !t0.Before(measureFrom) && !now.After(end) {
					l.lat = append(l.lat, now.Sub(t0))
				}
				l.free <- resp.ID // never blocks: a lease is in free at most once
			}
		}(l)
	}
	// Answers that arrive after the end are not counted; the streams are then cancelled.
	time.Sleep(time.Until(end))
	close(done)
	senders.Wait()
	cpu1 := snapCPU(c.serverPID)
	cancel()
	receivers.Wait()
	<-cpuTaken
	var all []time.Duration
	var errs int64
	for _, l := range ls {
		all = append(all, l.lat...)
		errs += l.errs
	}
	s := summarizeLat(all, errs, c.duration.Seconds())
	s.cpu = cpuFields(cpu0, cpu1)
	result("keepalive-pipe", &c, fmt.Sprintf("streams=%d leases_per_stream=%d ttl=%d", *streams, *perStream, *ttl), s)
}

// lease-expiry: N leases with K keys each expire together; how late do their keys go?
//
// Grants N leases of TTL T (64 at a time), each followed at once by a Txn attaching its K
// keys, with one watch on the key prefix from before the first write (its own connection).
// With -refresh (the default), once a third of the TTL has passed since the last grant,
// every lease gets one keepalive (pipelined over 10 streams), so their expiries line up
// and each keepalive really renews (etcd-fdb stores a renewal only when less than 2/3 of
// the TTL is left). No keepalive after that. The expected expiry of a lease is its last
// acknowledgement (the keepalive's, or the grant's without -refresh) + the TTL it reported;
// its lag = the arrival of its keys' DELETE events - that. Reports lag p50/p99/max and min
// (negative: deleted before the expected expiry; the server renews somewhere between the
// keepalive's send and its acknowledgement, so a small negative lag is the acknowledgement's
// own delay), how many were early, how many were deleted before even send + TTL (a real
// violation: early_vs_send), the revocation rate
// (leases per second between the first and the last DELETE), and checks that each lease's
// keys came in one revision and one response and that each key was deleted once.
func cmdLeaseExpiry(args []string) {
	fs := flag.NewFlagSet("lease-expiry", flag.ExitOnError)
	var c common
	c.register(fs, 64, 10)
	nLeases := fs.Int("leases", 10000, "leases")
	perLease := fs.Int("keys-per-lease", 10, "keys attached to each lease")
	ttl := fs.Int64("ttl", 20, "lease TTL in seconds")
	refresh := fs.Bool("refresh", true, "one keepalive of every lease after TTL/3, so expiries line up")
	limit := fs.Duration("timeout", 300*time.Second, "give up waiting for the DELETEs after the last expected expiry + this")
	fs.Parse(args)
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	wcs := newClients(c.endpoints, 1)
	defer closeClients(wcs)
	N, K := *nLeases, *perLease
	key := func(l, k int) string { return fmt.Sprintf("exp/%06d/%03d", l, k) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	gctx, gcancel := ctxTimeout(opTimeout)
	r0, err := cs[0].Get(gctx, "exp/")
	gcancel()
	if err != nil {
		die("get: %v", err)
	}
	wch := wcs[0].Watch(ctx, "exp/", clientv3.WithPrefix(), clientv3.WithRev(r0.Header.Revision+1))
	type delRec struct {
		at   time.Time
		rev  int64
		resp int
		n    int
	}
	var mu sync.Mutex
	dels := make([]delRec, N)
	var nDel, dup, split, badKey int64
	var first, last time.Time
	allDone := make(chan struct{})
	go func() {
		respN := 0
		for r := range wch {
			if err := r.Err(); err != nil {
				die("watch: %v", err)
			}
			now := time.Now()
			respN++
			mu.Lock()
			for _, e := range r.Events {
				if e.Type != mvccpb.DELETE {
					continue
				}
				var l, k int
				if _, err := fmt.Sscanf(string(e.Kv.Key), "exp/%06d/%03d", &l, &k); err != nil || l < 0 || l >= N {
					badKey++
					continue
				}
				d := &dels[l]
				if d.n == 0 {
					d.at, d.rev, d.resp = now, e.Kv.ModRevision, respN
				} else if d.rev != e.Kv.ModRevision || d.resp != respN {
					split++
				}
				d.n++
				if d.n > K {
					dup++
				}
				if first.IsZero() {
					first = now
				}
				last = now
				nDel++
				if nDel == int64(N*K) {
					close(allDone)
				}
			}
			mu.Unlock()
		}
	}()

	acked := make([]time.Time, N)
	sentAt := make([]time.Time, N) // when the request that set the expiry was sent
	ttlOf := make([]int64, N)
	ids := make([]int64, N)
	var wg sync.WaitGroup
	next := int64(-1)
	t0 := time.Now()
	for w := 0; w < c.clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cl := cs[w%len(cs)]
			for {
				l := int(atomic.AddInt64(&next, 1))
				if l >= N {
					return
				}
				octx, ocancel := ctxTimeout(opTimeout)
				sentAt[l] = time.Now()
				g, err := cl.Grant(octx, *ttl)
				if err != nil {
					die("grant: %v", err)
				}
				acked[l], ttlOf[l], ids[l] = time.Now(), g.TTL, int64(g.ID)
				ops := make([]clientv3.Op, K)
				for k := range ops {
					ops[k] = clientv3.OpPut(key(l, k), "v", clientv3.WithLease(g.ID))
				}
				if _, err := cl.Txn(octx).Then(ops...).Commit(); err != nil {
					die("txn of lease %d: %v", l, err)
				}
				ocancel()
			}
		}(w)
	}
	wg.Wait()
	setup := time.Since(t0)
	lastGrant := t0
	for _, a := range acked {
		if a.After(lastGrant) {
			lastGrant = a
		}
	}
	var refreshTook time.Duration
	if *refresh {
		time.Sleep(time.Until(lastGrant.Add(time.Duration(*ttl) * time.Second / 3).Add(500 * time.Millisecond)))
		r0 := time.Now()
		index := make(map[int64]int, N)
		for l, id := range ids {
			index[id] = l
		}
		const kaStreams = 10
		for s := 0; s < kaStreams; s++ {
			st, err := pb.NewLeaseClient(cs[s%len(cs)].ActiveConnection()).LeaseKeepAlive(ctx)
			if err != nil {
				die("keepalive stream: %v", err)
			}
			wg.Add(2)
			go func(s int) {
				defer wg.Done()
				for l := s; l < N; l += kaStreams {
					mu.Lock()
					sentAt[l] = time.Now()
					mu.Unlock()
					if err := st.Send(&pb.LeaseKeepAliveRequest{ID: ids[l]}); err != nil {
						die("keepalive send: %v", err)
					}
				}
			}(s)
			go func(s int) {
				defer wg.Done()
				for got := 0; got < (N-s+kaStreams-1)/kaStreams; got++ {
					resp, err := st.Recv()
					if err != nil {
						die("keepalive recv: %v", err)
					}
					l, ok := index[resp.ID]
					if !ok || resp.TTL <= 0 {
						die("keepalive of lease %x: TTL %d (expired before the refresh?)", resp.ID, resp.TTL)
					}
					now := time.Now()
					mu.Lock()
					acked[l], ttlOf[l] = now, resp.TTL
					mu.Unlock()
				}
			}(s)
		}
		wg.Wait()
		refreshTook = time.Since(r0)
	}
	var lastExpected time.Time
	for l := range acked {
		if e := acked[l].Add(time.Duration(ttlOf[l]) * time.Second); e.After(lastExpected) {
			lastExpected = e
		}
	}
	select {
	case <-allDone:
	case <-time.After(time.Until(lastExpected.Add(*limit))):
	}
	mu.Lock()
	defer mu.Unlock()
	var lags []time.Duration
	minLag := time.Duration(1<<63 - 1)
	early, earlySend, missing := 0, 0, 0
	for l := range dels {
		if dels[l].n == 0 {
			missing++
			continue
		}
		lag := dels[l].at.Sub(acked[l].Add(time.Duration(ttlOf[l]) * time.Second))
		if lag < minLag {
			minLag = lag
		}
		if dels[l].at.Before(sentAt[l].Add(time.Duration(ttlOf[l]) * time.Second)) {
			earlySend++ // deleted before the TTL had passed since the request was even sent
		}
		if lag < 0 {
			early++
			lag = 0
		}
		lags = append(lags, lag)
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	s := summarizeLat(lags, int64(missing), 0)
	span := last.Sub(first).Seconds()
	rate := 0.0
	if span > 0 {
		rate = float64(N-missing) / span
	}
	extra := fmt.Sprintf("leases=%d keys_per_lease=%d ttl=%d refresh=%v setup_s=%.2f refresh_s=%.2f keys_deleted=%d keys_expected=%d "+
		"leases_missing=%d dup_deletes=%d split_leases=%d bad_keys=%d early=%d early_vs_send=%d min_lag_ms=%s delete_span_s=%.2f revokes_per_s=%.1f",
		N, K, *ttl, *refresh, setup.Seconds(), refreshTook.Seconds(), nDel, N*K, missing, dup, split, badKey, early, earlySend, ms(minLag), span, rate)
	result("lease-expiry", &c, extra, s)
}
