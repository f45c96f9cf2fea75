package robustness

import (
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"go.etcd.io/etcd/tests/v3/robustness/report"
	"go.etcd.io/etcd/tests/v3/robustness/validate"
)

// TestValidateSavedReport validates again a report a failed scenario left (the directory
// holding its client-* directories, given in ROBUSTNESS_REPORT), with a longer porcupine
// timeout (ROBUSTNESS_TIMEOUT, default 10m). Its histories already have dense revisions.
func TestValidateSavedReport(t *testing.T) {
	path := os.Getenv("ROBUSTNESS_REPORT")
	if path == "" {
		t.Skip("ROBUSTNESS_REPORT is not set")
	}
	timeout := 10 * time.Minute
	if v := os.Getenv("ROBUSTNESS_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("ROBUSTNESS_TIMEOUT: %v", err)
		}
		timeout = d
	}
	reports, err := report.LoadClientReports(path)
	if err != nil {
		t.Fatal(err)
	}
	// Dense already: the space of a dense history is 2, 3, ..., and renames nothing.
	space := newRevisionSpace(reports)
	persisted, err := persistedRequests(reports, space)
	if err != nil {
		t.Fatal(err)
	}
	lg := zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	cfg := validate.Config{ExpectRevisionUnique: strings.Contains(path, "Kubernetes")}
	visualize := validate.ValidateAndReturnVisualize(t, lg, cfg, reports, persisted, timeout)
	if t.Failed() {
		if err := visualize(path + "/history-revalidated.html"); err != nil {
			t.Error(err)
		}
	}
}
