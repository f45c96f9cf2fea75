package tests

// TestKVDifferentialAgainstEtcd sends one seeded random stream of requests (Put, Range,
// DeleteRange, Txn with nested Txns, Compact, LeaseGrant, LeaseRevoke with keys attached,
// LeaseTimeToLive and LeaseLeases,
// with most of their options and many invalid ones) to the real etcd and to etcd-fdb, and
// requires the same answer from both, request by request: the same keys, values, versions,
// leases, counts, flags and errors (gRPC code and message). At the end it reads every key at
// every revision since the last compaction from both, and compares the events of watches:
// one of every key opened before the first request, one replaying from the compaction, and
// 20 of random ranges and options (filters, prev_kv) from random revisions.
//
// Revisions differ between the two (etcd counts 1, 2, 3...; etcd-fdb's are sparse commit
// versions), so each side's revisions are compared by rank: rank 0 is the revision of the
// empty store, rank i the i-th revision made by the test. A request that names a revision
// gets the same rank's revision on each side.
//
// The test is skipped when etcd (Debian etcd-server) is not installed.
// ETCD_FDB_DIFF_SEED (default 1) and ETCD_FDB_DIFF_OPS (default 2000) pick another run.

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startRefEtcd starts the real etcd on free loopback ports with a fresh data directory and
// returns its client address; it is stopped when the test ends.
func startRefEtcd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd (Debian etcd-server) is not installed: no reference to compare with")
	}
	dir := t.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--name", "default", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	addr := strings.TrimPrefix(client, "http://")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			t.Fatalf("etcd exited early:\n%s", b)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("etcd did not listen within 30 s")
	return ""
}

// diffSide is one server of the comparison and the revisions the test saw it make.
type diffSide struct {
	name  string
	kv    pb.KVClient
	lease pb.LeaseClient
	watch pb.WatchClient
	revs  []int64 // revs[0]: the empty store's revision; revs[i]: the i-th write's
}

