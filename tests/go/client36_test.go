//go:build etcd36

package tests

// What differs between clientv3 3.5 and 3.6 in the concurrency package, for the 3.6 run
// (-tags etcd36 -modfile=go36.mod). client35_test.go is its twin.

import (
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

const clientSeries = "3.6"

// unlockTwiceCheck: 3.6's Unlock of a released mutex returns ErrLockReleased.
func unlockTwiceCheck(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, concurrency.ErrLockReleased) {
		t.Errorf("second Unlock: %v, want ErrLockReleased (clientv3 3.6)", err)
	}
}

// sessionCtxCheck: 3.6's Session.Ctx is cancelled once the session is done.
func sessionCtxCheck(t *testing.T, s *concurrency.Session) {
	t.Helper()
	select {
	case <-s.Ctx().Done():
	case <-time.After(time.Second):
		t.Error("Session.Ctx not cancelled after the session ended")
	}
}
