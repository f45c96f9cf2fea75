//go:build !etcd36

package tests

// What differs between clientv3 3.5 and 3.6 in the concurrency package, for the 3.5 run
// (go.mod). client36_test.go is its twin, built with -tags etcd36 -modfile=go36.mod.

import (
	"testing"

	"go.etcd.io/etcd/client/v3/concurrency"
)

const clientSeries = "3.5"

// unlockTwiceCheck: 3.5's Unlock of a released mutex deletes nothing and returns nil.
func unlockTwiceCheck(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("second Unlock: %v, want nil (clientv3 3.5)", err)
	}
}

// sessionCtxCheck: 3.5's Session has no Ctx.
func sessionCtxCheck(t *testing.T, s *concurrency.Session) {}