func newDiffSide(t *testing.T, name, addr string) *diffSide {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &diffSide{name: name, kv: pb.NewKVClient(conn), lease: pb.NewLeaseClient(conn),
		watch: pb.NewWatchClient(conn)}
	// etcd answers once it has elected itself; give it the time to.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := d.kv.Range(ctx, &pb.RangeRequest{Key: []byte("probe")})
		cancel()
		if err == nil {
			d.revs = []int64{r.Header.Revision}
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer Range: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rev is the revision of rank r on this side; ranks past the newest are future revisions.
func (d *diffSide) rev(r int) int64 {
	if r < len(d.revs) {
		return d.revs[r]
	}
	return d.revs[len(d.revs)-1] + int64(r-len(d.revs)+1)
}

// rank names revision v by the ranks of the test's revisions: "3" for the third write's
// revision, "3+" for one between the third and the fourth, "<0" for one before the start.
func (d *diffSide) rank(v int64) string {
	i := sort.Search(len(d.revs), func(i int) bool { return d.revs[i] > v }) - 1
	switch {
	case i < 0:
		return "<0"
	case d.revs[i] == v:
		return strconv.Itoa(i)
	default:
		return strconv.Itoa(i) + "+"
	}
}

func (d *diffSide) header(h *pb.ResponseHeader) string {
	if h == nil {
		return "nil"
	}
	return d.rank(h.Revision)
}

func (d *diffSide) kvString(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "nil"
	}
	return fmt.Sprintf("%q=%q v%d c%s m%s l%d", kv.Key, kv.Value, kv.Version,
		d.rank(kv.CreateRevision), d.rank(kv.ModRevision), kv.Lease)
}

func (d *diffSide) eventString(ev *mvccpb.Event) string {
	return fmt.Sprintf("%s %s prev=%s", ev.Type, d.kvString(ev.Kv), d.kvString(ev.PrevKv))
}

func (d *diffSide) kvsString(kvs []*mvccpb.KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = d.kvString(kv)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// norm renders a response with every revision replaced by its rank.
func (d *diffSide) norm(resp interface{}) string {
	switch r := resp.(type) {
	case *pb.RangeResponse:
		return fmt.Sprintf("range h=%s count=%d more=%v kvs=%s", d.header(r.Header), r.Count, r.More,
			d.kvsString(r.Kvs))
	case *pb.PutResponse:
		return fmt.Sprintf("put h=%s prev=%s", d.header(r.Header), d.kvString(r.PrevKv))
	case *pb.DeleteRangeResponse:
		return fmt.Sprintf("delete h=%s deleted=%d prev=%s", d.header(r.Header), r.Deleted,
			d.kvsString(r.PrevKvs))
	case *pb.TxnResponse:
		parts := make([]string, len(r.Responses))
		for i, op := range r.Responses {
			switch x := op.Response.(type) {
			case *pb.ResponseOp_ResponseRange:
				parts[i] = d.norm(x.ResponseRange)
			case *pb.ResponseOp_ResponsePut:
				parts[i] = d.norm(x.ResponsePut)
			case *pb.ResponseOp_ResponseDeleteRange:
				parts[i] = d.norm(x.ResponseDeleteRange)
			case *pb.ResponseOp_ResponseTxn:
				parts[i] = d.norm(x.ResponseTxn)
			default:
				parts[i] = fmt.Sprintf("unknown %T", op.Response)
			}
		}
		return fmt.Sprintf("txn h=%s succeeded=%v {%s}", d.header(r.Header), r.Succeeded,
			strings.Join(parts, "; "))
	case *pb.CompactionResponse:
		return fmt.Sprintf("compact h=%s", d.header(r.Header))
	case *pb.LeaseGrantResponse:
		return fmt.Sprintf("grant h=%s id=%x ttl=%d error=%q", d.header(r.Header), r.ID, r.TTL, r.Error)
	case *pb.LeaseRevokeResponse:
		return fmt.Sprintf("revoke h=%s", d.header(r.Header))
	case *pb.LeaseTimeToLiveResponse:
		// The remaining TTL depends on when each server was asked: only its sign counts.
		keys := make([]string, len(r.Keys))
		for i, k := range r.Keys {
			keys[i] = fmt.Sprintf("%q", k)
		}
		sort.Strings(keys) // etcd lists them from a map
		return fmt.Sprintf("ttl h=%s id=%x granted=%d remaining>0=%v remaining=-1:%v keys=%v",
			d.header(r.Header), r.ID, r.GrantedTTL, r.TTL > 0, r.TTL == -1, keys)
	case *pb.LeaseLeasesResponse:
		ids := make([]string, len(r.Leases))
		for i, l := range r.Leases {
			ids[i] = fmt.Sprintf("%x", l.ID)
		}
		sort.Strings(ids)
		return fmt.Sprintf("leases h=%s %v", d.header(r.Header), ids)
	}
	return fmt.Sprintf("unexpected %T", resp)
}

// diffWatch is a watch of every key, with prev_kv, read as it goes; a nil event marks the
// end of a response.
type diffWatch struct {
	side   *diffSide
	events chan *mvccpb.Event
	errc   chan error
}

func (d *diffSide) startWatch(t *testing.T, start int64) *diffWatch {
	return d.startWatchReq(t, &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0},
		StartRevision: start, PrevKv: true})
}

func (d *diffSide) startWatchReq(t *testing.T, req *pb.WatchCreateRequest) *diffWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := d.watch.Watch(ctx)
	if err == nil {
		err = w.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}})
	}
	if err != nil {
		t.Fatalf("%s: Watch: %v", d.name, err)
	}
	dw := &diffWatch{side: d, events: make(chan *mvccpb.Event, 1<<16), errc: make(chan error, 1)}
	go func() {
		for {
			r, err := w.Recv()
			if err == nil && (r.Canceled || r.CompactRevision != 0) {
				err = fmt.Errorf("canceled: %q, compacted at %s", r.CancelReason, d.rank(r.CompactRevision))
			}
			if err != nil {
				if ctx.Err() == nil {
					dw.errc <- err
				}
				return
			}
			for _, ev := range r.Events {
				dw.events <- ev
			}
			dw.events <- nil
		}
	}()
	return dw
}

