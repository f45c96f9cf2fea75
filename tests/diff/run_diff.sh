#!/usr/bin/env bash
# run_diff.sh -- differential test: one etcdctl scenario against the real etcd and against
# etcd-fdb, outputs compared after normalisation (see normalize.py).
#
# Usage: run_diff.sh ETCD_FDB_BINARY [WORK_DIR]
#   ETCD_FDB_BINARY  the etcd-fdb executable under test
#   WORK_DIR         where data dirs, logs and raw/normalised outputs go (default: a fresh
#                    temporary directory, removed on success unless KEEP=1)
# Environment:
#   ETCD, ETCDCTL    the reference etcd server and its etcdctl (default: from PATH)
#   KEEP=1           keep WORK_DIR even when every check passes
#
# Prints every difference and ends with "N passed, N failed" (one check per scenario step).
# Exit status: 0 when nothing failed, 1 on differences, 2 on a harness error, 77 when the
# reference etcd is not installed (ctest reports the test as skipped).
set -u

here=$(cd "$(dirname "$0")" && pwd)
fdb_bin=${1:?usage: run_diff.sh ETCD_FDB_BINARY [WORK_DIR]}
ETCD=${ETCD:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}
# etcdctl reads ETCDCTL_* variables (endpoints, TLS, timeouts...): none may leak in
for v in $(env | sed -n 's/^\(ETCDCTL_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
export ETCDCTL_API=3

if ! command -v "$ETCD" >/dev/null 2>&1 || ! command -v "$ETCDCTL" >/dev/null 2>&1; then
    echo "run_diff: $ETCD or $ETCDCTL not found (Debian packages etcd-server, etcd-client); skipping"
    exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
    echo "run_diff: python3 not found; skipping"
    exit 77
fi
[ -x "$fdb_bin" ] || { echo "run_diff: $fdb_bin is not executable" >&2; exit 2; }
fdb_bin=$(cd "$(dirname "$fdb_bin")" && pwd)/$(basename "$fdb_bin")

if [ $# -ge 2 ]; then
    work=$2
    rm -rf "$work"
    mkdir -p "$work"
    own_work=0
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/etcd-fdb-diff.XXXXXX")
    own_work=1
fi
work=$(cd "$work" && pwd)

server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
        server_pid=
    fi
}
trap 'stop_server' EXIT
trap 'stop_server; exit 2' INT TERM

# Free TCP ports on 127.0.0.1 (asked of the kernel, so two runs in parallel do not collide).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# Waits until the server at $1 answers a Status call (reads only: no revision is spent).
wait_ready() {
    local ep=$1 log=$2
    for _ in $(seq 1 150); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "run_diff: server exited during start-up; log:" >&2
            tail -n 30 "$log" >&2
            return 1
        fi
        if "$ETCDCTL" --endpoints="$ep" --dial-timeout=1s --command-timeout=2s \
            endpoint status >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "run_diff: server at $ep not ready after 30 s; log:" >&2
    tail -n 30 "$log" >&2
    return 1
}

# ---- the step functions scenario.sh uses -------------------------------------------------
# step NAME ARGS...            runs `etcdctl ARGS...` (stdin: /dev/null)
# step_in NAME FILE ARGS...    the same with FILE as stdin
# step_txt NAME TEXT ARGS...   the same with TEXT (plus blank lines) as stdin
# jget NAME PATH               a value from step NAME's JSON stdout, e.g. header.revision,
#                              kvs.0.mod_revision (empty if absent)
# rev_of NAME                  shorthand for jget NAME header.revision
# Every step's stdout, stderr and exit status land in $STEP_DIR/NNN.{out,err,rc}; the list
# of steps is $STEP_DIR/steps.tsv (index, name, command as run).
_step_n=0
_step_names=" "
_run_step() {
    local name=$1 input=$2
    shift 2
    case "$_step_names" in
    *" $name "*) echo "run_diff: duplicate step name $name" >&2; exit 2 ;;
    esac
    _step_names="$_step_names$name "
    _step_n=$((_step_n + 1))
    local id
    id=$(printf '%03d' "$_step_n")
    local cmd
    cmd=$(printf '%q ' "$@")
    # the command line is recorded with long arguments shortened
    printf '%s\t%s\t%s\n' "$id" "$name" "$(printf '%s' "$cmd" | cut -c1-300)" >>"$STEP_DIR/steps.tsv"
    printf '%s' "$name" >"$STEP_DIR/$id.name"
    timeout 60 "$ETCDCTL" --endpoints="$ENDPOINT" --dial-timeout=5s --command-timeout=20s "$@" \
        <"$input" >"$STEP_DIR/$id.out" 2>"$STEP_DIR/$id.err"
    echo $? >"$STEP_DIR/$id.rc"
    eval "_step_id_${name//[^A-Za-z0-9_]/_}=$id"
}
step() {
    local name=$1
    shift
    _run_step "$name" /dev/null "$@"
}
step_in() {
    local name=$1 file=$2
    shift 2
    _run_step "$name" "$file" "$@"
}
step_txt() {
    local name=$1 text=$2
    shift 2
    # blank lines after the text end any section it leaves open (txn reads three)
    printf '%s\n\n\n' "$text" >"$SCRATCH/stdin.txt"
    _run_step "$name" "$SCRATCH/stdin.txt" "$@"
}
jget() {
    local var="_step_id_${1//[^A-Za-z0-9_]/_}"
    local id=${!var:-}
    [ -n "$id" ] || { echo "run_diff: jget: no step $1" >&2; return 0; }
    python3 - "$STEP_DIR/$id.out" "$2" <<'EOF'
import json, sys
try:
    v = json.load(open(sys.argv[1]))
    for p in sys.argv[2].split("."):
        v = v[int(p)] if isinstance(v, list) else v[p]
    print(v)
except Exception:
    print("")
EOF
}
rev_of() { jget "$1" header.revision; }

