package tests

// A client may half-close a bidirectional stream (CloseSend) as soon as it has sent its
// requests and still read every answer: python-etcd3's Lease.refresh() sends one
// LeaseKeepAliveRequest on a stream it closes at once. etcd answers every request it read;
// on the Watch stream it also goes on sending events until the call ends.

import (
	"io"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestLeaseKeepAliveHalfClose: a keepalive followed at once by CloseSend is answered.
func TestLeaseKeepAliveHalfClose(t *testing.T) {
	s := startServer(t, serverOpts{})
	lc := pb.NewLeaseClient(s.conn(t))
	g, err := lc.LeaseGrant(ctxT(t, 10*time.Second), &pb.LeaseGrantRequest{TTL: 30})
	if err != nil {
		t.Fatalf("LeaseGrant: %v", err)
	}
	st, err := lc.LeaseKeepAlive(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("LeaseKeepAlive: %v", err)
	}
	if err := st.Send(&pb.LeaseKeepAliveRequest{ID: g.ID}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	r, err := st.Recv()
	if err == io.EOF {
		t.Fatal("LeaseKeepAlive ended with no response after the client's half-close")
	}
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if r.ID != g.ID || r.TTL != 30 {
		t.Errorf("keepalive response id %x TTL %d, want %x and 30", r.ID, r.TTL, g.ID)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Errorf("after the only response: %v, want EOF", err)
	}
}

// TestWatchHalfClose: a watch created on a stream the client then half-closes reports its
// creation and later events.
func TestWatchHalfClose(t *testing.T) {
	s := startServer(t, serverOpts{})
	c := s.client(t)
	st, err := pb.NewWatchClient(s.conn(t)).Watch(ctxT(t, 20*time.Second))
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
		CreateRequest: &pb.WatchCreateRequest{Key: []byte("hc")}}}
	if err := st.Send(req); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	r, err := st.Recv()
	if err == io.EOF {
		t.Fatal("Watch ended without the created response after the client's half-close")
	}
	if err != nil || !r.Created {
		t.Fatalf("first response %v, %v: want created", r, err)
	}
	mustPut(t, c, "hc", "v")
	r, err = st.Recv()
	if err == io.EOF {
		t.Fatal("Watch ended after the created response, before the event, after the client's half-close")
	}
	if err != nil || len(r.Events) != 1 || string(r.Events[0].Kv.Value) != "v" {
		t.Fatalf("event response %v, %v: want the PUT of hc", r, err)
	}
}