// history returns the events, normalised, up to those of the side's newest revision.
func (w *diffWatch) history(t *testing.T) []string {
	t.Helper()
	d := w.side
	newest := d.revs[len(d.revs)-1]
	var out []string
	seen := false
	timeout := time.After(60 * time.Second)
	for {
		select {
		case ev := <-w.events:
			if ev == nil {
				if seen {
					return out
				}
				continue
			}
			out = append(out, d.eventString(ev))
			seen = seen || ev.Kv.ModRevision >= newest
		case err := <-w.errc:
			t.Fatalf("%s: watch: %v (after %d events)", d.name, err, len(out))
		case <-timeout:
			t.Fatalf("%s: watch: no events of the newest revision within 60 s (after %d events)", d.name, len(out))
		}
	}
}

// quietHistories returns each watch's events, normalised, that came until none came on any
// for `quiet` (a watch whose range may have no event at the newest revision: etcd 3.4
// answers a progress request at once, before the events it still has to replay, so that
// cannot tell). A watch that ends (canceled, an error) ends its list with the reason.
func quietHistories(ws []*diffWatch, quiet time.Duration) [][]string {
	out := make([][]string, len(ws))
	ended := make([]bool, len(ws))
	last := time.Now()
	for time.Since(last) < quiet {
		got := false
		for i, w := range ws {
			for !ended[i] {
				select {
				case ev := <-w.events:
					if ev != nil {
						out[i] = append(out[i], w.side.eventString(ev))
					}
					got = true
					continue
				case err := <-w.errc:
					out[i] = append(out[i], fmt.Sprintf("ended: %v", err))
					ended[i], got = true, true
				default:
				}
				break
			}
		}
		if got {
			last = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

// sameHistory requires the same events from both watches.
func sameHistory(t *testing.T, what string, seed int64, ref, fdb *diffWatch) {
	t.Helper()
	sameEvents(t, what, seed, ref.history(t), fdb.history(t))
}

func sameEvents(t *testing.T, what string, seed int64, want, got []string) {
	t.Helper()
	for i := 0; i < len(want) || i < len(got); i++ {
		var a, b string
		if i < len(want) {
			a = want[i]
		}
		if i < len(got) {
			b = got[i]
		}
		if a != b {
			t.Fatalf("%s: event %d of %d/%d differs (seed %d)\n etcd:     %s\n etcd-fdb: %s",
				what, i, len(want), len(got), seed, a, b)
		}
	}
	t.Logf("%s: the same %d events", what, len(want))
}

// diffOp is one generated request; build makes it for a side (revisions by rank).
type diffOp struct {
	desc        string
	build       func(d *diffSide) interface{}
	compactRank int // the rank a Compact names
}

// headered is every etcd response: each has a header.
type headered interface{ GetHeader() *pb.ResponseHeader }

// invoke calls one unary method of a client.
func invoke[Q any, R headered](ctx context.Context, f func(context.Context, Q, ...grpc.CallOption) (R, error), q Q) (headered, error) {
	return f(ctx, q)
}

// call sends the request and returns the normalised answer; a write's revision is recorded.
func (d *diffSide) call(req interface{}) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp headered
	var err error
	switch r := req.(type) {
	case *pb.RangeRequest:
		resp, err = invoke(ctx, d.kv.Range, r)
	case *pb.PutRequest:
		resp, err = invoke(ctx, d.kv.Put, r)
	case *pb.DeleteRangeRequest:
		resp, err = invoke(ctx, d.kv.DeleteRange, r)
	case *pb.TxnRequest:
		resp, err = invoke(ctx, d.kv.Txn, r)
	case *pb.CompactionRequest:
		resp, err = invoke(ctx, d.kv.Compact, r)
	case *pb.LeaseGrantRequest:
		resp, err = invoke(ctx, d.lease.LeaseGrant, r)
	case *pb.LeaseRevokeRequest:
		resp, err = invoke(ctx, d.lease.LeaseRevoke, r)
	case *pb.LeaseTimeToLiveRequest:
		resp, err = invoke(ctx, d.lease.LeaseTimeToLive, r)
	case *pb.LeaseLeasesRequest:
		resp, err = invoke(ctx, d.lease.LeaseLeases, r)
	default:
		return fmt.Sprintf("unexpected request %T", req)
	}
	if err != nil {
		st := status.Convert(err)
		return fmt.Sprintf("error %s: %s", st.Code(), st.Message())
	}
	if h := resp.GetHeader(); h != nil && h.Revision > d.revs[len(d.revs)-1] {
		d.revs = append(d.revs, h.Revision)
	}
	return d.norm(resp)
}

// diffGen generates requests over a small key space, so that requests meet each other's keys.
type diffGen struct {
	rng       *rand.Rand
	nrevs     func() int // how many ranks exist so far (the same on both sides while they agree)
	compacted int        // rank of the newest successful compaction
	// Within a Txn: either Puts with ignore_value/ignore_lease or deletes to the end of the
	// key space ("\x00"), not both. etcd checks such a Put against the store before the
	// Txn, and its checkIntervals sees no overlap with a delete to "\x00"; when the delete
	// removed the key, etcd 3.4 and 3.5 panic applying the Put (etcd-fdb: "key not found").
	inTxn, txnIgnore bool
}

var diffKeys = []string{"a", "a/1", "a/2", "a/2/x", "b", "b/1", "c", "c\x00", "d"}

func (g *diffGen) key() []byte {
	if g.rng.Intn(60) == 0 {
		return nil // "key is not provided"
	}
	return []byte(diffKeys[g.rng.Intn(len(diffKeys))])
}

// leaseID: one of a few client-chosen lease ids, granted and revoked by the test (long TTLs:
// none expires during a run), so that both servers know them by the same id.
func (g *diffGen) leaseID() int64 {
	return 0x100 + int64(g.rng.Intn(4))
}

func (g *diffGen) value() []byte {
	if g.rng.Intn(8) == 0 {
		return nil
	}
	return []byte(fmt.Sprintf("v%d", g.rng.Intn(6)))
}

// rangeEnd: one key, a prefix, every key from key on, or up to another key (maybe before key).
func (g *diffGen) rangeEnd(key []byte) []byte {
	switch n := g.rng.Intn(10); {
	case n < 5:
		return nil
	case n < 7 && len(key) > 0:
		end := append([]byte{}, key...)
		end[len(end)-1]++
		return end
	case n < 8 && !(g.inTxn && g.txnIgnore):
		return []byte{0}
	default:
		return []byte(diffKeys[g.rng.Intn(len(diffKeys))])
	}
}

// revRank picks a rank to name a revision: mostly a past one, sometimes a future one.
func (g *diffGen) revRank() int {
	n := g.nrevs()
	if g.rng.Intn(12) == 0 {
		return n + g.rng.Intn(3) // the future
	}
	if g.rng.Intn(3) > 0 && n-g.compacted > 0 { // mostly not compacted
		return g.compacted + g.rng.Intn(n-g.compacted)
	}
	return g.rng.Intn(n)
}

func (g *diffGen) rangeReq() func(d *diffSide) *pb.RangeRequest {
	key := g.key()
	end := g.rangeEnd(key)
	limit := int64(0)
	if g.rng.Intn(3) == 0 {
		limit = int64(1 + g.rng.Intn(3))
	}
	order := pb.RangeRequest_SortOrder(0)
	target := pb.RangeRequest_SortTarget(0)
	if g.rng.Intn(4) == 0 {
		// Keys that tie on the sort target stay in key order in etcd while it sorts by
		// insertion (up to 12 keys: diffKeys has fewer); beyond, their order is undefined.
		order = pb.RangeRequest_SortOrder(g.rng.Intn(3))
		target = pb.RangeRequest_SortTarget(g.rng.Intn(5))
	}
	revRank := -1
	if g.rng.Intn(4) == 0 {
		revRank = g.revRank()
	}
	serializable := g.rng.Intn(2) == 0
	keysOnly := g.rng.Intn(8) == 0
	countOnly := g.rng.Intn(8) == 0
	filters := [4]int{-1, -1, -1, -1} // min/max mod, min/max create: ranks
	for i := range filters {
		if g.rng.Intn(10) == 0 {
			filters[i] = g.revRank()
		}
	}
	return func(d *diffSide) *pb.RangeRequest {
		r := &pb.RangeRequest{Key: key, RangeEnd: end, Limit: limit, SortOrder: order,
			SortTarget: target, Serializable: serializable, KeysOnly: keysOnly, CountOnly: countOnly}
		if revRank >= 0 {
			r.Revision = d.rev(revRank)
		}
		f := [4]*int64{&r.MinModRevision, &r.MaxModRevision, &r.MinCreateRevision, &r.MaxCreateRevision}
		for i, rk := range filters {
			if rk >= 0 {
				*f[i] = d.rev(rk)
			}
		}
		return r
	}
}

func (g *diffGen) putReq() func(d *diffSide) *pb.PutRequest {
	r := pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.rng.Intn(3) == 0}
	flags := g.rng.Intn(25)
	if g.inTxn && !g.txnIgnore && flags < 2 {
		flags = 2
	}
	switch flags {
	case 0:
		r.IgnoreValue = true
		if g.rng.Intn(2) == 0 {
			r.Value = nil
		}
	case 1:
		r.IgnoreLease = true
	case 2:
		r.Lease = 0x7e57 // no such lease
	case 3, 4, 5, 6:
		r.Lease = g.leaseID() // granted, revoked or never granted
	}
	return func(d *diffSide) *pb.PutRequest { c := r; return &c }
}

func (g *diffGen) deleteReq() func(d *diffSide) *pb.DeleteRangeRequest {
	key := g.key()
	r := pb.DeleteRangeRequest{Key: key, RangeEnd: g.rangeEnd(key), PrevKv: g.rng.Intn(2) == 0}
	return func(d *diffSide) *pb.DeleteRangeRequest { c := r; return &c }
}

func (g *diffGen) compare() func(d *diffSide) *pb.Compare {
	key := g.key()
	var end []byte
	if g.rng.Intn(6) == 0 {
		end = g.rangeEnd(key)
	}
	result := pb.Compare_CompareResult(g.rng.Intn(4))
	target := pb.Compare_CompareTarget(g.rng.Intn(5))
	version := int64(g.rng.Intn(4))
	value := g.value()
	lease := int64(0)
	if g.rng.Intn(2) == 0 {
		lease = g.leaseID()
	}
	revRank := g.rng.Intn(g.nrevs() + 1)
	return func(d *diffSide) *pb.Compare {
		c := &pb.Compare{Key: key, RangeEnd: end, Result: result, Target: target}
		switch target {
		case pb.Compare_VERSION:
			c.TargetUnion = &pb.Compare_Version{Version: version}
		case pb.Compare_CREATE:
			c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: d.rev(revRank)}
		case pb.Compare_MOD:
			c.TargetUnion = &pb.Compare_ModRevision{ModRevision: d.rev(revRank)}
		case pb.Compare_VALUE:
			c.TargetUnion = &pb.Compare_Value{Value: value}
		case pb.Compare_LEASE:
			c.TargetUnion = &pb.Compare_Lease{Lease: lease}
		}
		return c
	}
}

