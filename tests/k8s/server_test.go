// Package k8s runs Kubernetes' own storage conformance suite (k8s.io/apiserver's
// pkg/storage/testing, the RunTest* functions that pkg/storage/etcd3's tests call) against
// etcd-fdb: the real etcd3 storage backend of kube-apiserver, over etcd's own Go client,
// talking to an etcd-fdb process started for each test (fresh data directory, free
// loopback port). The binary comes from ETCD_FDB_BIN (ctest sets it, see k8s.cmake).
// README.md lists what runs and every deliberate difference.
package k8s

import (
	"context"
	"fmt"
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
)

// etcdFDB is one etcd-fdb process owned by a test.
type etcdFDB struct {
	t        testing.TB
	cmd      *exec.Cmd
	endpoint string // http://127.0.0.1:port
	logPath  string
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopping chan struct{} // closed when the test stops the server
}

type serverConfig struct {
	// progressNotifyInterval, when non-zero, is passed as
	// --experimental-watch-progress-notify-interval (etcd's WatchProgressNotifyInterval).
	progressNotifyInterval time.Duration
}

func etcdFDBBinary(t testing.TB) string {
	bin := os.Getenv("ETCD_FDB_BIN")
	if bin == "" {
		t.Fatal("ETCD_FDB_BIN is not set: point it at the etcd-fdb binary (ctest sets it)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("ETCD_FDB_BIN: %v", err)
	}
	return bin
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startEtcdFDB starts a fresh etcd-fdb and waits until it serves reads. When the test ends
// it is stopped with SIGTERM and must exit 0 (registered first, so it runs after the
// cleanups of the clients and stores built on it).
func startEtcdFDB(t testing.TB, cfg serverConfig) *etcdFDB {
	t.Helper()
	bin := etcdFDBBinary(t)
	dir := t.TempDir()
	var lastErr error
	start := time.Now()
	for attempt := 0; attempt < 3; attempt++ { // a free port can be taken between probe and bind
		s, err := tryStartEtcdFDB(t, bin, dir, attempt, cfg)
		if err == nil {
			t.Logf("etcd-fdb serving on %s after %v", s.endpoint, time.Since(start).Round(time.Millisecond))
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("etcd-fdb did not start: %v", lastErr)
	return nil
}

func tryStartEtcdFDB(t testing.TB, bin, dir string, attempt int, cfg serverConfig) (*etcdFDB, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	s := &etcdFDB{
		t:        t,
		endpoint: fmt.Sprintf("http://127.0.0.1:%d", port),
		logPath:  filepath.Join(dir, fmt.Sprintf("etcd-fdb-%d.log", attempt)),
		exited:   make(chan struct{}),
		stopping: make(chan struct{}),
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	args := []string{
		"--data-dir", filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
		"--listen-client-urls", s.endpoint,
		"--log-level", "warn",
	}
	if cfg.progressNotifyInterval > 0 {
		args = append(args, "--experimental-watch-progress-notify-interval",
			fmt.Sprintf("%dms", cfg.progressNotifyInterval.Milliseconds()))
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	if err := s.waitReady(20 * time.Second); err != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
		return nil, fmt.Errorf("%v\n%s", err, s.logTail())
	}
	return s, nil
}

func (s *etcdFDB) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("etcd-fdb exited early: %v", s.waitErr)
		default:
		}
		// Dial the port first: a client whose first connection attempt is refused waits
		// for gRPC's reconnect backoff (a second) before trying again.
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.endpoint, "http://"), time.Second)
		if err != nil {
			lastErr = err
			time.Sleep(20 * time.Millisecond)
			continue
		}
		conn.Close()
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

// died is closed if the server exits before the test stops it (a crash).
func (s *etcdFDB) died() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		select {
		case <-s.exited:
			select {
			case <-s.stopping:
			default:
				close(ch)
			}
		case <-s.stopping:
		}
	}()
	return ch
}

func (s *etcdFDB) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return "---- etcd-fdb log (tail) ----\n" + string(b)
}

// keepLog copies the server's log to $ETCD_FDB_KEEP_LOGS (a directory) when that is set.
func (s *etcdFDB) keepLog() {
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
func (s *etcdFDB) stop() {
	s.stopOnce.Do(func() {
		t := s.t
		defer s.keepLog()
		close(s.stopping)
		select {
		case <-s.exited:
			t.Errorf("etcd-fdb exited before the test stopped it: %v\n%s", s.waitErr, s.logTail())
			return
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		stopStart := time.Now()
		defer func() { t.Logf("etcd-fdb stopped in %v", time.Since(stopStart).Round(time.Millisecond)) }()
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-s.exited:
			case <-time.After(5 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
			}
			t.Errorf("etcd-fdb did not exit within 30 s of SIGTERM\n%s", s.logTail())
			return
		}
		if s.waitErr != nil {
			t.Errorf("etcd-fdb exited with %v after SIGTERM\n%s", s.waitErr, s.logTail())
		}
	})
}
