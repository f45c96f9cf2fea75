#!/bin/sh
# Runs the npm etcd3 smoke test (etcd3.test.js) against an etcd-fdb binary.
#   run.sh ETCD_FDB_BIN WORK_DIR
# Copies package.json and package-lock.json to WORK_DIR, installs exactly the locked packages
# there with `npm ci`, and runs the test with Node's test runner. The test starts its own
# etcd-fdb (fresh data directory, free port) and stops it.
set -eu
bin=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/etcd3.test.js" "$work/"
cd "$work"
npm ci --no-audit --no-fund --loglevel=error
# --test-force-exit: etcd3 may leave a lease's keepalive timer running for up to its TTL after
# the lease is released, which would only delay the exit.
ETCD_FDB_BIN=$bin exec node --test --test-force-exit --test-reporter=spec etcd3.test.js