func (g *diffGen) requestOps(depth int) []func(d *diffSide) *pb.RequestOp {
	ops := make([]func(d *diffSide) *pb.RequestOp, g.rng.Intn(4))
	for i := range ops {
		switch n := g.rng.Intn(40); {
		case n == 0: // an empty RequestOp
			ops[i] = func(d *diffSide) *pb.RequestOp { return &pb.RequestOp{} }
		case n < 16:
			b := g.putReq()
			ops[i] = func(d *diffSide) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: b(d)}}
			}
		case n < 28:
			b := g.rangeReq()
			ops[i] = func(d *diffSide) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: b(d)}}
			}
		case n < 38 || depth > 0:
			b := g.deleteReq()
			ops[i] = func(d *diffSide) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: b(d)}}
			}
		default:
			b := g.txnReq(depth + 1)
			ops[i] = func(d *diffSide) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: b(d)}}
			}
		}
	}
	return ops
}

func (g *diffGen) txnReq(depth int) func(d *diffSide) *pb.TxnRequest {
	cmps := make([]func(d *diffSide) *pb.Compare, g.rng.Intn(4))
	for i := range cmps {
		cmps[i] = g.compare()
	}
	success, failure := g.requestOps(depth), g.requestOps(depth)
	return func(d *diffSide) *pb.TxnRequest {
		r := &pb.TxnRequest{}
		for _, c := range cmps {
			r.Compare = append(r.Compare, c(d))
		}
		for _, o := range success {
			r.Success = append(r.Success, o(d))
		}
		for _, o := range failure {
			r.Failure = append(r.Failure, o(d))
		}
		return r
	}
}

