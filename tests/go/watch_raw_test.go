package tests

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// rawWatch is one Watch gRPC stream driven by hand.
type rawWatch struct {
	t      *testing.T
	stream pb.Watch_WatchClient
	resps  chan *pb.WatchResponse
	errc   chan error
}

func openRawWatch(t *testing.T, s *server) *rawWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := pb.NewWatchClient(s.conn(t)).Watch(ctx)
	if err != nil {
		t.Fatalf("Watch stream: %v", err)
	}
	w := &rawWatch{t: t, stream: st, resps: make(chan *pb.WatchResponse, 1024), errc: make(chan error, 1)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				w.errc <- err
				close(w.resps)
				return
			}
			w.resps <- r
		}
	}()
	return w
}

func (w *rawWatch) send(req *pb.WatchRequest) {
	w.t.Helper()
	if err := w.stream.Send(req); err != nil {
		w.t.Fatalf("send %v: %v", req, err)
	}
}

func (w *rawWatch) create(c *pb.WatchCreateRequest) {
	w.t.Helper()
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
}

func (w *rawWatch) recv(limit time.Duration) *pb.WatchResponse {
	w.t.Helper()
	select {
	case r, ok := <-w.resps:
		if !ok {
			w.t.Fatalf("watch stream ended: %v", <-w.errc)
		}
		return r
	case <-time.After(limit):
		w.t.Fatalf("no watch response within %v", limit)
	}
	return nil
}

// noResp requires that nothing arrives for d.
func (w *rawWatch) noResp(what string, d time.Duration) {
	w.t.Helper()
	select {
	case r := <-w.resps:
		w.t.Errorf("%s: unexpected response %v", what, r)
	case <-time.After(d):
	}
}

// TestWatchClientChosenIDs: a WatchCreateRequest may choose its watch_id; reusing one on the
// same stream is refused as etcd does (created + canceled, watch_id -1, a cancel reason);
// automatic ids skip the ids in use.
func TestWatchClientChosenIDs(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	w := openRawWatch(t, s)
	cur := currentRev(t, c)

	w.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	r := w.recv(5 * time.Second)
	if !r.Created || r.Canceled || r.WatchId != 7 || r.Header.GetRevision() != cur {
		t.Fatalf("create with watch_id 7: %v, want created, watch_id 7, header revision %d", r, cur)
	}
	rev := mustPut(t, c, "a", "1").Header.Revision
	r = w.recv(5 * time.Second)
	if r.WatchId != 7 || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != rev || r.Header.GetRevision() < rev {
		t.Fatalf("event for watch 7: %v", r)
	}

	w.create(&pb.WatchCreateRequest{Key: []byte("b"), WatchId: 7})
	r = w.recv(5 * time.Second)
	if !r.Created || !r.Canceled || !strings.Contains(r.CancelReason, "duplicate watch ID") {
		t.Errorf("create reusing watch_id 7: %v, want created + canceled with etcd's reason (mvcc: duplicate watch ID provided on the WatchStream)", r)
	}
	if r.WatchId != clientv3.InvalidWatchID {
		t.Errorf("create reusing watch_id 7: answered with watch_id %d, want -1 (etcd: id = clientv3.InvalidWatchID when Watch fails; "+
			"clientv3 and etcd's own sendLoop treat created+canceled with a real id as cancelling that watch)", r.WatchId)
	}
	// Watch 7 is still there.
	rev = mustPut(t, c, "a", "2").Header.Revision
	r = w.recv(5 * time.Second)
	if r.WatchId != 7 || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != rev {
		t.Errorf("watch 7 after the refused duplicate: %v", r)
	}
	mustPut(t, c, "b", "x") // the refused watch must not deliver
	w.noResp("refused duplicate watch", 300*time.Millisecond)

	// Automatic ids: the lowest unused from the stream's counter on.
	ids := []int64{}
	for _, id := range []int64{0, 1, 0, 0} {
		w.create(&pb.WatchCreateRequest{Key: []byte("auto"), WatchId: id})
		r = w.recv(5 * time.Second)
		if !r.Created || r.Canceled {
			t.Fatalf("create id %d: %v", id, r)
		}
		ids = append(ids, r.WatchId)
	}
	if fmt.Sprint(ids) != "[0 1 2 3]" {
		t.Errorf("ids for create requests with watch_id 0, 1, 0, 0: %v, want [0 1 2 3]", ids)
	}
	w.create(&pb.WatchCreateRequest{Key: []byte("auto"), WatchId: 5})
	if r = w.recv(5 * time.Second); r.WatchId != 5 {
		t.Errorf("create id 5: %v", r)
	}
	w.create(&pb.WatchCreateRequest{Key: []byte("auto")})
	if r = w.recv(5 * time.Second); r.WatchId != 4 {
		t.Errorf("auto id after 0..3 and 5: %d, want 4", r.WatchId)
	}
	w.create(&pb.WatchCreateRequest{Key: []byte("auto")})
	if r = w.recv(5 * time.Second); r.WatchId != 6 {
		t.Errorf("auto id after 0..5: %d, want 6", r.WatchId)
	}

	// Cancel: answered with canceled for that id; an unknown id is ignored.
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 7}}})
	r = w.recv(5 * time.Second)
	if !r.Canceled || r.WatchId != 7 || r.Created {
		t.Errorf("cancel 7: %v", r)
	}
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 99}}})
	w.noResp("cancel of an unknown id", 300*time.Millisecond)
	mustPut(t, c, "a", "3")
	w.noResp("cancelled watch 7", 300*time.Millisecond)
	// The id of a cancelled watch can be used again.
	w.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	if r = w.recv(5 * time.Second); !r.Created || r.Canceled || r.WatchId != 7 {
		t.Errorf("re-create 7 after its cancel: %v", r)
	}
	// A progress request: watch_id -1, current revision.
	cur = currentRev(t, c)
	w.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
	if r = w.recv(5 * time.Second); r.WatchId != -1 || r.Created || r.Canceled || len(r.Events) != 0 || r.Header.GetRevision() != cur {
		t.Errorf("progress response: %v, want watch_id -1 at %d", r, cur)
	}
}