# run_scenario LABEL ENDPOINT: the scenario against one server, in a subshell.
run_scenario() {
    local label=$1
    (
        ENDPOINT=$2
        STEP_DIR=$work/$label/steps
        SCRATCH=$work/$label/scratch
        mkdir -p "$STEP_DIR" "$SCRATCH"
        : >"$STEP_DIR/steps.tsv"
        cd "$SCRATCH" || exit 2
        # shellcheck source=scenario.sh
        . "$here/scenario.sh"
    )
}

# ---- the reference etcd -------------------------------------------------------------------
read -r cport pport fport <<<"$(free_ports 3)"
echo "== etcd ($("$ETCD" --version 2>/dev/null | head -n 1)) on 127.0.0.1:$cport"
mkdir -p "$work/etcd"
"$ETCD" --name default --data-dir "$work/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$cport" --advertise-client-urls "http://127.0.0.1:$cport" \
    --listen-peer-urls "http://127.0.0.1:$pport" --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "default=http://127.0.0.1:$pport" \
    >"$work/etcd/server.log" 2>&1 &
server_pid=$!
wait_ready "127.0.0.1:$cport" "$work/etcd/server.log" || exit 2
run_scenario etcd "127.0.0.1:$cport"
stop_server

# ---- etcd-fdb -----------------------------------------------------------------------------
echo "== etcd-fdb ($fdb_bin) on 127.0.0.1:$fport"
mkdir -p "$work/etcd-fdb"
"$fdb_bin" --name default --data-dir "$work/etcd-fdb/data" \
    --listen-client-urls "http://127.0.0.1:$fport" \
    >"$work/etcd-fdb/server.log" 2>&1 &
server_pid=$!
wait_ready "127.0.0.1:$fport" "$work/etcd-fdb/server.log" || exit 2
run_scenario etcd-fdb "127.0.0.1:$fport"
stop_server

# ---- compare ------------------------------------------------------------------------------
python3 "$here/normalize.py" compare "$work/etcd/steps" "$work/etcd-fdb/steps" \
    "$here/expected_differences.txt" "$work"
status=$?
if [ "$status" -eq 0 ] && [ "$own_work" -eq 1 ] && [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$work"
else
    echo "outputs kept in $work"
fi
exit "$status"
