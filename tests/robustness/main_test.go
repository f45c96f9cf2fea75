// Package robustness runs etcd's robustness tests (go.etcd.io/etcd/tests/v3/robustness, the
// version in go.mod) against etcd-fdb: upstream's traffic, failpoint, watch-collection,
// report and validation packages, with etcd-fdb launched through upstream's e2e framework
// (cluster_test.go). What is adapted, and why, is in README.md.
package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"

	"go.etcd.io/etcd/tests/v3/framework/e2e"
	"go.etcd.io/etcd/tests/v3/robustness/client"
	"go.etcd.io/etcd/tests/v3/robustness/failpoint"
	"go.etcd.io/etcd/tests/v3/robustness/identity"
	"go.etcd.io/etcd/tests/v3/robustness/model"
	"go.etcd.io/etcd/tests/v3/robustness/report"
	"go.etcd.io/etcd/tests/v3/robustness/traffic"
	"go.etcd.io/etcd/tests/v3/robustness/validate"
)

// Settings, from the environment:
//
//	ROBUSTNESS_DURATION    traffic time per scenario (default 20s)
//	ROBUSTNESS_FAULT_SEED  seed of ETCD_FDB_FAULTS in the StoreFaults scenarios (default: random, logged)
//	RESULTS_DIR            where reports go (default: a new directory under $TMPDIR)
//	PERSIST_RESULTS        keep the report of passing scenarios too
//	ROBUSTNESS_KNOWN_BUGS  run the scenarios skipped because of a known etcd-fdb bug
const (
	defaultDuration     = 20 * time.Second
	faultPermille       = 100
	linearizeTimeout    = 3 * time.Minute
	waitBeforeFailpoint = 3 * time.Second
	waitAfterFailpoint  = 3 * time.Second
)

type scenario struct {
	name    string
	traffic traffic.Traffic
	profile traffic.Profile
	faults  bool // ETCD_FDB_FAULTS on (and failpoint storeFaults), or kill -9 (killRepeatedly)
	watch   client.WatchConfig
	bug     string // a known etcd-fdb bug that makes this scenario fail: skipped, named
}

// knownBugCompactTimeout: under the store's faults most Compact calls answer "etcdserver:
// request timed out" although the compaction was applied. mvcc_compact (mvcc/mvcc.c) clears
// the change log in a transaction committed outside the retry loop (kv_transact), so an
// injected not_committed (1020), transaction_too_old (1007) or commit_unknown_result (1021,
// that transaction has no automatic idempotency) of that last commit fails the call. Each
// such answer is an operation of unknown outcome; with dozens of them the model's set of
// possible states doubles with each and porcupine does not finish in minutes.
const knownBugCompactTimeout = "Compact answers \"request timed out\" under store faults although applied " +
	"(mvcc_compact's change-log clear is committed outside kv_transact); set ROBUSTNESS_KNOWN_BUGS=1 to run"

// Upstream's traffic (scenarios.Exploratory): the Kubernetes traffic (KubernetesHighTraffic
// with kill -9, KubernetesLowTraffic under store faults) and the etcd traffic with deletes
// and leases (EtcdTrafficDeleteLeases). Under store faults, compaction is off
// (Profile.WithoutCompaction, as upstream's LazyFS scenarios) because of
// knownBugCompactTimeout; the same scenarios with compaction are kept, skipped.
func scenarios() []scenario {
	k8s := traffic.Kubernetes
	etcd := compactOnWriteRevisions{traffic.EtcdPutDeleteLease}
	progress := client.WatchConfig{RequestProgress: true}
	return []scenario{
		{name: "Kubernetes", traffic: k8s, profile: traffic.HighTrafficProfile},
		{name: "Etcd", traffic: etcd, profile: traffic.LowTraffic, watch: progress},
		{name: "Kubernetes", traffic: k8s, profile: traffic.LowTraffic.WithoutCompaction(), faults: true},
		{name: "Etcd", traffic: etcd, profile: traffic.LowTraffic.WithoutCompaction(), faults: true, watch: progress},
		{name: "Kubernetes", traffic: k8s, profile: traffic.LowTraffic, faults: true, bug: knownBugCompactTimeout},
		{name: "Etcd", traffic: etcd, profile: traffic.LowTraffic, faults: true, watch: progress, bug: knownBugCompactTimeout},
	}
}

func TestRobustness(t *testing.T) {
	etcdFdbBinary(t)
	duration := defaultDuration
	if v := os.Getenv("ROBUSTNESS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ROBUSTNESS_DURATION: %v", err)
		}
		duration = d
	}
	duration = max(duration, waitBeforeFailpoint+waitAfterFailpoint+time.Second)
	if os.Getenv("RESULTS_DIR") == "" {
		dir, err := os.MkdirTemp("", "etcd-fdb-robustness-")
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("RESULTS_DIR", dir)
		t.Cleanup(func() { removeIfEmpty(dir) })
	}
	for _, s := range scenarios() {
		injection := duration - waitBeforeFailpoint - waitAfterFailpoint
		var fp failpoint.Failpoint = killRepeatedly{count: max(1, int(injection/(3*time.Second))), interval: 3 * time.Second}
		faults := ""
		if s.faults {
			fp = storeFaults{duration: injection}
			seed := rand.Int63n(1 << 31)
			if v := os.Getenv("ROBUSTNESS_FAULT_SEED"); v != "" {
				fmt.Sscan(v, &seed)
			}
			faults = fmt.Sprintf("%d:%d", seed, faultPermille)
		}
		name := s.name + "/" + fp.Name()
		if s.faults && !s.profile.ForbidCompaction {
			name += "WithCompaction"
		}
		t.Run(name, func(t *testing.T) {
			if s.bug != "" && os.Getenv("ROBUSTNESS_KNOWN_BUGS") == "" {
				t.Skip("known bug: " + s.bug)
			}
			if faults != "" {
				t.Logf("ETCD_FDB_FAULTS=%s (ROBUSTNESS_FAULT_SEED=%s reruns these faults)", faults, strings.Split(faults, ":")[0])
			}
			testRobustness(t, s, fp, faults)
		})
	}
}

