package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watch-latency: W watchers over S watch streams (spread over C connections). Mode "distinct":
// watcher i watches key watch/i and each put goes to one random watched key (one event per put);
// mode "same": every watcher watches one key and each put fans out to all W watchers. Puts carry
// their send time; the latency of an event is its arrival time minus that (as etcd's
// tools/benchmark watch-latency measures it). Reports the watch creation rate, event latency
// percentiles, and the server's VmRSS before and after creating the watchers.
func cmdWatch(args []string) {
	fs := flag.NewFlagSet("watch-latency", flag.ExitOnError)
	var c common
	c.register(fs, 0, 10)
	watchers := fs.Int("watchers", 1000, "number of watchers")
	streams := fs.Int("streams", 100, "number of gRPC watch streams")
	mode := fs.String("mode", "distinct", "distinct (one key per watcher) or same (all watchers on one key)")
	rate := fs.Float64("put-rate", 500, "puts per second during the measured duration")
	valSize := fs.Int("val-size", 64, "value size (at least 20)")
	settle := fs.Duration("settle", 2*time.Second, "pause after creating watchers, before reading RSS")
	fs.Parse(args)
	if *streams > *watchers {
		*streams = *watchers
	}
	if *valSize < 20 {
		*valSize = 20
	}
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	c.clients = *streams
	rssBase := rssKB(c.serverPID)

	keyOf := func(i int) string {
		if *mode == "same" {
			return "watch/same"
		}
		return fixedKey("watch/", i, 8)
	}

	type stream struct {
		ws      pb.Watch_WatchClient
		want    int
		created int64
		lat     []time.Duration
		events  int64
		errs    int64
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ss := make([]*stream, *streams)
	var createdAll, recvDone sync.WaitGroup
	var measuring int32
	t0 := time.Now()
	for si := range ss {
		conn := cs[si%len(cs)].ActiveConnection()
		ws, err := pb.NewWatchClient(conn).Watch(ctx)
		if err != nil {
			die("watch stream: %v", err)
		}
		st := &stream{ws: ws}
		ss[si] = st
		for i := si; i < *watchers; i += *streams {
			st.want++
		}
		createdAll.Add(1)
		recvDone.Add(1)
		go func(st *stream) { // receiver
			defer recvDone.Done()
			done := false
			for {
				resp, err := st.ws.Recv()
				if err != nil {
					if ctx.Err() == nil {
						fmt.Fprintf(os.Stderr, "loadgen: watch recv: %v\n", err)
					}
					if !done {
						createdAll.Done()
					}
					return
				}
				now := time.Now()
				if resp.Created {
					if atomic.AddInt64(&st.created, 1) == int64(st.want) && !done {
						done = true
						createdAll.Done()
					}
				}
				if resp.Canceled {
					atomic.AddInt64(&st.errs, 1)
					fmt.Fprintf(os.Stderr, "loadgen: watch canceled: %s\n", resp.CancelReason)
				}
				for _, ev := range resp.Events {
					if ev.Kv == nil || len(ev.Kv.Value) < 19 {
						continue
					}
					ns, err := strconv.ParseInt(string(ev.Kv.Value[:19]), 10, 64)
					if err != nil {
						continue
					}
					if atomic.LoadInt32(&measuring) == 1 {
						st.lat = append(st.lat, now.Sub(time.Unix(0, ns)))
					}
					atomic.AddInt64(&st.events, 1)
				}
			}
		}(st)
		go func(si int, st *stream) { // sender of create requests, pipelined
			for i := si; i < *watchers; i += *streams {
				req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
					CreateRequest: &pb.WatchCreateRequest{Key: []byte(keyOf(i))}}}
				if err := st.ws.Send(req); err != nil {
					die("watch create: %v", err)
				}
			}
		}(si, st)
	}
	createdAll.Wait()
	setup := time.Since(t0)
	var created int64
	for _, st := range ss {
		created += atomic.LoadInt64(&st.created)
	}
	if created != int64(*watchers) {
		die("created %d of %d watchers", created, *watchers)
	}
	time.Sleep(*settle)
	rssWatchers := rssKB(c.serverPID)

	// Puts at a fixed rate from a few putters.
	cpu0 := snapCPU(c.serverPID)
	atomic.StoreInt32(&measuring, 1)
	var puts, putErrs int64
	var putLat []time.Duration
	var mu sync.Mutex
	putters := 4
	if *rate < 40 {
		putters = 1
	}
	interval := time.Duration(float64(time.Second) * float64(putters) / *rate)
	end := time.Now().Add(c.duration)
	var wg sync.WaitGroup
	for p := 0; p < putters; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(p) + 101))
			pad := value(*valSize-19, rng)
			next := time.Now().Add(time.Duration(p) * interval / time.Duration(putters))
			var mine []time.Duration
			for {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				if !time.Now().Before(end) {
					break
				}
				key := keyOf(rng.Intn(*watchers))
				s := time.Now()
				v := fmt.Sprintf("%019d", s.UnixNano()) + pad
				pctx, pcancel := ctxTimeout(opTimeout)
				_, err := cs[p%len(cs)].Put(pctx, key, v)
				pcancel()
				if err != nil {
					atomic.AddInt64(&putErrs, 1)
					continue
				}
				mine = append(mine, time.Since(s))
				atomic.AddInt64(&puts, 1)
			}
			mu.Lock()
			putLat = append(putLat, mine...)
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	expected := puts
	if *mode == "same" {
		expected = puts * int64(*watchers)
	}
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
	rssEnd := rssKB(c.serverPID)
	cpu1 := snapCPU(c.serverPID)
	atomic.StoreInt32(&measuring, 0)
	cancel()
	recvDone.Wait()
	var all []time.Duration
	var errs int64
	for _, st := range ss {
		all = append(all, st.lat...)
		errs += atomic.LoadInt64(&st.errs)
	}
	s := summarizeLat(all, errs, c.duration.Seconds())
	s.cpu = cpuFields(cpu0, cpu1)
	ps := summarizeLat(putLat, putErrs, c.duration.Seconds())
	extra := fmt.Sprintf("mode=%s watchers=%d streams=%d setup_s=%.2f creates_per_s=%.1f puts=%d put_p99_ms=%s events_expected=%d events_received=%d rss_base_kb=%d rss_watchers_kb=%d rss_end_kb=%d",
		*mode, *watchers, *streams, setup.Seconds(), float64(*watchers)/setup.Seconds(), puts, ms(ps.p99),
		expected, got, rssBase, rssWatchers, rssEnd)
	c.serverPID = 0
	result("watch-latency", &c, extra, s)
}

