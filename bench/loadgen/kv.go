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
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

const opTimeout = 30 * time.Second

// put: like etcd's tools/benchmark put: random keys in a key space, fixed-size values.
func cmdPut(args []string) {
	fs := flag.NewFlagSet("put", flag.ExitOnError)
	var c common
	c.register(fs, 1, 0)
	keySize := fs.Int("key-size", 8, "key size in bytes (decimal, zero-padded)")
	valSize := fs.Int("val-size", 256, "value size in bytes")
	keySpace := fs.Int("key-space", 100000, "keys are drawn at random from this many")
	fs.Parse(args)
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	val := value(*valSize, rand.New(rand.NewSource(1)))
	s := runClosedLoop(&c, func(w int, rng *rand.Rand) error {
		ctx, cancel := ctxTimeout(opTimeout)
		defer cancel()
		_, err := cs[w%len(cs)].Put(ctx, fixedKey("", rng.Intn(*keySpace), *keySize), val)
		return err
	})
	result("put", &c, fmt.Sprintf("key_size=%d val_size=%d", *keySize, *valSize), s)
}

// range: one key (linearizable or serializable), or pages of -page-size keys from random
// start keys over a prefix holding -keys keys (as kube-apiserver lists with limit and continue).
func cmdRange(args []string) {
	fs := flag.NewFlagSet("range", flag.ExitOnError)
	var c common
	c.register(fs, 100, 10)
	key := fs.String("key", "bench-range-key", "the key read in single-key mode")
	consistency := fs.String("consistency", "l", "l (linearizable) or s (serializable)")
	pages := fs.Bool("pages", false, "read pages over a prefix instead of one key")
	prefix := fs.String("prefix", "page/", "prefix of the paged keys")
	nkeys := fs.Int("keys", 100000, "keys under the prefix (loaded first if missing)")
	pageSize := fs.Int("page-size", 500, "keys per page")
	valSize := fs.Int("val-size", 256, "value size of the keys written")
	pastRev := fs.Bool("past-revision", false, "pages: read every page at the revision before one more write, as kube-apiserver reads the pages after the first (continue)")
	fs.Parse(args)
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	var opts []clientv3.OpOption
	if *consistency == "s" {
		opts = append(opts, clientv3.WithSerializable())
	}
	var s summary
	extra := ""
	if !*pages {
		ctx, cancel := ctxTimeout(opTimeout)
		if _, err := cs[0].Put(ctx, *key, value(*valSize, rand.New(rand.NewSource(2)))); err != nil {
			die("put %s: %v", *key, err)
		}
		cancel()
		s = runClosedLoop(&c, func(w int, rng *rand.Rand) error {
			ctx, cancel := ctxTimeout(opTimeout)
			defer cancel()
			resp, err := cs[w%len(cs)].Get(ctx, *key, opts...)
			if err == nil && len(resp.Kvs) != 1 {
				return fmt.Errorf("got %d kvs", len(resp.Kvs))
			}
			return err
		})
		extra = fmt.Sprintf("mode=key consistency=%s", *consistency)
	} else {
		end := clientv3.GetPrefixRangeEnd(*prefix)
		ctx, cancel := ctxTimeout(opTimeout)
		resp, err := cs[0].Get(ctx, *prefix, clientv3.WithRange(end), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			die("count: %v", err)
		}
		if resp.Count < int64(*nkeys) {
			t0 := time.Now()
			loadKeys(cs, 16, *prefix, *nkeys, *valSize, 100)
			fmt.Fprintf(os.Stderr, "loadgen: loaded %d keys in %.1fs\n", *nkeys, time.Since(t0).Seconds())
		}
		if *pastRev {
			ctx, cancel := ctxTimeout(opTimeout)
			resp, err := cs[0].Put(ctx, "bench-range-past-marker", "x")
			cancel()
			if err != nil {
				die("put: %v", err)
			}
			opts = append(opts, clientv3.WithRev(resp.Header.Revision-1))
			ctx, cancel = ctxTimeout(opTimeout)
			_, err = cs[0].Put(ctx, "bench-range-past-marker", "y") // the pages' revision is now past
			cancel()
			if err != nil {
				die("put: %v", err)
			}
		}
		width := len(strconv.Itoa(*nkeys - 1))
		if width < 8 {
			width = 8
		}
		s = runClosedLoop(&c, func(w int, rng *rand.Rand) error {
			ctx, cancel := ctxTimeout(opTimeout)
			defer cancel()
			start := fixedKey(*prefix, rng.Intn(*nkeys-*pageSize+1), width)
			o := append([]clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(*pageSize))}, opts...)
			resp, err := cs[w%len(cs)].Get(ctx, start, o...)
			if err == nil && len(resp.Kvs) != *pageSize {
				return fmt.Errorf("page of %d keys, want %d", len(resp.Kvs), *pageSize)
			}
			return err
		})
		extra = fmt.Sprintf("mode=pages past_revision=%v consistency=%s page_size=%d keys=%d keys_read_per_s=%.1f", *pastRev, *consistency, *pageSize, *nkeys,
			float64(s.ops)*float64(*pageSize)/c.duration.Seconds())
	}
	result("range", &c, extra, s)
}

