#!/bin/sh
# Runs the python-etcd3 smoke test (test_etcd3.py) against an etcd-fdb binary.
#   run.sh ETCD_FDB_BIN WORK_DIR
# WORK_DIR keeps the virtual environment between runs; it is rebuilt when requirements.txt
# changes. The test starts its own etcd-fdb (fresh data directory, free port) and stops it.
set -eu
bin=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
venv="$work/venv"
stamp="$venv/requirements.txt"
python=${PYTHON3:-python3}
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
    rm -rf "$venv"
    mkdir -p "$work"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        -r "$here/requirements.txt"
    "$venv/bin/pip" check --disable-pip-version-check
    cp "$here/requirements.txt" "$stamp"
fi
cd "$here"
ETCD_FDB_BIN=$bin PYTHONDONTWRITEBYTECODE=1 exec "$venv/bin/python" -m unittest -v test_etcd3
