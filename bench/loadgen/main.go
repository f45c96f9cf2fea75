// loadgen drives an etcd v3 server (the real etcd or etcd-fdb) with the same load and prints
// machine-readable results: one line per measurement,
//
//	RESULT workload=put clients=100 ops=123456 ops_per_s=12345.6 p50_ms=... p99_ms=... p999_ms=...
//
// It uses etcd's own Go client (go.etcd.io/etcd/client/v3) for puts, ranges and txns, and the
// client's gRPC connection with etcd's generated stubs for watch and lease-keepalive streams
// (so that 100,000 watchers cost the load generator little). bench/compare.sh runs it.
//
// Subcommands: put, range, txn, watch-latency, keepalive, watch-scale, keepalive-pipe,
// lease-expiry, load, probe, freeport, cpuwatch.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: loadgen SUBCOMMAND [flags]

subcommands:
  put            random-key puts from N clients over C connections
  range          single-key gets (-consistency l|s) or 500-key pages over a preloaded prefix (-pages)
  txn            kube-apiserver's optimistic update: if mod_revision(key)==rev then put else get
  watch-latency  W watchers on S streams; puts at a fixed rate; put-to-event latency and server RSS
  keepalive      lease keepalives on persistent LeaseKeepAlive streams
  watch-scale    idle watchers and streams: server RSS per watcher and per stream; then
                 put-acknowledgement-to-event latency at a steady put rate
  keepalive-pipe keepalives with several in flight per stream (one lease each in flight)
  lease-expiry   N leases with K keys each expire together: DELETE lag after the expiry
  load           write N keys of V bytes in txns of B puts
  probe          poll until a Range is served; print the time since -start-ns
  freeport       print N free TCP ports on 127.0.0.1
  cpuwatch       CPU used by the server, a client process and everything else while the client runs

Run "loadgen SUBCOMMAND -h" for the flags of one.
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "put":
		cmdPut(args)
	case "range":
		cmdRange(args)
	case "txn":
		cmdTxn(args)
	case "watch-latency":
		cmdWatch(args)
	case "keepalive":
		cmdKeepalive(args)
	case "watch-scale":
		cmdWatchScale(args)
	case "keepalive-pipe":
		cmdKeepalivePipe(args)
	case "lease-expiry":
		cmdLeaseExpiry(args)
	case "load":
		cmdLoad(args)
	case "probe":
		cmdProbe(args)
	case "freeport":
		cmdFreeport(args)
	case "cpuwatch":
		cmdCPUWatch(args)
	default:
		usage()
	}
}

// common holds the flags every load subcommand takes.
type common struct {
	endpoints string
	clients   int
	conns     int
	duration  time.Duration
	warmup    time.Duration
	label     string
	serverPID int
}

func (c *common) register(fs *flag.FlagSet, clients, conns int) {
	fs.StringVar(&c.endpoints, "endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	fs.IntVar(&c.clients, "clients", clients, "concurrent clients (goroutines, one request in flight each)")
	fs.IntVar(&c.conns, "conns", conns, "gRPC connections shared by the clients (0: min(clients,100))")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&c.warmup, "warmup", 1*time.Second, "unmeasured warm-up before the measured duration")
	fs.StringVar(&c.label, "label", "", "label copied into the RESULT line")
	fs.IntVar(&c.serverPID, "server-pid", 0, "server pid, to report its VmRSS from /proc")
}

func (c *common) numConns() int {
	n := c.conns
	if n <= 0 {
		n = c.clients
		if n > 100 {
			n = 100
		}
	}
	if n < 1 {
		n = 1
	}
	return n
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", a...)
	os.Exit(1)
}

func newClients(endpoints string, n int) []*clientv3.Client {
	cs := make([]*clientv3.Client, n)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:          strings.Split(endpoints, ","),
			DialTimeout:        10 * time.Second,
			Logger:             zap.NewNop(),
			MaxCallSendMsgSize: 64 << 20,
			DialOptions:        []grpc.DialOption{grpc.WithBlock()},
		})
		if err != nil {
			die("connect %s: %v", endpoints, err)
		}
		cs[i] = c
	}
	return cs
}