// next generates one request.
func (g *diffGen) next() diffOp {
	switch n := g.rng.Intn(100); {
	case n < 30:
		b := g.putReq()
		return diffOp{"Put", func(d *diffSide) interface{} { return b(d) }, 0}
	case n < 55:
		b := g.rangeReq()
		return diffOp{"Range", func(d *diffSide) interface{} { return b(d) }, 0}
	case n < 67:
		b := g.deleteReq()
		return diffOp{"DeleteRange", func(d *diffSide) interface{} { return b(d) }, 0}
	case n < 93:
		g.inTxn, g.txnIgnore = true, g.rng.Intn(2) == 0
		b := g.txnReq(0)
		g.inTxn = false
		return diffOp{"Txn", func(d *diffSide) interface{} { return b(d) }, 0}
	case n < 95:
		id, ttl := g.leaseID(), int64(600+g.rng.Intn(600))
		return diffOp{"LeaseGrant", func(d *diffSide) interface{} {
			return &pb.LeaseGrantRequest{ID: id, TTL: ttl}
		}, 0}
	case n < 96:
		id := g.leaseID()
		return diffOp{"LeaseRevoke", func(d *diffSide) interface{} {
			return &pb.LeaseRevokeRequest{ID: id}
		}, 0}
	case n < 97:
		id, keys := g.leaseID(), g.rng.Intn(2) == 0
		if g.rng.Intn(4) == 0 {
			return diffOp{"LeaseLeases", func(d *diffSide) interface{} {
				return &pb.LeaseLeasesRequest{}
			}, 0}
		}
		return diffOp{"LeaseTimeToLive", func(d *diffSide) interface{} {
			return &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys}
		}, 0}
	default:
		revRank := g.revRank()
		physical := g.rng.Intn(2) == 0
		return diffOp{"Compact", func(d *diffSide) interface{} {
			return &pb.CompactionRequest{Revision: d.rev(revRank), Physical: physical}
		}, revRank}
	}
}

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