// txn: kube-apiserver's GuaranteedUpdate: Txn(If(mod_revision(key) == rev), Then(put), Else(get)).
// Each client updates objects of its own partition and remembers their revisions (a create is the
// same txn with rev 0), as the apiserver's watch cache does; a failed compare refreshes from the get.
func cmdTxn(args []string) {
	fs := flag.NewFlagSet("txn", flag.ExitOnError)
	var c common
	c.register(fs, 100, 10)
	objects := fs.Int("objects", 10000, "number of objects (keys)")
	valSize := fs.Int("val-size", 1024, "object size in bytes")
	prefix := fs.String("prefix", "/registry/pods/default/", "key prefix")
	fs.Parse(args)
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	revs := make([]map[int]int64, c.clients)
	for i := range revs {
		revs[i] = map[int]int64{}
	}
	var succeeded, failed int64
	val := value(*valSize, rand.New(rand.NewSource(3)))
	per := *objects / c.clients
	if per < 1 {
		per = 1
	}
	s := runClosedLoop(&c, func(w int, rng *rand.Rand) error {
		ctx, cancel := ctxTimeout(opTimeout)
		defer cancel()
		obj := (w + rng.Intn(per)*c.clients) % *objects
		key := fixedKey(*prefix, obj, 8)
		rev := revs[w][obj]
		resp, err := cs[w%len(cs)].Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, val)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			atomic.AddInt64(&succeeded, 1)
			revs[w][obj] = resp.Header.Revision
		} else {
			atomic.AddInt64(&failed, 1)
			kvs := resp.Responses[0].GetResponseRange().Kvs
			if len(kvs) == 1 {
				revs[w][obj] = kvs[0].ModRevision
			} else {
				revs[w][obj] = 0
			}
		}
		return nil
	})
	result("txn", &c, fmt.Sprintf("objects=%d val_size=%d succeeded_total=%d failed_total=%d", *objects, *valSize, succeeded, failed), s)
}

// loadKeys writes n keys prefix%08d of valSize bytes in txns of batch puts from `workers` goroutines.
func loadKeys(cs []*clientv3.Client, workers int, prefix string, n, valSize, batch int) (summary, int64) {
	width := len(strconv.Itoa(n - 1))
	if width < 8 {
		width = 8
	}
	var next int64
	var mu sync.Mutex
	var lat []time.Duration
	var errs int64
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w) + 11))
			val := value(valSize, rng)
			var mine []time.Duration
			for {
				from := int(atomic.AddInt64(&next, int64(batch))) - batch
				if from >= n {
					break
				}
				to := from + batch
				if to > n {
					to = n
				}
				ops := make([]clientv3.Op, 0, to-from)
				for i := from; i < to; i++ {
					ops = append(ops, clientv3.OpPut(fixedKey(prefix, i, width), val))
				}
				for attempt := 0; ; attempt++ {
					ctx, cancel := ctxTimeout(opTimeout)
					s := time.Now()
					_, err := cs[w%len(cs)].Txn(ctx).Then(ops...).Commit()
					cancel()
					if err == nil {
						mine = append(mine, time.Since(s))
						break
					}
					atomic.AddInt64(&errs, 1)
					if attempt >= 5 {
						die("load txn [%d,%d): %v", from, to, err)
					}
					fmt.Fprintf(os.Stderr, "loadgen: load txn [%d,%d) (retrying): %v\n", from, to, err)
					time.Sleep(time.Second)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	return summarizeLat(lat, errs, time.Since(t0).Seconds()), errs
}

func cmdLoad(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var c common
	c.register(fs, 16, 0)
	n := fs.Int("keys", 1000000, "keys to write")
	valSize := fs.Int("val-size", 1024, "value size in bytes")
	batch := fs.Int("batch", 100, "puts per txn")
	prefix := fs.String("prefix", "load/", "key prefix")
	fs.Parse(args)
	cs := newClients(c.endpoints, c.numConns())
	defer closeClients(cs)
	cpu0 := snapCPU(c.serverPID)
	s, _ := loadKeys(cs, c.clients, *prefix, *n, *valSize, *batch)
	s.cpu = cpuFields(cpu0, snapCPU(c.serverPID))
	result("load", &c, fmt.Sprintf("keys=%d val_size=%d batch=%d keys_per_s=%.1f", *n, *valSize, *batch, float64(*n)/s.secs), s)
}

// probe: poll a Range until one is served; print the milliseconds since -start-ns (the time the
// server process was started), i.e. the restart-to-first-served-request time.
func cmdProbe(args []string) {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	endpoint := fs.String("endpoints", "127.0.0.1:2379", "endpoint")
	startNs := fs.Int64("start-ns", 0, "unix nanoseconds at which the server was started (default: now)")
	key := fs.String("key", "probe", "key to read (linearizable)")
	timeout := fs.Duration("timeout", 300*time.Second, "give up after")
	label := fs.String("label", "", "label copied into the RESULT line")
	quiet := fs.Bool("quiet", false, "print nothing on success")
	fs.Parse(args)
	start := time.Now()
	if *startNs > 0 {
		start = time.Unix(0, *startNs)
	}
	conn, err := grpc.NewClient(*endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 1.2, Jitter: 0.1, MaxDelay: 10 * time.Millisecond},
			MinConnectTimeout: 200 * time.Millisecond,
		}))
	if err != nil {
		die("dial: %v", err)
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	deadline := start.Add(*timeout)
	attempts := 0
	var lastErr error
	for time.Now().Before(deadline) {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte(*key)}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			if !*quiet {
				fmt.Printf("RESULT workload=probe label=%s first_request_ms=%.1f attempts=%d\n", *label,
					float64(time.Since(start))/1e6, attempts)
			}
			return
		}
		lastErr = err
		time.Sleep(2 * time.Millisecond)
	}
	die("no request served within %v: %v", *timeout, lastErr)
}