func closeClients(cs []*clientv3.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// rssKB reads VmRSS of pid from /proc (0 if unknown).
func rssKB(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	return 0
}

// recorder collects latencies of one goroutine.
type recorder struct {
	lat  []time.Duration
	errs int64
}

// summary merges recorders and returns the fields of a RESULT line.
type summary struct {
	ops    int
	errs   int64
	p50    time.Duration
	p90    time.Duration
	p99    time.Duration
	p999   time.Duration
	max    time.Duration
	mean   time.Duration
	secs   float64
	sorted []time.Duration
	cpu    string // server_cpu=... loadgen_cpu=... other_cpu=...
}

func summarize(recs []*recorder, secs float64) summary {
	var all []time.Duration
	var errs int64
	for _, r := range recs {
		all = append(all, r.lat...)
		errs += r.errs
	}
	return summarizeLat(all, errs, secs)
}

func summarizeLat(all []time.Duration, errs int64, secs float64) summary {
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	s := summary{ops: len(all), errs: errs, secs: secs, sorted: all}
	if len(all) == 0 {
		return s
	}
	q := func(p float64) time.Duration {
		i := int(p * float64(len(all)))
		if i >= len(all) {
			i = len(all) - 1
		}
		return all[i]
	}
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	s.p50, s.p90, s.p99, s.p999, s.max = q(0.50), q(0.90), q(0.99), q(0.999), all[len(all)-1]
	s.mean = sum / time.Duration(len(all))
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }

func (s summary) fields() string {
	rate := 0.0
	if s.secs > 0 {
		rate = float64(s.ops) / s.secs
	}
	return fmt.Sprintf("ops=%d errors=%d secs=%.2f ops_per_s=%.1f mean_ms=%s p50_ms=%s p90_ms=%s p99_ms=%s p999_ms=%s max_ms=%s",
		s.ops, s.errs, s.secs, rate, ms(s.mean), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.p999), ms(s.max))
}

func result(workload string, c *common, extra string, s summary) {
	line := "RESULT workload=" + workload
	if c != nil {
		if c.label != "" {
			line += " label=" + c.label
		}
		line += fmt.Sprintf(" clients=%d conns=%d", c.clients, c.numConns())
	}
	if extra != "" {
		line += " " + extra
	}
	line += " " + s.fields()
	if s.cpu != "" {
		line += " " + s.cpu
	}
	if c != nil && c.serverPID > 0 {
		line += fmt.Sprintf(" server_rss_kb=%d", rssKB(c.serverPID))
	}
	fmt.Println(line)
}

// runClosedLoop runs op from c.clients goroutines for warmup+duration and returns the
// latencies of the operations that started after the warm-up.
func runClosedLoop(c *common, op func(worker int, rng *rand.Rand) error) summary {
	recs := make([]*recorder, c.clients)
	start := time.Now()
	measureFrom := start.Add(c.warmup)
	end := measureFrom.Add(c.duration)
	var wg sync.WaitGroup
	var cpu0 cpuSnap
	cpuTaken := make(chan struct{})
	go func() {
		time.Sleep(time.Until(measureFrom))
		cpu0 = snapCPU(c.serverPID)
		close(cpuTaken)
	}()
	for w := 0; w < c.clients; w++ {
		recs[w] = &recorder{lat: make([]time.Duration, 0, 4096)}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)*7919 + 1))
			r := recs[w]
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := op(w, rng)
				t1 := time.Now()
				if t0.Before(measureFrom) || t1.After(end) {
					continue
				}
				if err != nil {
					r.errs++
					if r.errs <= 3 {
						fmt.Fprintf(os.Stderr, "loadgen: worker %d: %v\n", w, err)
					}
					continue
				}
				r.lat = append(r.lat, t1.Sub(t0))
			}
		}(w)
	}
	wg.Wait()
	cpu1 := snapCPU(c.serverPID)
	<-cpuTaken
	s := summarize(recs, c.duration.Seconds())
	s.cpu = cpuFields(cpu0, cpu1)
	return s
}

func fixedKey(prefix string, i, width int) string {
	return fmt.Sprintf("%s%0*d", prefix, width, i)
}

func value(n int, rng *rand.Rand) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + rng.Intn(26))
	}
	return string(b)
}

func cmdFreeport(args []string) {
	fs := flag.NewFlagSet("freeport", flag.ExitOnError)
	n := fs.Int("n", 1, "how many ports")
	fs.Parse(args)
	var ls []net.Listener
	var ports []string
	for i := 0; i < *n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			die("listen: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
	}
	for _, l := range ls {
		l.Close()
	}
	fmt.Println(strings.Join(ports, " "))
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