func TestKVDifferentialAgainstEtcd(t *testing.T) {
	etcdAddr := startRefEtcd(t)
	s := startServer(t, serverOpts{})
	ref := newDiffSide(t, "etcd", etcdAddr)
	fdb := newDiffSide(t, "etcd-fdb", s.addr)

	// A fixed seed by default, so that CI is repeatable; ETCD_FDB_DIFF_SEED explores others.
	seed := envInt("ETCD_FDB_DIFF_SEED", 1)
	n := int(envInt("ETCD_FDB_DIFF_OPS", 2000))
	t.Logf("seed %d, %d requests (replay: ETCD_FDB_DIFF_SEED=%d)", seed, n, seed)
	g := &diffGen{rng: rand.New(rand.NewSource(seed)), nrevs: func() int { return len(ref.revs) }}

	liveRef, liveFdb := ref.startWatch(t, 0), fdb.startWatch(t, 0)
	mismatches := 0
	check := func(i int, what string, req func(d *diffSide) interface{}) string {
		a, b := req(ref), req(fdb)
		want, got := ref.call(a), fdb.call(b)
		if want != got {
			mismatches++
			t.Errorf("request %d (%s, seed %d): answers differ\n request: %v\n etcd:     %s\n etcd-fdb: %s",
				i, what, seed, a, want, got)
		}
		return want
	}
	for i := 0; i < n && mismatches < 5; i++ {
		op := g.next()
		answer := check(i, op.desc, op.build)
		if op.desc == "Compact" && strings.HasPrefix(answer, "compact") && op.compactRank > g.compacted {
			g.compacted = op.compactRank
		}
		if len(ref.revs) != len(fdb.revs) {
			t.Fatalf("request %d (%s, seed %d): etcd has made %d revisions, etcd-fdb %d",
				i, op.desc, seed, len(ref.revs)-1, len(fdb.revs)-1)
		}
	}
	if mismatches > 0 {
		t.Fatalf("stopped after %d differing answers", mismatches)
	}
	// Every key at every revision the compaction kept, on both.
	for rk := g.compacted; rk < len(ref.revs) && mismatches < 5; rk++ {
		rk := rk
		check(n+rk, "Range of all keys at rank "+strconv.Itoa(rk), func(d *diffSide) interface{} {
			return &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: d.rev(rk)}
		})
	}
	// The history as watchers see it: the watch opened before the first request saw every
	// event as it came; one opened now replays those after the last compaction.
	// (At the compaction revision itself etcd keeps only each key's last change: a Txn that
	// deleted and put a key there shows just the put, without prev_kv.)
	sameHistory(t, "live watch", seed, liveRef, liveFdb)
	if from := g.compacted + 1; from < len(ref.revs) {
		sameHistory(t, "watch from rank "+strconv.Itoa(from), seed,
			ref.startWatch(t, ref.rev(from)), fdb.startWatch(t, fdb.rev(from)))
	}
	// Watches of random ranges, with random options, replaying from random revisions (mostly
	// after the last compaction), all at once.
	if from := g.compacted + 1; from < len(ref.revs) {
		var what []string
		var refs, fdbs []*diffWatch
		for i := 0; i < 20; i++ {
			key := g.key()
			if key == nil {
				key = []byte("a")
			}
			end := g.rangeEnd(key)
			rk := from + g.rng.Intn(len(ref.revs)-from)
			if g.rng.Intn(6) == 0 && g.compacted > 1 {
				rk = g.rng.Intn(g.compacted) // compacted (not the compaction revision itself: see above)
			}
			var filters []pb.WatchCreateRequest_FilterType
			if g.rng.Intn(4) == 0 {
				filters = append(filters, pb.WatchCreateRequest_NOPUT)
			}
			if g.rng.Intn(4) == 0 {
				filters = append(filters, pb.WatchCreateRequest_NODELETE)
			}
			prevKV := g.rng.Intn(2) == 0
			req := func(d *diffSide) *pb.WatchCreateRequest {
				return &pb.WatchCreateRequest{Key: key, RangeEnd: end, StartRevision: d.rev(rk),
					Filters: filters, PrevKv: prevKV}
			}
			what = append(what, fmt.Sprintf("watch %v", req(ref)))
			refs = append(refs, ref.startWatchReq(t, req(ref)))
			fdbs = append(fdbs, fdb.startWatchReq(t, req(fdb)))
		}
		want, got := quietHistories(refs, time.Second), quietHistories(fdbs, time.Second)
		for i := range what {
			sameEvents(t, what[i], seed, want[i], got[i])
		}
	}
	t.Logf("%d requests and %d revisions: the same answers", n, len(ref.revs)-1)
}