// keepalive: each client holds one lease and renews it over its own LeaseKeepAlive stream,
// one request in flight (as clientv3's lessor does, but back to back).
func cmdKeepalive(args []string) {
	fs := flag.NewFlagSet("keepalive", flag.ExitOnError)
	var c common
	c.register(fs, 100, 10)
	ttl := fs.Int64("ttl", 60, "lease TTL in seconds")
	fs.Parse(args)
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	type ka struct {
		stream pb.Lease_LeaseKeepAliveClient
		id     clientv3.LeaseID
	}
	kas := make([]ka, c.clients)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range kas {
		cl := cs[i%len(cs)]
		gctx, gcancel := ctxTimeout(opTimeout)
		g, err := cl.Grant(gctx, *ttl)
		gcancel()
		if err != nil {
			die("grant: %v", err)
		}
		st, err := pb.NewLeaseClient(cl.ActiveConnection()).LeaseKeepAlive(ctx)
		if err != nil {
			die("keepalive stream: %v", err)
		}
		kas[i] = ka{st, g.ID}
	}
	s := runClosedLoop(&c, func(w int, rng *rand.Rand) error {
		k := kas[w]
		if err := k.stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(k.id)}); err != nil {
			return err
		}
		resp, err := k.stream.Recv()
		if err != nil {
			return err
		}
		if resp.TTL <= 0 {
			return fmt.Errorf("lease %x: TTL %d", k.id, resp.TTL)
		}
		return nil
	})
	result("keepalive", &c, fmt.Sprintf("ttl=%d", *ttl), s)
}
