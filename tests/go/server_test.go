// Package tests drives an etcd-fdb process through etcd's own Go client (clientv3) and
// through raw gRPC (etcdserverpb), asserting etcd's behaviour.
//
// Every test starts its own server: a fresh data directory, a free loopback port. The
// binary comes from ETCD_FDB_BIN (ctest sets it, see go.cmake).
package tests

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// server is one etcd-fdb process owned by a test.
type server struct {
	t        testing.TB
	cmd      *exec.Cmd
	addr     string // host:port
	endpoint string // http://host:port
	logPath  string
	bin      string
	dataDir  string
	opts     serverOpts
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
}

type serverOpts struct {
	args []string // extra flags
	env  []string // extra environment (KEY=VALUE)
}

func binary(t testing.TB) string {
	bin := os.Getenv("ETCD_FDB_BIN")
	if bin == "" {
		t.Fatal("ETCD_FDB_BIN is not set: point it at the etcd-fdb binary (ctest sets it)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("ETCD_FDB_BIN: %v", err)
	}
	return bin
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer starts etcd-fdb and waits until it answers Status. It is stopped (SIGTERM,
// exit code 0 required) when the test ends, after the clients the test made are closed.
func startServer(t testing.TB, opts serverOpts) *server {
	t.Helper()
	bin := binary(t)
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := tryStart(t, bin, dir, attempt, opts)
		if err == nil {
			t.Cleanup(func() { s.stop() })
			return s
		}
		lastErr = err
	}
	t.Fatalf("etcd-fdb did not start: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, bin, dir string, attempt int, opts serverOpts) (*server, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &server{
		t:        t,
		addr:     addr,
		endpoint: "http://" + addr,
		logPath:  filepath.Join(dir, fmt.Sprintf("etcd-fdb-%d.log", attempt)),
		bin:      bin,
		dataDir:  filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
		opts:     opts,
		exited:   make(chan struct{}),
	}
	return s, s.launch()
}

// restart stops the server (SIGTERM) and starts it again on the same port and data
// directory, as an operator restarting etcd under its clients would.
func (s *server) restart(t testing.TB) *server {
	t.Helper()
	s.stop()
	n := &server{t: t, addr: s.addr, endpoint: s.endpoint, logPath: s.logPath + ".restarted",
		bin: s.bin, dataDir: s.dataDir, opts: s.opts, exited: make(chan struct{})}
	if err := n.launch(); err != nil {
		t.Fatalf("etcd-fdb did not restart: %v", err)
	}
	t.Cleanup(func() { n.stop() })
	return n
}

// launch starts the process and waits until it serves.
func (s *server) launch() error {
	opts := s.opts
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	args := append([]string{
		"--data-dir", s.dataDir,
		"--listen-client-urls", s.endpoint,
	}, opts.args...)
	s.cmd = exec.Command(s.bin, args...)
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	s.cmd.Env = append(os.Environ(), opts.env...)
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if err := s.waitReady(15 * time.Second); err != nil {
		s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("%v\n%s", err, s.logTail())
	}
	return nil
}

func (s *server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("etcd-fdb exited early: %v", s.waitErr)
		default:
		}
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{s.endpoint},
			DialTimeout: time.Second,
			Logger:      zap.NewNop(),
		})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = c.Status(ctx, s.endpoint)
			if err == nil {
				_, err = c.Get(ctx, "readiness-probe")
			}
			cancel()
			c.Close()
			if err == nil {
				return nil
			}
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", limit, lastErr)
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return "---- etcd-fdb log (tail) ----\n" + string(b)
}

// keepLog copies the server's log to $ETCD_FDB_KEEP_LOGS (a directory) when that is set.
func (s *server) keepLog() {
	dir := os.Getenv("ETCD_FDB_KEEP_LOGS")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(s.t.Name()) + ".log"
	_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
}

// stop sends SIGTERM and requires a clean exit (code 0) within 30 s.
func (s *server) stop() {
	s.stopOnce.Do(func() {
		t := s.t
		defer s.keepLog()
		select {
		case <-s.exited:
			t.Errorf("etcd-fdb exited before the test stopped it: %v\n%s", s.waitErr, s.logTail())
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
				s.cmd.Process.Kill()
				<-s.exited
			}
			t.Errorf("etcd-fdb did not exit within 30 s of SIGTERM\n%s", s.logTail())
			return
		}
		if code := s.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("etcd-fdb exit status after SIGTERM: %v (want 0)\n%s", s.cmd.ProcessState, s.logTail())
		} else if t.Failed() {
			t.Log(s.logTail())
		}
	})
}

// client returns a clientv3 client closed when the test ends (before the server stops).
func (s *server) client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{s.endpoint},
		DialTimeout:        5 * time.Second,
		Logger:             zap.NewNop(),
		MaxCallRecvMsgSize: math.MaxInt32,
	})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// conn returns a raw gRPC connection closed when the test ends.
func (s *server) conn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(s.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ---- small helpers shared by the tests ----

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustPut(t testing.TB, c *clientv3.Client, k, v string, opts ...clientv3.OpOption) *clientv3.PutResponse {
	t.Helper()
	r, err := c.Put(ctxT(t, 10*time.Second), k, v, opts...)
	if err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
	return r
}

func mustDelete(t testing.TB, c *clientv3.Client, k string, opts ...clientv3.OpOption) *clientv3.DeleteResponse {
	t.Helper()
	r, err := c.Delete(ctxT(t, 10*time.Second), k, opts...)
	if err != nil {
		t.Fatalf("Delete(%q): %v", k, err)
	}
	return r
}

func mustGet(t testing.TB, c *clientv3.Client, k string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	r, err := c.Get(ctxT(t, 10*time.Second), k, opts...)
	if err != nil {
		t.Fatalf("Get(%q): %v", k, err)
	}
	return r
}

func currentRev(t testing.TB, c *clientv3.Client) int64 {
	t.Helper()
	return mustGet(t, c, "\x00any").Header.Revision
}

func isErr(err, want error) bool {
	return err != nil && (errors.Is(err, want) || err.Error() == want.Error())
}
