package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestTxnAnswersAsEtcd: the corners of Range and Txn where etcd's answer follows from how
// it checks and runs a request (its v3rpc checkTxnRequest and checkIntervals, the applier's
// checkRequests and Range), each found by TestKVDifferentialAgainstEtcd and pinned here so
// that it holds without the reference etcd installed.
func TestTxnAnswersAsEtcd(t *testing.T) {
	s := startServer(t, serverOpts{})
	kv := pb.NewKVClient(s.conn(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	put := func(k, v string) int64 {
		t.Helper()
		r, err := kv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		return r.Header.Revision
	}
	txn := func(what string, r *pb.TxnRequest) *pb.TxnResponse {
		t.Helper()
		resp, err := kv.Txn(ctx, r)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return resp
	}
	txnErr := func(what string, r *pb.TxnRequest, code codes.Code, msg string) {
		t.Helper()
		_, err := kv.Txn(ctx, r)
		if st := status.Convert(err); err == nil || st.Code() != code || st.Message() != msg {
			t.Errorf("%s: error %v, want %s %q", what, err, code, msg)
		}
	}
	opPut := func(k, v string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	}
	opRange := func(r *pb.RangeRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
	}
	opTxn := func(r *pb.TxnRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
	}
	keysOf := func(r *pb.RangeResponse) string {
		var ks []string
		for _, kv := range r.Kvs {
			ks = append(ks, string(kv.Key))
		}
		return strings.Join(ks, ",")
	}

	// Versions: a 2, b 3, c 1, d 1.
	first := put("t/a", "1")
	put("t/a", "2")
	for i := 0; i < 3; i++ {
		put("t/b", fmt.Sprint(i))
	}
	put("t/c", "x")
	before := put("t/d", "x")

	// A nested Txn's header is empty (revision 0); the outer one has the Txn's revision, and
	// so has a Range at a past revision after the Txn's write.
	r := txn("nested", &pb.TxnRequest{Success: []*pb.RequestOp{
		opPut("t/e", "1"),
		opRange(&pb.RangeRequest{Key: []byte("t/a"), Revision: first}),
		opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opRange(&pb.RangeRequest{Key: []byte("t/a")})}}),
	}})
	rev := r.Header.Revision
	if rev <= before {
		t.Fatalf("txn revision %d, want > %d", rev, before)
	}
	if h := r.Responses[1].GetResponseRange().Header; h == nil || h.Revision != rev {
		t.Errorf("range at a past revision after the txn's put: header %v, want revision %d", h, rev)
	}
	if h := r.Responses[2].GetResponseTxn().Header; h == nil || h.Revision != 0 {
		t.Errorf("nested txn header %v, want present with revision 0", h)
	}

	// count_only never says "more", also when the Txn's own writes are counted.
	r = txn("count_only", &pb.TxnRequest{Success: []*pb.RequestOp{
		opPut("t/f", "1"),
		opRange(&pb.RangeRequest{Key: []byte("t/"), RangeEnd: []byte("t0"), Limit: 1, CountOnly: true}),
	}})
	if rr := r.Responses[1].GetResponseRange(); rr.More || rr.Count != 6 || len(rr.Kvs) != 0 {
		t.Errorf("count_only with limit 1: more %v count %d kvs %d, want false 6 0", rr.More, rr.Count, len(rr.Kvs))
	}

	// keys_only after the Txn's own write: the written key has the Txn's revision; a filter
	// at the revision after the store's keeps it (in etcd that is the Txn's).
	latest := r.Header.Revision
	r = txn("keys_only", &pb.TxnRequest{Success: []*pb.RequestOp{
		opPut("t/c", "y"),
		opRange(&pb.RangeRequest{Key: []byte("t/c"), KeysOnly: true}),
		opRange(&pb.RangeRequest{Key: []byte("t/c"), MaxModRevision: latest + 1}),
	}})
	if kvs := r.Responses[1].GetResponseRange().Kvs; len(kvs) != 1 || kvs[0].ModRevision != r.Header.Revision || len(kvs[0].Value) != 0 {
		t.Errorf("keys_only own write: %v, want mod revision %d and no value", kvs, r.Header.Revision)
	}
	if kvs := r.Responses[2].GetResponseRange().Kvs; len(kvs) != 1 {
		t.Errorf("max_mod_revision above the store's: own write filtered out (%v)", kvs)
	}

	// Sorting: ties stay in key order, either direction (c, d, e, f have version 1 or 2).
	g, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("t/"), RangeEnd: []byte("t0"),
		SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VERSION})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(g); got != "t/b,t/a,t/c,t/d,t/e,t/f" {
		t.Errorf("descending by version: %s, want t/b,t/a,t/c,t/d,t/e,t/f", got)
	}
	// A sort target without a sort order sorts the first limit + 1 keys (a 2, b 3) and keeps
	// limit of them: a, although c has a lower version.
	g, err = kv.Range(ctx, &pb.RangeRequest{Key: []byte("t/"), RangeEnd: []byte("t0"), Limit: 1,
		SortTarget: pb.RangeRequest_VERSION})
	if err != nil {
		t.Fatal(err)
	}
	if keysOf(g) != "t/a" || !g.More || g.Count != 6 {
		t.Errorf("target version, no order, limit 1: %s more %v count %d, want t/a true 6", keysOf(g), g.More, g.Count)
	}

	// Validation, before anything runs.
	txnErr("empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}},
		codes.InvalidArgument, "etcdserver: key not found")
	txnErr("nested compare without key", &pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{
		Compare: []*pb.Compare{{Target: pb.Compare_VERSION}}})}},
		codes.InvalidArgument, "etcdserver: key is not provided")
	var ops []*pb.RequestOp
	for i := 0; i < 100; i++ {
		ops = append(ops, opRange(&pb.RangeRequest{Key: []byte("t/a")}))
	}
	nested := make([]*pb.RequestOp, 29)
	for i := range nested {
		nested[i] = opRange(&pb.RangeRequest{Key: []byte("t/a")})
	}
	txnErr("nested txn over what its parent leaves (128 - 100)",
		&pb.TxnRequest{Success: append(ops[:99:99], opTxn(&pb.TxnRequest{Success: nested}))},
		codes.InvalidArgument, "etcdserver: too many operations in txn request")
	txn("nested txn within what its parent leaves", &pb.TxnRequest{Success: append(ops[:99:99], opTxn(&pb.TxnRequest{Success: nested[:28]}))})

	// checkIntervals compares a delete's end as a string: a delete to "\x00" overlaps no put.
	r = txn("delete to the end and a put", &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("t/"), RangeEnd: []byte{0}}}},
		opPut("t/a", "new"),
	}})
	if d := r.Responses[0].GetResponseDeleteRange().Deleted; d != 6 {
		t.Errorf("delete to the end deleted %d, want 6", d)
	}
	if g, _ := kv.Range(ctx, &pb.RangeRequest{Key: []byte("t/"), RangeEnd: []byte("t0")}); keysOf(g) != "t/a" {
		t.Errorf("after delete to the end and put: %s, want t/a", keysOf(g))
	}

	// The Puts of the chosen path are checked before the Ranges' revisions.
	if _, err := kv.Compact(ctx, &pb.CompactionRequest{Revision: rev}); err != nil {
		t.Fatal(err)
	}
	txnErr("compacted range before a put with a missing lease", &pb.TxnRequest{Success: []*pb.RequestOp{
		opRange(&pb.RangeRequest{Key: []byte("t/a"), Revision: before}),
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t/z"), Lease: 0x7e57}}},
	}}, codes.NotFound, "etcdserver: requested lease not found")
	txnErr("future range before a put of a missing key with ignore_value", &pb.TxnRequest{Success: []*pb.RequestOp{
		opRange(&pb.RangeRequest{Key: []byte("t/a"), Revision: rev + 1000000}),
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t/z"), IgnoreValue: true}}},
	}}, codes.InvalidArgument, "etcdserver: key not found")
	txnErr("compacted range alone", &pb.TxnRequest{Success: []*pb.RequestOp{
		opRange(&pb.RangeRequest{Key: []byte("t/a"), Revision: before}),
	}}, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted")

	// A Txn that puts a key and deletes it again (a delete to "\x00" after the put), and one
	// that deletes, puts and deletes it: watchers get every event, in order, with the
	// version before the Txn as prev_kv (none for a PUT that creates the key).
	put("u/a", "0")
	openDelete := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("u/"), RangeEnd: []byte{0}}}}
	r = txn("put then delete", &pb.TxnRequest{Success: []*pb.RequestOp{opPut("u/a", "1"), openDelete}})
	if d := r.Responses[1].GetResponseDeleteRange().Deleted; d != 1 {
		t.Fatalf("put then delete: deleted %d, want 1", d)
	}
	from := r.Header.Revision
	put("u/a", "0")
	txn("delete, put, delete", &pb.TxnRequest{Success: []*pb.RequestOp{openDelete, opPut("u/a", "2"), openDelete}})
	w, err := pb.NewWatchClient(s.conn(t)).Watch(ctx)
	if err == nil {
		err = w.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte("u/"), RangeEnd: []byte("u0"), StartRevision: from, PrevKv: true}}})
	}
	if err != nil {
		t.Fatal(err)
	}
	var evs []string
	for len(evs) < 6 {
		wr, err := w.Recv()
		if err != nil {
			t.Fatalf("watch: %v (events so far: %q)", err, evs)
		}
		for _, ev := range wr.Events {
			prev := "none"
			if ev.PrevKv != nil {
				prev = string(ev.PrevKv.Value)
			}
			evs = append(evs, fmt.Sprintf("%s %s=%s v%d prev=%s", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.Version, prev))
		}
	}
	want := "PUT u/a=1 v2 prev=0; DELETE u/a= v0 prev=0; PUT u/a=0 v1 prev=none; " +
		"DELETE u/a= v0 prev=0; PUT u/a=2 v1 prev=none; DELETE u/a= v0 prev=0"
	if got := strings.Join(evs, "; "); got != want {
		t.Errorf("put then delete, events:\n got  %s\n want %s", got, want)
	}
}
