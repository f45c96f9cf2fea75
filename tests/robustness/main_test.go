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
	"slices"
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
//	ROBUSTNESS_FAULT_PERMILLE  their rate of faults (default 100)
//	RESULTS_DIR            where reports go (default: a new directory under $TMPDIR)
//	PERSIST_RESULTS        keep the report of passing scenarios too
//	ROBUSTNESS_KNOWN_BUGS  run the scenarios skipped because of a known etcd-fdb bug
//	ROBUSTNESS_EXPLORE     run the exploratory scenarios too
const (
	defaultDuration     = 20 * time.Second
	faultPermille       = 100
	linearizeTimeout    = 3 * time.Minute
	waitBeforeFailpoint = 3 * time.Second
	waitAfterFailpoint  = 3 * time.Second
	scenarioGrace       = time.Minute // beyond the traffic time, before the scenario is stopped
)

type scenario struct {
	name    string // traffic/failure
	traffic traffic.Traffic
	profile traffic.Profile
	kill    bool // kill -9 and restart (killRepeatedly) during the failure window
	faults  bool // ETCD_FDB_FAULTS during the whole run
	watch   client.WatchConfig
	explore bool   // run only with ROBUSTNESS_EXPLORE=1 (not in ctest, for time)
}

// Upstream's traffic (scenarios.Exploratory): the Kubernetes traffic (KubernetesHighTraffic
// with kill -9, KubernetesLowTraffic under store faults) and the etcd traffic with deletes
// and leases (EtcdTrafficDeleteLeases). Under store faults, compaction is off
// (Profile.WithoutCompaction, as upstream's LazyFS scenarios) because of
// knownBugCompactTimeout; the same scenarios with compaction are kept, skipped. The
// exploratory ones add upstream's other traffic (EtcdHighTraffic, KubernetesCreateDelete,
// EtcdDelete) and kills under store faults.
func scenarios() []scenario {
	k8s := traffic.Kubernetes
	etcd := compactOnWriteRevisions{Traffic: traffic.EtcdPutDeleteLease}
	progress := client.WatchConfig{RequestProgress: true}
	low, high := traffic.LowTraffic, traffic.HighTrafficProfile
	return []scenario{
		{name: "Kubernetes/Kill", traffic: k8s, profile: high, kill: true},
		{name: "Etcd/Kill", traffic: etcd, profile: low, kill: true, watch: progress},
		{name: "Kubernetes/StoreFaultsWithCompaction", traffic: k8s, profile: low, faults: true},
		{name: "Etcd/StoreFaultsWithCompaction", traffic: etcd, profile: low, faults: true, watch: progress},
		{name: "Kubernetes/StoreFaults", traffic: k8s, profile: low.WithoutCompaction(), faults: true, explore: true},
		{name: "Etcd/StoreFaults", traffic: etcd, profile: low.WithoutCompaction(), faults: true, watch: progress, explore: true},

		// etcd's high traffic with 5 % puts of 32 KiB and no kill: the whole-keyspace watch
		// stream passes 16 MiB within the run.
		{name: "EtcdPut/StoreFaults", traffic: compactOnWriteRevisions{Traffic: traffic.EtcdPut}, profile: high.WithoutCompaction(), faults: true, explore: true},

		{name: "EtcdPut/Kill", traffic: compactOnWriteRevisions{Traffic: traffic.EtcdPut}, profile: high, kill: true, explore: true},
		// Profiles of upstream's regression scenarios for these traffics (Issue19179, Issue18089):
		// with 40-50 % deletes, of unknown outcome when the kill interrupts them, porcupine
		// needs minutes for a high-traffic history.
		{name: "KubernetesCreateDelete/Kill", traffic: traffic.KubernetesCreateDelete, kill: true, explore: true,
			profile: traffic.Profile{MinimalQPS: 50, MaximalQPS: 100, BurstableQPS: 100, ClientCount: 8, MaxNonUniqueRequestConcurrency: 3}},
		{name: "EtcdDelete/Kill", traffic: compactOnWriteRevisions{Traffic: traffic.EtcdDelete}, profile: low.WithCompactionPeriod(100 * time.Millisecond), kill: true, explore: true},
		{name: "Kubernetes/KillWithStoreFaults", traffic: k8s, profile: low.WithoutCompaction(), kill: true, faults: true, explore: true},
		{name: "Etcd/KillWithStoreFaults", traffic: etcd, profile: low.WithoutCompaction(), kill: true, faults: true, watch: progress, explore: true},
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
		t.Run(s.name, func(t *testing.T) {
			if s.explore && os.Getenv("ROBUSTNESS_EXPLORE") == "" {
				t.Skip("exploratory: set ROBUSTNESS_EXPLORE=1 to run")
			}
			faults := ""
			if s.faults {
				seed := rand.Int63n(1 << 31)
				if v := os.Getenv("ROBUSTNESS_FAULT_SEED"); v != "" {
					fmt.Sscan(v, &seed)
				}
				permille := faultPermille
				if v := os.Getenv("ROBUSTNESS_FAULT_PERMILLE"); v != "" {
					fmt.Sscan(v, &permille)
				}
				faults = fmt.Sprintf("%d:%d", seed, permille)
				t.Logf("ETCD_FDB_FAULTS=%s (ROBUSTNESS_FAULT_SEED=%d reruns these faults)", faults, seed)
			}
			testRobustness(t, s, faults, duration)
		})
	}
}