// testRobustness is upstream's testRobustness (tests/robustness/main_test.go, not
// importable), with the history made dense and the persisted requests rebuilt before the
// validation (revisions_test.go).
func testRobustness(t *testing.T, s scenario, fp failpoint.Failpoint, faults string) {
	lg := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	ctx := context.Background()
	clus := newEtcdFdbCluster(ctx, t, lg, faults)
	r := report.TestReport{Logger: lg, Cluster: clus}
	panicked := true
	defer func() {
		if t.Failed() || panicked {
			t.Logf("report (client histories with dense revisions, porcupine's history.html, server data and log) in %s", os.Getenv("RESULTS_DIR"))
		}
		r.Report(t, panicked)
	}()

	start := time.Now()
	reports := runScenario(ctx, t, s, fp, lg, clus)
	serverLog := clus.Procs[0].Logs().Lines()
	stopCleanly(t, clus)
	writeFile(t, filepath.Join(clus.Procs[0].Config().DataDirPath, "etcd-fdb.log"), []byte(strings.Join(serverLog, "")))

	space := newRevisionSpace(reports)
	dense, errs := denseHistory(reports, space)
	r.Client = dense
	for _, err := range errs {
		t.Error(err)
	}
	revisions, _ := json.Marshal(space.writes)
	writeFile(t, filepath.Join(clus.Procs[0].Config().DataDirPath, "revisions.json"), revisions)
	persisted, err := persistedRequests(dense, space)
	if err != nil {
		t.Fatalf("rebuilding the applied requests: %v", err)
	}
	trafficTime := time.Since(start)

	validateStart := time.Now()
	cfg := validate.Config{ExpectRevisionUnique: s.traffic.ExpectUniqueRevision()}
	r.Visualize = validate.ValidateAndReturnVisualize(t, lg, cfg, dense, persisted, linearizeTimeout)
	// One line per scenario on the standard output, which go test shows (ctest's log).
	fmt.Printf("%s: %d operations (%d failed), %d watch events, %d revisions, %d applied requests; traffic %v, validation %v\n",
		t.Name(), countOperations(reports), countFailed(reports), countEvents(reports), len(space.writes), len(persisted),
		trafficTime.Round(time.Second), time.Since(validateStart).Round(100*time.Millisecond))
	panicked = false
}

// runScenario is upstream's runScenario (tests/robustness/main_test.go): traffic, the
// failpoint and the watch of the whole keyspace run together.
func runScenario(ctx context.Context, t *testing.T, s scenario, fp failpoint.Failpoint, lg *zap.Logger, clus *e2e.EtcdProcessCluster) []report.ClientReport {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := errgroup.Group{}
	var operationReport, watchReport, failpointClientReport []report.ClientReport
	failpointInjected := make(chan report.FailpointInjection, 1)
	baseTime := time.Now()
	ids := identity.NewIDProvider()
	g.Go(func() error {
		defer close(failpointInjected)
		time.Sleep(waitBeforeFailpoint)
		fr, err := failpoint.Inject(ctx, t, lg, clus, fp, baseTime, ids)
		if err != nil {
			t.Error(err)
			cancel()
		}
		time.Sleep(waitAfterFailpoint)
		if fr != nil {
			failpointInjected <- fr.FailpointInjection
			failpointClientReport = fr.Client
		}
		return nil
	})
	maxRevisionChan := make(chan int64, 1)
	g.Go(func() error {
		defer close(maxRevisionChan)
		operationReport = traffic.SimulateTraffic(ctx, t, lg, clus, s.profile, s.traffic, failpointInjected, baseTime, ids)
		maxRevision := operationsMaxRevision(operationReport)
		maxRevisionChan <- maxRevision
		lg.Info("Finished simulating traffic", zap.Int64("max-revision", maxRevision))
		return nil
	})
	g.Go(func() error {
		watchReport = client.CollectClusterWatchEvents(ctx, t, clus, maxRevisionChan, s.watch, baseTime, ids)
		return nil
	})
	g.Wait()
	return append(operationReport, append(failpointClientReport, watchReport...)...)
}

func operationsMaxRevision(reports []report.ClientReport) int64 {
	var maxRevision int64
	for _, r := range reports {
		for _, op := range r.KeyValue {
			maxRevision = max(maxRevision, op.Output.(model.MaybeEtcdResponse).Revision)
		}
	}
	return maxRevision
}

func countOperations(reports []report.ClientReport) (n int) {
	for _, r := range reports {
		n += len(r.KeyValue)
	}
	return n
}

func countFailed(reports []report.ClientReport) (n int) {
	for _, r := range reports {
		for _, op := range r.KeyValue {
			if op.Output.(model.MaybeEtcdResponse).Error != "" {
				n++
			}
		}
	}
	return n
}

func countEvents(reports []report.ClientReport) (n int) {
	for _, r := range reports {
		n += r.WatchEventCount()
	}
	return n
}

func writeFile(t *testing.T, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Error(err)
	}
}

func removeIfEmpty(dir string) {
	entries, err := os.ReadDir(dir)
	if err == nil && len(entries) == 0 {
		os.Remove(dir)
	}
}
