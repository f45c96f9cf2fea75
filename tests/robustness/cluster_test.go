package robustness

// Launching etcd-fdb through etcd's own e2e framework: the robustness packages take an
// *e2e.EtcdProcessCluster and only use its members (e2e.EtcdProcess: endpoints, Kill, Wait,
// Start, IsRunning, Config). An e2e.EtcdServerProcess runs any binary with any arguments,
// so a one-member cluster whose process is etcd-fdb is all the upstream code needs: its
// KillFailpoint then sends SIGKILL to etcd-fdb and starts it again on the same data dir.

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"go.etcd.io/etcd/pkg/v3/expect"
	"go.etcd.io/etcd/tests/v3/framework/e2e"
)

// etcdFdbReadyLine is what etcd-fdb logs once it serves client requests. The e2e framework
// waits for etcd's "ready to serve client requests" (e2e.EtcdServerReadyLines, a package
// variable meant to be set by tests); etcd-fdb's line says the same thing in other words.
const etcdFdbReadyLine = " ready: name="

// sanitizerVariables are passed on to etcd-fdb: the e2e framework hands a server only the
// ETCD_*, ETCDCTL_*, EXPECT_* and PATH variables of the test's environment.
var sanitizerVariables = []string{"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"}

func etcdFdbBinary(t *testing.T) string {
	bin := os.Getenv("ETCD_FDB_BIN")
	if bin == "" {
		t.Skip("ETCD_FDB_BIN is not set (ctest sets it to the etcd-fdb of the build)")
	}
	return bin
}

// freePort returns a TCP port nobody listens on right now.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newEtcdFdbCluster starts one etcd-fdb process on a fresh data directory and returns it as
// a one-member e2e cluster. faults is the value of ETCD_FDB_FAULTS ("" for none). The
// process is killed when the test ends.
func newEtcdFdbCluster(ctx context.Context, t *testing.T, lg *zap.Logger, faults string) *e2e.EtcdProcessCluster {
	bin := etcdFdbBinary(t)
	e2e.EtcdServerReadyLines = []string{etcdFdbReadyLine}

	cfg := e2e.NewConfig(e2e.WithClusterSize(1), e2e.WithBasePort(freePort(t)))
	cfg.Logger = lg
	// The member configuration of etcd (name, client URL, a data dir under t.TempDir()),
	// with etcd-fdb's binary and flags instead of etcd's.
	member := cfg.EtcdServerProcessConfig(t, 0)
	member.ExecPath = bin
	member.Args = []string{
		"--name=" + member.Name,
		"--data-dir=" + member.DataDirPath,
		"--listen-client-urls=" + member.ClientURL,
		"--advertise-client-urls=" + member.ClientURL,
		// As upstream's scenarios (e2e.WithExperimentalWatchProcessNotifyInterval).
		"--experimental-watch-progress-notify-interval=100ms",
	}
	member.EnvVars = map[string]string{"ETCD_FDB_FAULTS": faults}
	for _, name := range sanitizerVariables {
		if v, ok := os.LookupEnv(name); ok {
			member.EnvVars[name] = v
		}
	}
	proc, err := e2e.NewEtcdServerProcess(t, member)
	if err != nil {
		t.Fatal(err)
	}
	clus := &e2e.EtcdProcessCluster{Cfg: cfg, Procs: []e2e.EtcdProcess{proc}}
	if err := proc.Start(ctx); err != nil {
		t.Fatalf("starting etcd-fdb: %v", err)
	}
	t.Cleanup(func() {
		if proc.IsRunning() {
			_ = proc.Kill()
		}
		_ = proc.Close()
	})
	return clus
}

// serverOutput returns what the current etcd-fdb process printed (nothing if it has been
// found exited: the framework then drops it, and its Logs panics).
func serverOutput(proc e2e.EtcdProcess) (lines []string) {
	defer func() { _ = recover() }()
	return proc.Logs().Lines()
}

// sanitizerReport returns the first line of a sanitizer report in a server's output, or "".
func sanitizerReport(lines []string) string {
	for _, l := range lines {
		if strings.Contains(l, "Sanitizer") || strings.Contains(l, "runtime error:") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// stopCleanly stops etcd-fdb with SIGTERM and fails the test unless it exits 0 without a
// sanitizer report (in the sanitizer build a leak makes the exit code non-zero).
func stopCleanly(t *testing.T, clus *e2e.EtcdProcessCluster) {
	for _, proc := range clus.Procs {
		name := proc.Config().Name
		if !proc.IsRunning() {
			t.Errorf("etcd-fdb %s is not running at the end of the scenario", name)
			continue
		}
		logs := proc.Logs()
		if err := proc.Stop(); err != nil {
			t.Errorf("stopping etcd-fdb %s: %v", name, err)
		}
		if report := sanitizerReport(logs.Lines()); report != "" {
			t.Errorf("etcd-fdb %s: %s", name, report)
		}
		if p, ok := logs.(*expect.ExpectProcess); ok {
			if code, err := p.ExitCode(); err != nil || code != 0 {
				t.Errorf("etcd-fdb %s exited with code %d (%v) after SIGTERM; its output:\n%s",
					name, code, err, strings.Join(lastLines(logs.Lines(), 40), ""))
			}
		}
	}
}

func lastLines(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}