// testRobustness is upstream's testRobustness (tests/robustness/main_test.go, not
// importable), with the history made dense and the persisted requests rebuilt before the
// validation (revisions_test.go).
func testRobustness(t *testing.T, s scenario, faults string, duration time.Duration) {
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
	// Upstream waits without limit for the watcher to receive the last write; a watch that
	// stalls fails the scenario instead ("Client didn't collect all events").
	runCtx, cancel := context.WithTimeout(ctx, duration+scenarioGrace)
	reports := runScenario(runCtx, t, s, duration-waitBeforeFailpoint-waitAfterFailpoint, lg, clus)
	cancel()
	serverLog := serverOutput(clus.Procs[0])
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
// failpoint and the watch of the whole keyspace run together; the witness watches too.
// injection is the time of the failure window.
func runScenario(ctx context.Context, t *testing.T, s scenario, injection time.Duration, lg *zap.Logger, clus *e2e.EtcdProcessCluster) []report.ClientReport {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := errgroup.Group{}
	var operationReport, watchReport, failpointClientReport []report.ClientReport
	failpointInjected := make(chan report.FailpointInjection, 1)
	baseTime := time.Now()
	ids := identity.NewIDProvider()
	w := newWitness(ctx, clus.EndpointsGRPC(), ids, baseTime)
	if err := w.start(ctx); err != nil {
		t.Fatal(err)
	}
	var fp failpoint.Failpoint = waitFailpoint{name: "None", duration: injection}
	if s.faults {
		fp = waitFailpoint{name: "StoreFaults", duration: injection}
	}
	if s.kill {
		fp = killRepeatedly{count: max(1, int(injection/(3*time.Second))), interval: 3 * time.Second, witness: w}
	}
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
		tr := s.traffic
		if compaction, ok := tr.(compactOnWriteRevisions); ok {
			compaction.delivered = w.delivered
			tr = compaction
		}
		operationReport = traffic.SimulateTraffic(ctx, t, lg, clus, s.profile, tr, failpointInjected, baseTime, ids)
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
	if maxRevision := operationsMaxRevision(operationReport); maxRevision > 0 {
		if err := w.waitFor(ctx, maxRevision); err != nil {
			t.Error(err)
		}
	}
	witnessReport, err := w.reports()
	if err != nil {
		t.Error(err)
	}
	return slices.Concat(operationReport, failpointClientReport, watchReport, witnessReport)
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