// TestWatchCreateRefused: create requests etcd refuses with created + canceled and watch_id
// -1: a negative start revision (reason: ErrCompacted's), and an empty range (key >= range_end,
// reason "mvcc: watcher range is empty").
func TestWatchCreateRefused(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	mustPut(t, c, "a", "1")
	t.Run("negative start revision", func(t *testing.T) {
		w := openRawWatch(t, s)
		w.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})
		r := w.recv(5 * time.Second)
		if !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != rpctypes.ErrCompacted.Error() {
			t.Errorf("start_revision -1: %v, want created+canceled, watch_id -1, reason %q", r, rpctypes.ErrCompacted.Error())
		}
	})
	t.Run("empty range", func(t *testing.T) {
		w := openRawWatch(t, s)
		w.create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
		r := w.recv(5 * time.Second)
		if !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != "mvcc: watcher range is empty" {
			t.Errorf("key b range_end a: %v, want created+canceled, watch_id -1, reason \"mvcc: watcher range is empty\"", r)
		}
		w.create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("b")})
		r = w.recv(5 * time.Second)
		if !r.Created || !r.Canceled || r.WatchId != -1 {
			t.Errorf("key b range_end b: %v, want created+canceled, watch_id -1", r)
		}
	})
}

// TestWatchFragment: with --max-request-bytes 1 MiB, one revision whose events (with
// prev_kv) exceed 1 MiB is split into several responses, Fragment set on all but the last,
// for a watch that asked for fragments; a watch that did not gets it whole.
func TestWatchFragment(t *testing.T) {
	const limit = 1048576
	s := startServer(t, serverOpts{args: []string{"--max-request-bytes", fmt.Sprint(limit)}})
	c := s.client(t)
	ctx := ctxT(t, 60*time.Second)
	const nkeys, size = 4, 200 * 1024 // one txn of 800 KiB: fits the request limit
	txn := func(round int) int64 {
		var ops []clientv3.Op
		for i := 0; i < nkeys; i++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("f/%d", i), strings.Repeat(string(rune('a'+round)), size)))
		}
		if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("txn of %d x %d bytes: %v", nkeys, size, err)
		}
		return mustGet(t, c, "f/0").Kvs[0].ModRevision
	}
	rev1 := txn(0)

	// Live watches, created after the first txn: the second one (with prev_kv, about 1.6 MiB
	// of events in one revision) is what they see.
	live := map[string]*rawWatch{}
	for _, name := range []string{"fragment", "whole"} {
		w := openRawWatch(t, s)
		w.create(&pb.WatchCreateRequest{Key: []byte("f/"), RangeEnd: []byte("f0"), PrevKv: true, Fragment: name == "fragment"})
		if r := w.recv(5 * time.Second); !r.Created {
			t.Fatalf("create: %v", r)
		}
		live[name] = w
	}
	rev2 := txn(1)

	check := func(what string, w *rawWatch, fragment bool) {
		t.Helper()
		var resps []*pb.WatchResponse
		var evs []*mvccpb.Event
		for len(evs) < nkeys {
			r := w.recv(10 * time.Second)
			if len(r.Events) == 0 {
				continue
			}
			resps = append(resps, r)
			evs = append(evs, r.Events...)
		}
		if len(evs) != nkeys {
			t.Errorf("%s: %d events, want %d", what, len(evs), nkeys)
			return
		}
		for i, e := range evs {
			if string(e.Kv.Key) != fmt.Sprintf("f/%d", i) || e.Kv.ModRevision != rev2 || len(e.Kv.Value) != size ||
				e.PrevKv == nil || e.PrevKv.ModRevision != rev1 || len(e.PrevKv.Value) != size {
				t.Errorf("%s: event %d: key %s mod %d value %d bytes prev %v, want f/%d at %d with prev_kv at %d", what, i, e.Kv.Key, e.Kv.ModRevision, len(e.Kv.Value), e.PrevKv != nil, i, rev2, rev1)
			}
		}
		if !fragment {
			if len(resps) != 1 || resps[0].Fragment {
				t.Errorf("%s: %d responses (fragment %v), want all %d events in one response", what, len(resps), resps[0].Fragment, nkeys)
			}
			return
		}
		if len(resps) < 2 {
			t.Errorf("%s: %d response(s) of about %d bytes, want fragments below %d bytes", what, len(resps), resps[0].Size(), limit)
			return
		}
		for i, r := range resps {
			last := i == len(resps)-1
			if r.Fragment == last {
				t.Errorf("%s: response %d of %d has Fragment=%v", what, i+1, len(resps), r.Fragment)
			}
			if len(r.Events) > 1 && r.Size() >= limit {
				t.Errorf("%s: fragment %d is %d bytes with %d events, want < %d", what, i+1, r.Size(), len(r.Events), limit)
			}
			if r.Header.GetRevision() != rev2 {
				t.Errorf("%s: fragment %d header revision %d, want %d", what, i+1, r.Header.GetRevision(), rev2)
			}
		}
	}
	check("live, fragment", live["fragment"], true)
	check("live, whole", live["whole"], false)

	// The same from history (a watch from rev2).
	for _, frag := range []bool{true, false} {
		w := openRawWatch(t, s)
		w.create(&pb.WatchCreateRequest{Key: []byte("f/"), RangeEnd: []byte("f0"), PrevKv: true, Fragment: frag, StartRevision: rev2})
		if r := w.recv(5 * time.Second); !r.Created {
			t.Fatalf("create: %v", r)
		}
		check(fmt.Sprintf("replay, fragment=%v", frag), w, frag)
	}

	// clientv3 reassembles fragments: one WatchResponse with every event.
	wch := c.Watch(ctx, "f/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithFragment(), clientv3.WithRev(rev2))
	select {
	case r := <-wch:
		if len(r.Events) != nkeys {
			t.Errorf("clientv3 WithFragment: %d events in the first response, want %d", len(r.Events), nkeys)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("clientv3 WithFragment: no response")
	}
}
