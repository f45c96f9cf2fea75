#!/usr/bin/env bash
# etcdctl_test.sh -- end-to-end tests: starts the real etcd-fdb binary on fresh temp data dirs
# and loopback ports, drives it with etcdctl (3.4, ETCDCTL_API=3) and raw gRPC calls (curl),
# and asserts etcd's own answers.
#
# Usage: etcdctl_test.sh path/to/etcd-fdb
# Environment: ETCDCTL (default etcdctl), E2E_KEEP=1 keeps the temp dir and server logs.
# Given the real etcd's binary instead, the same checks run against etcd (to check the
# checks); those about etcd-fdb's own flags, --prefix and exit codes are skipped then.
# Prints one line per named check ("ok" or "FAIL" with the reasons) and ends with exactly
# "N passed, N failed"; exits 1 if any check failed.
#
# Revisions are compared by relation, never by value: etcd-fdb's revisions are the store's
# commit versions (strictly increasing, not consecutive).
set -u

BIN=${1:?usage: etcdctl_test.sh path/to/etcd-fdb}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ETCDCTL=${ETCDCTL:-etcdctl}
export ETCDCTL_API=3
exec </dev/null

for tool in "$ETCDCTL" python3 openssl curl timeout; do
    command -v "$tool" >/dev/null || { echo "etcdctl_test.sh: $tool not found" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "etcdctl_test.sh: $BIN is not executable" >&2; exit 2; }
FLAVOR=etcd-fdb
"$BIN" --version 2>/dev/null | grep -q '^etcd Version:' && FLAVOR=etcd

T=$(mktemp -d "${TMPDIR:-/tmp}/etcd-fdb-e2e.XXXXXX")
PIDS=() # every server this script started; the exit trap kills those still running

cleanup()
{
    local pid
    for pid in "${PIDS[@]}"; do
        if alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if [ "${E2E_KEEP:-0}" = 1 ]; then
        echo "kept $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers written to the temp dir ----

# j.py EXPR: evaluates EXPR on the JSON document `d` read from stdin; s(b64) decodes a
# base64 field as text, raw(b64) writes its bytes to stdout (nothing else is printed then).
cat >"$T/j.py" <<'EOF'
import base64, json, sys
d = json.load(sys.stdin)
def s(b):
    return base64.b64decode(b).decode("latin-1")
def raw(b):
    sys.stdout.buffer.write(base64.b64decode(b))
    sys.exit(0)
r = eval(sys.argv[1])
print(r if isinstance(r, str) else json.dumps(r))
EOF

# grpc_raw.py: unary gRPC calls through curl (h2c or TLS) with a tiny protobuf codec, for the
# request fields etcdctl 3.4 cannot send (count_only, revision filters, range compares).
cat >"$T/grpc_raw.py" <<'EOF'
import struct, subprocess

def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([b])
        out += bytes([b | 0x80])

def f_int(num, v):
    return varint(num << 3) + varint(v) if v else b""

def f_bytes(num, v):
    v = v.encode() if isinstance(v, str) else v
    return varint(num << 3 | 2) + varint(len(v)) + v

def read_varint(buf, i):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i

def decode(buf):
    """A message as {field number: [values]}; length-delimited values stay bytes."""
    out, i = {}, 0
    while buf and i < len(buf):
        key, i = read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        out.setdefault(num, []).append(v)
    return out

def call(endpoint, method, body):
    """(grpc-status, grpc-message, response bytes or None). body None sends no message at
    all: a server that answers without reading the request (an unknown method) then resets
    the stream, and curl may drop the answer if it is still sending (with etcd as with
    etcd-fdb). A call that got no status at all is retried."""
    for attempt in range(5):
        result = call_once(endpoint, method, body)
        if result[0] is not None:
            break
    return result

def call_once(endpoint, method, body):
    frame = b"" if body is None else b"\x00" + struct.pack(">I", len(body)) + body
    cmd = ["curl", "-s", "--max-time", "10", "-X", "POST", "-H", "content-type: application/grpc",
           "-H", "te: trailers", "--data-binary", "@-", "-D", "/dev/stderr", "-o", "-",
           "--http2-prior-knowledge", endpoint + method]
    p = subprocess.run(cmd, input=frame, capture_output=True)
    status, message = None, ""
    for line in p.stderr.decode(errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "grpc-status":
            status = int(value)
        elif name.lower() == "grpc-message":
            message = value.strip()
    msg = None
    if len(p.stdout) >= 5:
        msg = p.stdout[5:5 + struct.unpack(">I", p.stdout[1:5])[0]]
    return status, message, msg

def keys(range_response):
    return [decode(kv)[1][0].decode() for kv in decode(range_response).get(2, [])]
EOF

# ---- checks and assertions ----

. "$(dirname "$0")/checks.sh"
SKIPPED=0

# only_fdb: true for etcd-fdb; against etcd, skips the current check.
only_fdb()
{
    [ "$FLAVOR" = etcd-fdb ] && return 0
    echo "skip $CURRENT (etcd-fdb only)"
    SKIPPED=$((SKIPPED + 1))
    CURRENT=""
    return 1
}

# Last etcdctl run: OUT (stdout), ERR (stderr without client retry logs), RC.
OUT=""
ERR=""
RC=0
CTL_OPTS=()
SRV_PID=""     # the server being tested (start_server)
SRV_LOG=""
DEAD_REPORTED=""

# ctl ARGS...: etcdctl against the current server (CTL_OPTS), stdin passed through.
ctl()
{
    timeout 60 "$ETCDCTL" "${CTL_OPTS[@]}" --dial-timeout=3s --command-timeout=20s "$@"
}

# run ARGS...: ctl with the results in OUT, ERR, RC. Once the server has died, fails at once
# (the first time with the end of its log) instead of waiting for etcdctl's timeouts.
run()
{
    if [ -n "$SRV_PID" ] && ! alive "$SRV_PID"; then
        OUT=""
        RC=125
        ERR="etcd-fdb is not running"
        if [ "$DEAD_REPORTED" != "$SRV_PID" ]; then
            DEAD_REPORTED=$SRV_PID
            ERR="etcd-fdb (pid $SRV_PID) died; the end of its log:
$(tail -25 "$SRV_LOG" | sed 's/^/       | /')"
        fi
        return
    fi
    OUT=$(ctl "$@" 2>"$T/stderr")
    RC=$?
    ERR=$(grep -v 'retry_interceptor' "$T/stderr")
}

# expect_run WHAT EXPECTED_STDOUT ARGS...: runs, then asserts rc 0 and the exact output.
expect_run()
{
    local what=$1 want=$2
    shift 2
    run "$@"
    if [ "$RC" != 0 ]; then
        fail "$what: etcdctl $(printf %s "$*" | head -c 200) exited $RC: $ERR"
        return 1
    fi
    expect_eq "$what" "$want" "$OUT"
}

# expect_keys WHAT EXPECTED_KEYS get ARGS...: `get ARGS --keys-only` prints exactly these keys
# (etcdctl prints an empty line after each key; those are dropped).
expect_keys()
{
    local what=$1 want=$2
    shift 2
    run "$@" --keys-only
    if [ "$RC" != 0 ]; then
        fail "$what: etcdctl $(printf %s "$*" | head -c 200) --keys-only exited $RC: $ERR"
        return 1
    fi
    expect_eq "$what" "$want" "$(printf '%s\n' "$OUT" | sed '/^$/d')"
}

# expect_error WHAT MESSAGE ARGS...: runs, then asserts a failure whose stderr has MESSAGE.
expect_error()
{
    local what=$1 want=$2
    shift 2
    run "$@"
    if [ "$RC" = 0 ]; then
        fail "$what: etcdctl $(printf %s "$*" | head -c 200) succeeded (output [$(printf %s "$OUT" | head -c 200)]), expected error [$want]"
        return 1
    fi
    expect_contains "$what" "$want" "$ERR"
}

# jq-free JSON access: `json EXPR` evaluates EXPR on the JSON document in OUT.
json()
{
    printf %s "$OUT" | python3 "$T/j.py" "$1" 2>&1
}

# rev_of ARGS...: runs etcdctl ARGS -w json and prints the header revision ("" on failure).
rev_of()
{
    run "$@" -w json
    [ "$RC" = 0 ] && json 'd["header"]["revision"]'
}

# kv_fields KEY [ARGS...]: "create mod version value" of KEY, or "none".
kv_fields()
{
    run get "$@" -w json
    json '" ".join(str(x) for x in (d["kvs"][0]["create_revision"], d["kvs"][0]["mod_revision"], d["kvs"][0]["version"], s(d["kvs"][0].get("value", "")))) if d.get("kvs") else "none"'
}

# value_to FILE KEY [ARGS...]: writes KEY's value bytes to FILE (empty if the key is absent).
value_to()
{
    local file=$1
    shift
    run get "$@" -w json
    printf %s "$OUT" | python3 "$T/j.py" 'raw(d["kvs"][0]["value"]) if d.get("kvs") else ""' >"$file"
}

# expect_error_exit WHAT RC: a process failed on its own with an error exit code: not 0, not
# killed by `timeout` (124) or by a signal such as a sanitizer's abort (128 + n).
expect_error_exit()
{
    [ "$2" -ge 1 ] && [ "$2" -le 123 ] && return 0
    fail "$1: expected an error exit code (1..123), got $2"
    return 1
}

# expect_refused WHAT: the last etcdctl run failed and printed nothing on stdout.
expect_refused()
{
    [ "$RC" != 0 ] && [ -z "$OUT" ] && return 0
    fail "$1: expected a failure, got rc $RC and output [$OUT]"
    return 1
}

is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
lt() { is_int "$1" && is_int "$2" && [ "$1" -lt "$2" ]; }

# alive PID: the process exists and is not a zombie (our dead children stay zombies until
# waited for, and kill -0 succeeds on them).
alive()
{
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# wait_exit PID SECONDS: waits for the process to end; sets EXIT_RC (124 if it did not).
wait_exit()
{
    local pid=$1 i
    for ((i = 0; i < $2 * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        EXIT_RC=124
        return 1
    fi
    wait "$pid" 2>/dev/null
    EXIT_RC=$?
    return 0
}

# start_server LOG ARGS...: starts etcd-fdb ARGS in the background with its output in
# $T/LOG.log and waits (15 s at most) until it logs that it is ready. Sets SRV_PID, SRV_LOG.
start_server()
{
    local log=$1 i
    shift
    SRV_LOG="$T/$log.log"
    local extra=()
    [ "$FLAVOR" = etcd ] && etcd_flags "$@"
    "$BIN" "$@" "${extra[@]}" >"$SRV_LOG" 2>&1 &
    SRV_PID=$!
    PIDS+=("$SRV_PID")
    for ((i = 0; i < 150; i++)); do
        grep -Eqs ' ready: |ready to serve client requests' "$SRV_LOG" && return 0
        alive "$SRV_PID" || break
        sleep 0.1
    done
    echo "     (server did not become ready; its log:)"
    sed 's/^/       | /' "$SRV_LOG" | tail -20
    return 1
}

# etcd_flags ARGS...: the flags etcd needs besides etcd-fdb's (a peer URL, the advertised
# client URL), into start_server's `extra`.
etcd_flags()
{
    local name=default listen="" peer
    while [ $# -gt 0 ]; do
        case $1 in
        --name) name=$2 ;;
        --listen-client-urls) listen=$2 ;;
        esac
        shift
    done
    peer="http://127.0.0.1:$(free_port)"
    extra=(--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
        --initial-cluster "$name=$peer" --advertise-client-urls "${listen%%,*}")
}

# expect_clean_exit WHAT: the server stopped by stop_server exited 0 (etcd re-raises the
# signal instead, so against etcd only the exit itself is checked).
expect_clean_exit()
{
    if [ "$FLAVOR" = etcd ]; then
        [ "$EXIT_RC" != 124 ] || fail "$1: still running"
        return
    fi
    expect_eq "$1" 0 "$EXIT_RC"
}

# stop_server SIGNAL: signals the current server and waits for it; sets EXIT_RC.
stop_server()
{
    kill "-$1" "$SRV_PID" 2>/dev/null
    if ! wait_exit "$SRV_PID" 15; then
        kill -KILL "$SRV_PID" 2>/dev/null
        wait "$SRV_PID" 2>/dev/null
    fi
}

# use_endpoint URL [TLS ARGS...]: etcdctl talks to URL from now on.
use_endpoint()
{
    CTL_OPTS=(--endpoints="$1")
    shift
    CTL_OPTS+=("$@")
}

now_ms() { date +%s%3N; }

# ===================================================================================
# Flags
# ===================================================================================

# etcd-fdb's own flag handling
if [ "$FLAVOR" = etcd-fdb ]; then
    check "flags: --help exits 0 and prints the usage"
    out=$("$BIN" --help 2>&1)
    rc=$?
    expect_eq "exit code" 0 "$rc"
    expect_contains "usage" "Usage: etcd-fdb" "$out"
    expect_contains "usage lists --data-dir" "--data-dir" "$out"

    check "flags: --version exits 0"
    out=$("$BIN" --version 2>&1)
    rc=$?
    expect_eq "exit code" 0 "$rc"
    expect_contains "version line" "etcd-fdb Version:" "$out"

    check "flags: an unknown flag exits non-zero with a message"
    out=$(timeout 10 "$BIN" --no-such-flag 2>&1)
    rc=$?
    expect_error_exit "exit code $rc is an error" "$rc"
    expect_contains "message" "unknown flag" "$out"
    expect_contains "message names the flag" "--no-such-flag" "$out"

    check "flags: a flag without its argument says so"
    out=$(timeout 10 "$BIN" --data-dir 2>&1)
    rc=$?
    expect_error_exit "exit code $rc is an error" "$rc"
    # etcd: "flag needs an argument: -data-dir"
    expect_contains "message" "needs an argument" "$out"

    check "flags: invalid values are refused"
    for args in "--max-txn-ops=abc" "--max-request-bytes=-1" "--listen-client-urls=127.0.0.1:2379" \
        "--log-level=loud" "--backend=sqlite" "unexpected-positional"; do
        out=$(timeout 10 "$BIN" --data-dir "$T/never" $args 2>&1)
        rc=$?
        expect_error_exit "etcd-fdb $args: exit code $rc is an error" "$rc"
        expect_true "etcd-fdb $args: prints a message" [ -n "$out" ]
    done
    out=$(timeout 10 "$BIN" --data-dir "$T/never" --listen-client-urls=https://127.0.0.1:1 2>&1)
    rc=$?
    expect_error_exit "https listener without --cert-file: exit code $rc is an error" "$rc"
    expect_contains "https listener without --cert-file" "--cert-file" "$out"
    out=$(timeout 10 "$BIN" --data-dir "$T/never" --client-cert-auth 2>&1)
    rc=$?
    expect_error_exit "--client-cert-auth without a CA: exit code $rc is an error" "$rc"
    expect_contains "--client-cert-auth without a CA" "--trusted-ca-file" "$out"
fi

# ===================================================================================
# The main server
# ===================================================================================

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
DATA="$T/main.data"
check "server: starts on a fresh data dir and is healthy"
if ! start_server main --name e2e --data-dir "$DATA" --listen-client-urls "$URL"; then
    fail "etcd-fdb did not start"
    finish_check
    echo "$PASSED passed, $((FAILED + 1)) failed"
    exit 1
fi
MAIN_PID=$SRV_PID
use_endpoint "$URL"
run endpoint health
expect_eq "endpoint health rc" 0 "$RC"
expect_contains "endpoint health" "127.0.0.1:$PORT is healthy" "$OUT$ERR"

check "revision: a fresh store is at revision 1"
expect_eq "header revision of a read" 1 "$(rev_of get nothing-here)"

# ---- put / get ----

check "put/get: single key"
expect_run "put" "OK" put greeting hello
expect_run "get" $'greeting\nhello' get greeting
expect_run "get --print-value-only" "hello" get greeting --print-value-only
expect_keys "get" "greeting" get greeting
expect_run "get of a missing key prints nothing" "" get no-such-key
expect_run "put an empty value" "OK" put empty ""
expect_eq "empty value: version 1, no value" "1 ''" \
    "$(run get empty -w json; json 'str(d["kvs"][0]["version"]) + " " + repr(d["kvs"][0].get("value", ""))')"
expect_run "put a value with spaces and newline" "OK" put spaced $'a b\nc'
expect_run "get it back" $'a b\nc' get spaced --print-value-only

check "put/get: json fields of a new key"
r=$(rev_of put jf v1)
expect_true "put header revision is a number" is_int "$r"
expect_eq "create mod version value" "$r $r 1 v1" "$(kv_fields jf)"
run get jf -w json
expect_eq "count" 1 "$(json 'd["count"]')"
expect_eq "more absent" False "$(json 'str(d.get("more", False))')"
expect_eq "header revision is the newest write" "$r" "$(json 'd["header"]["revision"]')"
expect_eq "header has member_id" True "$(json 'str(d["header"]["member_id"] != 0)')"

# Range checks run on a keyspace that only they have written so far (--from-key '' sees all).
check "get: ranges, --prefix, --from-key"
for kv in "r/a 1" "r/b 2" "r/c 3" "r/d 4" "r/e 5" "r x" "r0 y" "q z"; do
    run put $kv
done
run del greeting
run del empty
run del spaced
run del jf
expect_keys "[r/b, r/d)" $'r/b\nr/c' get r/b r/d
expect_keys "--prefix r/" $'r/a\nr/b\nr/c\nr/d\nr/e' get r/ --prefix
expect_run "--prefix values" $'1\n2\n3\n4\n5' get r/ --prefix --print-value-only
expect_keys "--from-key r/c" $'r/c\nr/d\nr/e\nr0' get r/c --from-key
expect_keys "--from-key ''" $'q\nr\nr/a\nr/b\nr/c\nr/d\nr/e\nr0' get '' --from-key
expect_run "range end equal to the key is empty" "" get r/b r/b
expect_run "range end below the key is empty" "" get r/d r/b
expect_run "--prefix of nothing" "" get nothing/ --prefix
expect_run "simple output of a range" $'r/a\n1\nr/b\n2' get r/a r/c

check "get: --limit, more and count"
expect_keys "--limit 2" $'r/a\nr/b' get r/ --prefix --limit 2
run get r/ --prefix --limit 2 -w json
expect_eq "count counts all keys" 5 "$(json 'd["count"]')"
expect_eq "more" True "$(json 'str(d.get("more", False))')"
expect_eq "kvs returned" 2 "$(json 'len(d["kvs"])')"
run get r/ --prefix --limit 5 -w json
expect_eq "limit = count: more is false" False "$(json 'str(d.get("more", False))')"
run get r/ --prefix --keys-only -w json
expect_eq "--keys-only has no values" "[]" "$(json '[k["value"] for k in d["kvs"] if "value" in k]')"
expect_eq "--keys-only keeps versions" "[1, 1, 1, 1, 1]" "$(json '[k["version"] for k in d["kvs"]]')"

check "get: --sort-by and --order"
# versions a=3 b=1 c=2; created a<b<c; modified b<a<c; values a=2 b=3 c=1
for kv in "s/a 0" "s/b 3" "s/c 0" "s/a 0" "s/a 2" "s/c 1"; do
    run put $kv
done
while read -r target order want; do
    expect_keys "--sort-by=$target --order=$order" "$(echo "$want" | tr , '\n')" \
        get s/ --prefix --sort-by="$target" --order="$order"
done <<'EOF'
KEY ASCEND s/a,s/b,s/c
KEY DESCEND s/c,s/b,s/a
VERSION ASCEND s/b,s/c,s/a
VERSION DESCEND s/a,s/c,s/b
CREATE ASCEND s/a,s/b,s/c
CREATE DESCEND s/c,s/b,s/a
MODIFY ASCEND s/b,s/a,s/c
MODIFY DESCEND s/c,s/a,s/b
VALUE ASCEND s/c,s/a,s/b
VALUE DESCEND s/b,s/a,s/c
EOF
expect_keys "--order=DESCEND alone sorts by key" $'s/c\ns/b\ns/a' get s/ --prefix --order=DESCEND
expect_keys "--sort-by=VALUE alone ascends" $'s/c\ns/a\ns/b' get s/ --prefix --sort-by=VALUE
expect_keys "sort applies before --limit" $'s/c\ns/a' get s/ --prefix --sort-by=VALUE --limit 2
expect_keys "descending sort with --limit" $'s/c\ns/a' get s/ --prefix --sort-by=MODIFY --order=DESCEND --limit 2

check "put: --prev-kv"
expect_run "new key: no previous pair" "OK" put pk one --prev-kv
expect_run "existing key: the previous pair" $'OK\npk\none' put pk two --prev-kv
run put pk three --prev-kv -w json
expect_eq "prev_kv value in json" two "$(json 's(d["prev_kv"]["value"])')"
expect_eq "prev_kv version in json" 2 "$(json 'd["prev_kv"]["version"]')"

check "put: --ignore-value and --ignore-lease"
run put iv original
before=$(kv_fields iv)
expect_run "--ignore-value on an existing key" "OK" put iv --ignore-value
after=$(kv_fields iv)
expect_eq "value kept, version bumped" "original 2" "$(echo "$after" | awk '{print $4, $3}')"
expect_true "mod revision increased" lt "$(echo "$before" | awk '{print $2}')" "$(echo "$after" | awk '{print $2}')"
expect_error "--ignore-value on a missing key" "etcdserver: key not found" put iv-missing --ignore-value
expect_error "--ignore-lease on a missing key" "etcdserver: key not found" put il-missing v --ignore-lease
expect_run "--ignore-lease on an existing key" "OK" put iv changed --ignore-lease
expect_eq "value changed" "changed 3" "$(kv_fields iv | awk '{print $4, $3}')"
expect_error "--ignore-lease with a lease" "etcdserver: lease is provided" put iv x --ignore-lease --lease=1234
expect_run "missing keys were not created" "" get il-missing

check "del: single, range, --prefix, --from-key, --prev-kv"
for k in a b c d e; do run put "d/$k" "v$k"; done
run put d0 after
expect_run "delete one key" "1" del d/a
expect_run "delete a missing key" "0" del d/a
expect_run "delete [d/b, d/d)" "2" del d/b d/d
expect_keys "left" $'d/d\nd/e\nd0' get d/ d1
expect_run "--prev-kv" $'1\nd/d\nvd' del d/d --prev-kv
run put d/x vx
expect_run "--prefix --prev-kv" $'2\nd/e\nve\nd/x\nvx' del d/ --prefix --prev-kv
run del d0 -w json
expect_eq "json deleted count" 1 "$(json 'd["deleted"]')"
# "~" sorts after every other key these checks write
run put "~y" 1
run put "~z" 2
run del "~y" --from-key -w json
expect_eq "--from-key deleted count" 2 "$(json 'd["deleted"]')"
expect_keys "keys below survive --from-key" $'r/a\nr/b\nr/c\nr/d\nr/e' get r/ --prefix

# ---- revisions ----

check "revision: each write increases the header revision"
r1=$(rev_of put rv/a 1)
r2=$(rev_of put rv/a 2)
r3=$(rev_of put rv/b 1)
r4=$(rev_of del rv/b)
printf '\nput rv/c 1\n\n\n' >"$T/txn"
r5=$(rev_of txn <"$T/txn")
expect_true "put < put ($r1 < $r2)" lt "$r1" "$r2"
expect_true "put < put of another key ($r2 < $r3)" lt "$r2" "$r3"
expect_true "put < delete ($r3 < $r4)" lt "$r3" "$r4"
# etcd: a txn response's header carries the txn's own (new) revision
expect_true "delete < txn ($r4 < $r5)" lt "$r4" "$r5"
run get rv/c -w json
expect_eq "txn header revision is the written key's mod_revision" "$(json 'd["kvs"][0]["mod_revision"]')" "$r5"

check "revision: create, mod and version through updates and delete + recreate"
c1=$(rev_of put rc k1)
expect_eq "created" "$c1 $c1 1 k1" "$(kv_fields rc)"
c2=$(rev_of put rc k2)
expect_eq "updated" "$c1 $c2 2 k2" "$(kv_fields rc)"
c3=$(rev_of put rc k3)
expect_eq "updated again" "$c1 $c3 3 k3" "$(kv_fields rc)"
c4=$(rev_of del rc)
expect_eq "deleted" "none" "$(kv_fields rc)"
c5=$(rev_of put rc k4)
expect_eq "recreated: version 1, new create revision" "$c5 $c5 1 k4" "$(kv_fields rc)"
expect_true "revisions increase" lt "$c4" "$c5"

check "revision: reads and no-op writes do not change it"
base=$(rev_of put ro x)
expect_eq "get" "$base" "$(rev_of get ro)"
expect_eq "get --prefix" "$base" "$(rev_of get r/ --prefix)"
expect_eq "get --rev" "$base" "$(rev_of get ro --rev="$base")"
expect_eq "delete of nothing" "$base" "$(rev_of del no-such-key)"
expect_eq "delete of an empty range" "$base" "$(rev_of del no-such/ --prefix)"
printf 'value("ro") = "not-x"\n\nput ro y\n\n\n' >"$T/txn"
expect_eq "txn whose chosen branch is empty" "$base" "$(rev_of txn <"$T/txn")"
printf '\nget ro\n\n\n' >"$T/txn"
expect_eq "read-only txn" "$base" "$(rev_of txn <"$T/txn")"
run endpoint status -w json
expect_eq "endpoint status revision" "$base" "$(json 'd[0]["Status"]["header"]["revision"]')"
expect_eq "get after all that" "$base" "$(rev_of get ro)"

check "revision: get --rev reads past revisions"
h1=$(rev_of put hist/a v1)
h2=$(rev_of put hist/a v2)
h3=$(rev_of put hist/b b1)
h4=$(rev_of del hist/a)
h5=$(rev_of put hist/a v3)
expect_run "--rev=h1" $'hist/a\nv1' get hist/a --rev="$h1"
expect_run "--rev=h2" "v2" get hist/a --rev="$h2" --print-value-only
expect_run "--rev between writes" "v2" get hist/a --rev="$((h2 + 1))" --print-value-only
expect_run "--rev at the delete" "" get hist/a --rev="$h4"
expect_run "--rev after recreate" "v3" get hist/a --rev="$h5" --print-value-only
expect_run "--rev before the key existed" "" get hist/a --rev="$((h1 - 1))"
expect_keys "--prefix --rev=h2: hist/b not yet created" "hist/a" get hist/ --prefix --rev="$h2"
expect_keys "--prefix --rev=h4: hist/a deleted" "hist/b" get hist/ --prefix --rev="$h4"
expect_keys "--prefix --rev=h5" $'hist/a\nhist/b' get hist/ --prefix --rev="$h5"
expect_eq "fields at h2" "$h1 $h2 2 v2" "$(kv_fields hist/a --rev="$h2")"
expect_eq "fields at h5" "$h5 $h5 1 v3" "$(kv_fields hist/a --rev="$h5")"
run get hist/a --rev="$h1" -w json
expect_eq "header of a past read is the current revision" "$h5" "$(json 'd["header"]["revision"]')"
expect_keys "--rev with --limit and sort" "hist/b" get hist/ --prefix --rev="$h3" --sort-by=KEY --order=DESCEND --limit 1
expect_error "future revision" "etcdserver: mvcc: required revision is a future revision" get hist/a --rev="$((h5 + 1000000000))"

# ---- txn ----

check "txn: compares on value, version, create and mod with = > < !="
run put t/a 10
ta=$(rev_of put t/a 20)
run get t/a -w json
tc=$(json 'd["kvs"][0]["create_revision"]')
run put t/b x
cases=(
    "value(\"t/a\") = \"20\"|SUCCESS" "value(\"t/a\") = \"10\"|FAILURE"
    "value(\"t/a\") > \"1\"|SUCCESS" "value(\"t/a\") < \"3\"|SUCCESS" "value(\"t/a\") < \"1\"|FAILURE"
    "value(\"t/a\") != \"20\"|FAILURE" "value(\"t/a\") != \"x\"|SUCCESS"
    "version(\"t/a\") = \"2\"|SUCCESS" "version(\"t/a\") > \"1\"|SUCCESS"
    "version(\"t/a\") < \"2\"|FAILURE" "version(\"t/a\") != \"2\"|FAILURE"
    "create(\"t/a\") = \"$tc\"|SUCCESS" "create(\"t/a\") < \"$tc\"|FAILURE"
    "create(\"t/a\") > \"$((tc - 1))\"|SUCCESS" "create(\"t/a\") != \"$tc\"|FAILURE"
    "mod(\"t/a\") = \"$ta\"|SUCCESS" "mod(\"t/a\") > \"$ta\"|FAILURE"
    "mod(\"t/a\") < \"$((ta + 1))\"|SUCCESS" "mod(\"t/a\") != \"$tc\"|SUCCESS"
    "version(\"t/missing\") = \"0\"|SUCCESS" "create(\"t/missing\") = \"0\"|SUCCESS"
    "mod(\"t/missing\") > \"0\"|FAILURE" "value(\"t/missing\") = \"\"|FAILURE"
    "value(\"t/missing\") != \"x\"|FAILURE"
)
for c in "${cases[@]}"; do
    cmp=${c%|*}
    want=${c##*|}
    printf '%s\n\n\n\n' "$cmp" >"$T/txn"
    expect_run "$cmp" "$want" txn <"$T/txn"
done
printf 'value("t/a") = "20"\nversion("t/b") = "1"\n\n\n\n' >"$T/txn"
expect_run "two compares, both true" "SUCCESS" txn <"$T/txn"
printf 'value("t/a") = "20"\nversion("t/b") = "2"\n\n\n\n' >"$T/txn"
expect_run "two compares, one false" "FAILURE" txn <"$T/txn"

check "txn: success and failure branches with several operations"
run put t/k v0
printf 'value("t/k") = "v0"\n\nput t/k v1\nput t/k2 w1\nget t/k\ndel t/b\n\nput t/k failed\n\n' >"$T/txn"
expect_run "success branch" $'SUCCESS\n\nOK\n\nOK\n\nt/k\nv1\n\n1' txn <"$T/txn"
expect_run "its writes" $'t/k\nv1\nt/k2\nw1' get t/k t/kz
expect_run "t/b deleted" "" get t/b
expect_run "same txn again: failure branch" $'FAILURE\n\nOK' txn <"$T/txn"
expect_run "failure branch wrote" "failed" get t/k --print-value-only
printf 'value("t/k") = "nope"\n\nput t/k no\n\nget t/k\nget t/k2\n\n' >"$T/txn"
expect_run "failure branch with reads only" $'FAILURE\n\nt/k\nfailed\n\nt/k2\nw1' txn <"$T/txn"
expect_run "interactive txn -i" $'compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nSUCCESS\n\nt/k\nfailed' \
    txn -i <<<$'value("t/k") = "failed"\n\nget t/k\n\nput t/k no\n'

check "txn: response headers and revisions"
before=$(rev_of get t/k)
printf '\nget t/k\nput t/k v2\nget t/k\ndel t/none\n\n\n' >"$T/txn"
run txn -w json <"$T/txn"
top=$(json 'd["header"]["revision"]')
expect_eq "succeeded" True "$(json 'str(d["succeeded"])')"
expect_eq "get before the put reads the old revision" "$before" "$(json 'd["responses"][0]["Response"]["ResponseRange"]["header"]["revision"]')"
put_rev=$(json 'd["responses"][1]["Response"]["ResponsePut"]["header"]["revision"]')
expect_true "put revision is new ($before < $put_rev)" lt "$before" "$put_rev"
expect_eq "get after the put sees it" "$put_rev" "$(json 'd["responses"][2]["Response"]["ResponseRange"]["kvs"][0]["mod_revision"]')"
expect_eq "delete response revision" "$put_rev" "$(json 'd["responses"][3]["Response"]["ResponseDeleteRange"]["header"]["revision"]')"
# etcd: the TxnResponse header carries the revision the txn wrote
expect_eq "txn header revision is the put's revision" "$put_rev" "$top"
# etcd: sub-response headers carry only the revision (no cluster_id, member_id, raft_term)
expect_eq "sub-response headers hold only the revision" '[["revision"], ["revision"], ["revision"], ["revision"]]' \
    "$(json '[sorted(list(r["Response"].values())[0]["header"].keys()) for r in d["responses"]]')"
expect_eq "get after the txn" "$put_rev" "$(rev_of get t/k)"
printf 'value("t/k") = "nope"\n\n\nput t/k v3\n\n' >"$T/txn"
run txn -w json <"$T/txn"
expect_eq "failure-branch write: header revision is the put's revision" \
    "$(json 'd["responses"][0]["Response"]["ResponsePut"]["header"]["revision"]')" "$(json 'd["header"]["revision"]')"

check "txn: range compares and nested txns (raw gRPC; etcdctl 3.4 has no syntax)"
run put rg/a 1
run put rg/b 1
run put rg/c 2
out=$(cd "$T" && python3 - "$URL" <<'EOF' 2>&1
import sys
import grpc_raw as g
ep = sys.argv[1]
def txn(compares, success=b"", failure=b""):
    body = b"".join(g.f_bytes(1, c) for c in compares) + success + failure
    st, msg, r = g.call(ep, "/etcdserverpb.KV/Txn", body)
    if st != 0:
        return "error %s %s" % (st, msg)
    return "SUCCESS" if g.decode(r).get(2, [0])[0] else "FAILURE"
def cmp(result, target, key, end, **kw):
    c = g.f_int(1, result) + g.f_int(2, target) + g.f_bytes(3, key) + g.f_bytes(64, end)
    if "version" in kw: c += g.f_int(4, kw["version"])
    if "value" in kw: c += g.f_bytes(7, kw["value"])
    return c
EQUAL, GREATER, LESS, NOT_EQUAL = 0, 1, 2, 3
VERSION, CREATE, MOD, VALUE = 0, 1, 2, 3
print(txn([cmp(GREATER, VERSION, "rg/", "rg0", version=0)]))          # all have versions
print(txn([cmp(EQUAL, VALUE, "rg/", "rg0", value="1")]))               # rg/c is 2
print(txn([cmp(EQUAL, VALUE, "rg/a", "rg/c", value="1")]))             # a and b are 1
print(txn([cmp(LESS, VALUE, "rg/", "rg0", value="3")]))
print(txn([cmp(EQUAL, VERSION, "rgx/", "rgx0", version=0)]))           # empty range
put = lambda k, v: g.f_bytes(2, g.f_bytes(2, g.f_bytes(1, k) + g.f_bytes(2, v)))
inner = (g.f_bytes(1, cmp(EQUAL, VALUE, "rg/a", "", value="1"))
         + put("rg/nested", "then") + g.f_bytes(3, g.f_bytes(2, g.f_bytes(1, "rg/nested") + g.f_bytes(2, "else"))))
print(txn([], g.f_bytes(2, g.f_bytes(4, inner))))
st, msg, r = g.call(ep, "/etcdserverpb.KV/Range", g.f_bytes(1, "rg/nested"))
print(g.decode(g.decode(r)[2][0])[5][0].decode())
EOF
)
expect_eq "range compares and nested txn" $'SUCCESS\nFAILURE\nSUCCESS\nSUCCESS\nSUCCESS\nSUCCESS\nthen' "$out"

check "get: count_only and revision filters (raw gRPC; etcdctl 3.4 has no flags)"
out=$(cd "$T" && python3 - "$URL" <<'EOF' 2>&1
import sys
import grpc_raw as g
ep = sys.argv[1]
def rng(*fields):
    st, msg, r = g.call(ep, "/etcdserverpb.KV/Range", g.f_bytes(1, "r/") + g.f_bytes(2, "r0") + b"".join(fields))
    if st != 0:
        return None, "error %s %s" % (st, msg)
    return g.decode(r), r
d, raw = rng(g.f_int(9, 1))
print("count_only", d.get(4, [0])[0], len(d.get(2, [])))
d, raw = rng()
mods = sorted(g.decode(kv)[3][0] for kv in d[2])
d, raw = rng(g.f_int(10, mods[3]))
print("min_mod", g.keys(raw), d.get(4, [0])[0])
d, raw = rng(g.f_int(11, mods[1]))
print("max_mod", g.keys(raw))
d, raw = rng(g.f_int(9, 1), g.f_int(3, 2))
print("count_only+limit", d.get(4, [0])[0], len(d.get(2, [])))
EOF
)
# etcd counts before the filters and the limit
expect_eq "count_only and filters" "count_only 5 0
min_mod ['r/d', 'r/e'] 5
max_mod ['r/a', 'r/b']
count_only+limit 5 0" "$out"

check "errors: empty key, duplicate key in txn, too many txn ops (default 128)"
expect_error "put of an empty key" "etcdserver: key is not provided" put "" v
expect_error "get of an empty key" "etcdserver: key is not provided" get ""
expect_error "del of an empty key" "etcdserver: key is not provided" del ""
printf '\nput dup 1\nput dup 2\n\n\n' >"$T/txn"
expect_error "two puts of one key" "etcdserver: duplicate key given in txn request" txn <"$T/txn"
printf '\nput dup/a 1\ndel dup/ --prefix\n\n\n' >"$T/txn"
expect_error "put and delete of one key" "etcdserver: duplicate key given in txn request" txn <"$T/txn"
printf '\nput dup 1\n\nput dup 2\n\n' >"$T/txn"
expect_run "no key was written by the refused txns" "" get dup --prefix
expect_run "the same key in both branches is fine" $'SUCCESS\n\nOK' txn <"$T/txn"
expect_run "written" "1" get dup --print-value-only
{ echo; for i in $(seq 1 128); do echo "put ops/$i v"; done; echo; echo; } >"$T/txn"
run txn <"$T/txn"
expect_eq "128 puts in one txn" 0 "$RC"
{ echo; for i in $(seq 1 129); do echo "put ops/$i v"; done; echo; echo; } >"$T/txn"
expect_error "129 puts in one txn" "etcdserver: too many operations in txn request" txn <"$T/txn"

# ---- large values ----

check "large values: 1 MB binary value via stdin, byte-exact"
head -c 1000000 /dev/urandom >"$T/v1m"
run put big/bin <"$T/v1m"
expect_eq "put" "OK" "$OUT"
value_to "$T/v1m.out" big/bin
expect_true "read back byte-exact" cmp -s "$T/v1m" "$T/v1m.out"
run get big/bin --keys-only -w json
expect_eq "version" 1 "$(json 'd["kvs"][0]["version"]')"
head -c 1000000 /dev/urandom | base64 -w0 >"$T/v1m.txt"
run put big/text <"$T/v1m.txt"
run get big/text --print-value-only
expect_true "text value via --print-value-only" [ "$OUT" == "$(cat "$T/v1m.txt")" ]

check "large values: sizes around the 90 KB split, overwrite and history"
revs=()
sizes=(89999 90000 90001 180000 180001 5 270001 1 1500000)
for n in "${sizes[@]}"; do
    head -c "$n" /dev/urandom >"$T/v$n"
    revs+=("$(rev_of put big/split <"$T/v$n")")
    value_to "$T/v$n.out" big/split
    expect_true "$n bytes read back" cmp -s "$T/v$n" "$T/v$n.out"
done
for i in "${!sizes[@]}"; do
    n=${sizes[$i]}
    value_to "$T/v$n.out" big/split --rev="${revs[$i]}"
    expect_true "$n bytes read back at its revision" cmp -s "$T/v$n" "$T/v$n.out"
done
run get big/split -w json
expect_eq "version after ${#sizes[@]} puts" "${#sizes[@]}" "$(json 'd["kvs"][0]["version"]')"
run del big/split
expect_run "deleted" "" get big/split
value_to "$T/vh.out" big/split --rev="${revs[6]}"
expect_true "history of a deleted split value" cmp -s "$T/v270001" "$T/vh.out"
BIG_REVS=("${revs[@]}")

check "large values: --max-request-bytes default 1.5 MiB"
head -c 1600000 /dev/urandom >"$T/v16"
expect_error "1.6 MB value" "etcdserver: request is too large" put big/toolarge <"$T/v16"
head -c 2200000 /dev/urandom >"$T/v22"
expect_error "2.2 MB value: over gRPC's limit" "ResourceExhausted" put big/toolarge <"$T/v22"
expect_run "nothing written" "" get big/toolarge

check "keys: long keys"
k9=$(head -c 9000 /dev/zero | tr '\0' k)
expect_run "9000-byte key" "OK" put "$k9" v
expect_run "read back" "v" get "$k9" --print-value-only
# etcd has no key length limit below --max-request-bytes; etcd-fdb's is the store's (a key
# must fit a 10,000-byte FoundationDB key with its subspace prefix): a documented difference.
k20=$(head -c 20000 /dev/zero | tr '\0' k)
if [ "$FLAVOR" = etcd ]; then
    expect_run "20000-byte key" "OK" put "$k20" v
    run del "$k20"
else
    expect_error "20000-byte key is refused" "etcdserver: request is too large" put "$k20" v
    expect_run "and nothing was written" "" get "$k20" --print-value-only
fi
run del "$k9"

check "bulk: 2000 keys in 20 txns, read back in batches, deleted at once"
for ((b = 0; b < 20; b++)); do
    { echo; for ((i = 0; i < 100; i++)); do printf 'put bulk/%05d value-%d\n' $((b * 100 + i)) $((b * 100 + i)); done; echo; echo; } >"$T/txn"
    run txn <"$T/txn"
    [ "$RC" = 0 ] || fail "txn $b: $ERR"
done
run get bulk/ --prefix -w json
expect_eq "count and kvs" "2000 2000" "$(json '"%d %d" % (d["count"], len(d["kvs"]))')"
expect_eq "in key order" True "$(json 'str([s(k["key"]) for k in d["kvs"]] == ["bulk/%05d" % i for i in range(2000)])')"
expect_eq "values" True "$(json 'str(all(s(k["value"]) == "value-%d" % i for i, k in enumerate(d["kvs"])))')"
expect_keys "--limit 3 in the middle" $'bulk/01500\nbulk/01501\nbulk/01502' get bulk/01500 bulk/z --limit 3
expect_keys "last key by descending order" "bulk/01999" get bulk/ --prefix --order=DESCEND --limit 1
expect_run "del --prefix" "2000" del bulk/ --prefix
expect_run "gone" "" get bulk/ --prefix

check "concurrency: parallel puts get distinct revisions"
jobs_started=()
for i in $(seq 1 20); do
    ctl put "par/$i" v -w json >"$T/par.$i" 2>&1 &
    jobs_started+=($!)
done
wait "${jobs_started[@]}"
out=$(python3 - "$T" <<'EOF' 2>&1
import glob, json, sys
revs = [json.load(open(f))["header"]["revision"] for f in glob.glob(sys.argv[1] + "/par.*")]
print(len(revs), len(set(revs)))
EOF
)
expect_eq "20 puts, 20 distinct revisions" "20 20" "$out"
run get par/ --prefix -w json
expect_eq "each key's mod_revision is its put's revision" True "$(json 'str(sorted(k["mod_revision"] for k in d["kvs"]) == sorted(k["create_revision"] for k in d["kvs"]))')"

check "concurrency: no lost update under contention on one key"
# 40 writers, 10 puts each, for a few seconds (several of the embedded engine's one-second
# conflict-history generations): every put must be acknowledged (etcd does not fail a put
# for contention) and the key's version must count every one of them. Two puts that both
# read version N and both write N+1 leave it short.
jobs_started=()
for ((w = 1; w <= 40; w++)); do
    (for ((i = 1; i <= 10; i++)); do ctl put contended "w$w-$i" >/dev/null 2>&1 && echo ok; done >"$T/writer.$w") &
    jobs_started+=($!)
done
wait "${jobs_started[@]}"
acked=$(cat "$T"/writer.* | wc -l)
expect_eq "puts acknowledged" 400 "$acked"
expect_eq "version counts every acknowledged put" "$acked" "$(kv_fields contended | awk '{print $3}')"

# ---- maintenance, cluster, health ----

check "maintenance: endpoint status, health, member list, hashkv, defrag, alarms"
cur=$(rev_of get x)
run endpoint status -w json
expect_eq "rc" 0 "$RC"
expect_eq "status revision" "$cur" "$(json 'd[0]["Status"]["header"]["revision"]')"
expect_eq "this member is the leader" True "$(json 'str(d[0]["Status"]["leader"] == d[0]["Status"]["header"]["member_id"])')"
expect_eq "version is set" True "$(json 'str(len(d[0]["Status"]["version"]) > 0)')"
expect_eq "db size is set" True "$(json 'str(d[0]["Status"]["dbSize"] > 0)')"
member=$(json '"%x" % d[0]["Status"]["header"]["member_id"]')
run endpoint status
expect_contains "table form" "127.0.0.1:$PORT, $member," "$OUT"
run endpoint health
expect_contains "health" "127.0.0.1:$PORT is healthy: successfully committed proposal" "$OUT$ERR"
run member list
expect_eq "member list rc" 0 "$RC"
expect_contains "member list: id, started, name" "$member, started, e2e," "$OUT"
expect_contains "member list: client URL" "$URL" "$OUT"
run member list -w json
expect_eq "one member" 1 "$(json 'len(d["members"])')"
run endpoint hashkv -w json
h1=$(json 'd[0]["HashKV"]["hash"]')
run endpoint hashkv -w json
expect_eq "hashkv is stable without writes" "$h1" "$(json 'd[0]["HashKV"]["hash"]')"
run put hk changed
run endpoint hashkv -w json
expect_true "hashkv changes with a write" [ "$h1" != "$(json 'd[0]["HashKV"]["hash"]')" ]
expect_run "defrag" "Finished defragmenting etcd member[$URL]" defrag
expect_run "alarm list is empty" "" alarm list

check "unimplemented RPCs fail fast with Unimplemented, never hang"
if [ "$FLAVOR" = etcd-fdb ]; then
    t0=$(now_ms)
    run user list
    t1=$(now_ms)
    expect_true "user list failed" [ "$RC" != 0 ]
    expect_true "user list did not time out" [ "$RC" != 124 ]
    expect_contains "user list" "code = Unimplemented" "$ERR"
    expect_true "user list answered within 5 s ($((t1 - t0)) ms)" [ $((t1 - t0)) -lt 5000 ]
fi
out=$(cd "$T" && python3 - "$URL" <<'EOF' 2>&1
import sys
import grpc_raw as g
print(g.call(sys.argv[1], "/etcdserverpb.KV/NoSuchMethod", None)[:2])
print(g.call(sys.argv[1], "/no.such.Service/Method", None)[:2])
EOF
)
expect_eq "raw calls" "(12, 'unknown method NoSuchMethod for service etcdserverpb.KV')
(12, 'unknown service no.such.Service')" "$out"
expect_keys "the server still answers" "r/a" get r/a

# ---- compaction (last: it removes the history the checks above read) ----

check "compaction: compact, compacted and future revisions, --physical"
k1=$(rev_of put cp/k v1)
k2=$(rev_of put cp/k v2)
k3=$(rev_of put cp/k v3)
expect_run "compact" "compacted revision $k2" compact "$k2"
expect_error "get below the compacted revision" "etcdserver: mvcc: required revision has been compacted" get cp/k --rev="$k1"
expect_run "get at the compacted revision" "v2" get cp/k --rev="$k2" --print-value-only
expect_run "get after it" "v3" get cp/k --rev="$k3" --print-value-only
expect_run "latest" "v3" get cp/k --print-value-only
expect_eq "fields survive" "$k1 $k3 3 v3" "$(kv_fields cp/k)"
expect_error "compact again at the same revision" "etcdserver: mvcc: required revision has been compacted" compact "$k2"
expect_error "compact below it" "etcdserver: mvcc: required revision has been compacted" compact "$k1"
expect_error "compact a future revision" "etcdserver: mvcc: required revision is a future revision" compact "$((k3 + 1000000000))"
expect_error "get a future revision" "etcdserver: mvcc: required revision is a future revision" get cp/k --rev="$((k3 + 1000000000))"
expect_error "history of other keys below it is gone" "etcdserver: mvcc: required revision has been compacted" \
    get big/split --rev="${BIG_REVS[6]}"
k4=$(rev_of put cp/k v4)
expect_run "compact --physical" "compacted revision $k4" compact "$k4" --physical
expect_error "get below it" "etcdserver: mvcc: required revision has been compacted" get cp/k --rev="$k3"
expect_run "get at it" "v4" get cp/k --rev="$k4" --print-value-only
expect_keys "live keys are untouched" $'r/a\nr/b\nr/c\nr/d\nr/e' get r/ --prefix
value_to "$T/v1m.out" big/bin
expect_true "a split value written before the compaction" cmp -s "$T/v1m" "$T/v1m.out"
run endpoint hashkv
expect_eq "hashkv after compaction" 0 "$RC"

# ---- restart ----

check "restart: SIGTERM exits 0; data and revisions survive"
run get cp/k -w json
before_rev=$(json 'd["header"]["revision"]')
before_kv=$(kv_fields cp/k)
before_member=$(run endpoint status -w json; json 'd[0]["Status"]["header"]["member_id"]')
stop_server TERM
expect_clean_exit "exit code after SIGTERM"
[ "$FLAVOR" = etcd ] || expect_contains "logged the shutdown" "SIGTERM" "$(cat "$SRV_LOG")"
if start_server main2 --name e2e --data-dir "$DATA" --listen-client-urls "$URL"; then
    MAIN_PID=$SRV_PID
    expect_eq "revision after restart" "$before_rev" "$(rev_of get cp/k)"
    expect_eq "cp/k after restart" "$before_kv" "$(kv_fields cp/k)"
    expect_keys "range after restart" $'r/a\nr/b\nr/c\nr/d\nr/e' get r/ --prefix
    value_to "$T/v1m.out" big/bin
    expect_true "1 MB value after restart" cmp -s "$T/v1m" "$T/v1m.out"
    expect_error "compaction survives" "etcdserver: mvcc: required revision has been compacted" get cp/k --rev="$k3"
    after=$(rev_of put cp/k v5)
    expect_true "a new write's revision exceeds the old ($before_rev < $after)" lt "$before_rev" "$after"
    expect_eq "version continues" "$k1 $after 5 v5" "$(kv_fields cp/k)"
    run endpoint status -w json
    expect_eq "member id is stable" "$before_member" "$(json 'd[0]["Status"]["header"]["member_id"]')"
else
    fail "restart on the same data dir failed"
fi

check "startup: a second server on a busy port or data dir exits non-zero"
"$BIN" --data-dir "$T/other.data" --listen-client-urls "$URL" >"$T/busy-port.log" 2>&1 &
pid=$!
PIDS+=("$pid")
wait_exit "$pid" 10
# etcd: "listen tcp 127.0.0.1:PORT: bind: address already in use"
expect_error_exit "same port: exit code $EXIT_RC is an error" "$EXIT_RC"
if [ "$EXIT_RC" = 124 ]; then
    kill -TERM "$pid"
    wait_exit "$pid" 10
fi
if [ "$FLAVOR" = etcd-fdb ]; then
    port2=$(free_port)
    "$BIN" --data-dir "$DATA" --listen-client-urls "http://127.0.0.1:$port2" >"$T/busy-dir.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_exit "$pid" 10
    expect_error_exit "same data dir: exit code $EXIT_RC is an error" "$EXIT_RC"
    expect_contains "same data dir: message" "etcd-fdb: cannot open" "$(cat "$T/busy-dir.log")"
    if [ "$EXIT_RC" = 124 ]; then
        kill -TERM "$pid"
        wait_exit "$pid" 10
    fi
fi
expect_run "the first server still answers" "v5" get cp/k --print-value-only

check "--prefix: instances in one store do not see each other"
if only_fdb; then
    stop_server TERM
    expect_eq "exit code after SIGTERM" 0 "$EXIT_RC"
    if start_server prefixed --name e2e --data-dir "$DATA" --listen-client-urls "$URL" --prefix other; then
        expect_keys "other prefix: empty keyspace" "" get '' --from-key
        expect_eq "other prefix: fresh revision" 1 "$(rev_of get x)"
        expect_run "write there" "OK" put only-in-other yes
        stop_server INT
        expect_eq "exit code after SIGINT" 0 "$EXIT_RC"
        expect_contains "logged the shutdown" "SIGINT" "$(cat "$SRV_LOG")"
    else
        fail "start with --prefix other failed"
    fi
    if start_server main3 --name e2e --data-dir "$DATA" --listen-client-urls "$URL"; then
        MAIN_PID=$SRV_PID
        expect_run "default prefix: its data" "v5" get cp/k --print-value-only
        expect_run "default prefix: not the other's" "" get only-in-other
    else
        fail "restart with the default prefix failed"
    fi
fi

check "SIGINT exits 0"
stop_server INT
expect_clean_exit "exit code after SIGINT"

# ===================================================================================
# Request limits
# ===================================================================================

check "limits: --max-request-bytes and --max-txn-ops"
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
if start_server limits --data-dir "$T/limits.data" --listen-client-urls "$URL" \
    --max-request-bytes 1024 --max-txn-ops 3; then
    use_endpoint "$URL"
    expect_run "small put" "OK" put small v
    expect_error "2000-byte value" "etcdserver: request is too large" put big "$(head -c 2000 /dev/zero | tr '\0' x)"
    head -c 600000 /dev/zero | tr '\0' x >"$T/v600k"
    # etcd: "rpc error: code = ResourceExhausted desc = grpc: received message larger than max (600009 vs. 525312)"
    expect_error "600 KB value (over 1024 + 512 KiB)" "code = ResourceExhausted" put big <"$T/v600k"
    expect_contains "600 KB value message" "larger than max (600009 vs. 525312)" "$ERR"
    printf '\nput a 1\nput b 2\nput c 3\n\n\n' >"$T/txn"
    expect_run "3 ops" "$(printf 'SUCCESS\n\nOK\n\nOK\n\nOK')" txn <"$T/txn"
    printf '\nput a 1\nput b 2\nput c 3\nput d 4\n\n\n' >"$T/txn"
    expect_error "4 ops" "etcdserver: too many operations in txn request" txn <"$T/txn"
    printf 'value("a") = "1"\nvalue("a") = "1"\nvalue("a") = "1"\nvalue("a") = "1"\n\n\n\n' >"$T/txn"
    expect_error "4 compares" "etcdserver: too many operations in txn request" txn <"$T/txn"
    printf '\n\nput a 1\nput b 2\nput c 3\nput d 4\n\n' >"$T/txn"
    expect_error "4 failure ops" "etcdserver: too many operations in txn request" txn <"$T/txn"
    expect_keys "nothing written by refused requests" $'a\nb\nc\nsmall' get '' --from-key
    stop_server TERM
    expect_clean_exit "exit code"
else
    fail "server with limits did not start"
fi

# ===================================================================================
# TLS
# ===================================================================================

# A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and an
# unrelated self-signed client certificate.
PKI="$T/pki"
mkdir -p "$PKI"
(
    cd "$PKI" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=e2e-ca" &&
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext &&
        openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "/CN=e2e-client" &&
        printf 'extendedKeyUsage=clientAuth\n' >client.ext &&
        openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 -extfile client.ext &&
        openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.crt -days 2 -subj "/CN=rogue"
) >"$T/openssl.log" 2>&1
PKI_OK=$?

check "TLS: https listener with --cert-file/--key-file"
if [ "$PKI_OK" != 0 ]; then
    fail "openssl failed: $(tail -5 "$T/openssl.log")"
else
    TPORT=$(free_port)
    HPORT=$(free_port)
    if start_server tls --data-dir "$T/tls.data" \
        --listen-client-urls "https://127.0.0.1:$TPORT,http://127.0.0.1:$HPORT" \
        --cert-file "$PKI/server.crt" --key-file "$PKI/server.key"; then
        use_endpoint "https://127.0.0.1:$TPORT" --cacert "$PKI/ca.crt"
        expect_run "put over TLS" "OK" put secure yes
        expect_run "get over TLS" $'secure\nyes' get secure
        use_endpoint "https://localhost:$TPORT" --cacert "$PKI/ca.crt"
        expect_run "by the name localhost" "yes" get secure --print-value-only
        use_endpoint "http://127.0.0.1:$HPORT"
        expect_run "the plaintext listener next to it" "yes" get secure --print-value-only
        use_endpoint "127.0.0.1:$TPORT"
        t0=$(now_ms)
        run get secure --command-timeout=3s
        t1=$(now_ms)
        expect_refused "plaintext client to the TLS port fails (rc $RC, output [$OUT])"
        expect_true "within the command timeout ($((t1 - t0)) ms)" [ $((t1 - t0)) -lt 15000 ]
        use_endpoint "https://127.0.0.1:$TPORT"
        run get secure --command-timeout=3s
        expect_refused "TLS client that does not trust the CA fails (rc $RC)"
        use_endpoint "https://127.0.0.1:$TPORT" --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key"
        expect_run "a client certificate is accepted when not required" "yes" get secure --print-value-only
        stop_server TERM
        expect_clean_exit "exit code"
    else
        fail "TLS server did not start"
    fi
fi

check "mTLS: --client-cert-auth with --trusted-ca-file"
if [ "$PKI_OK" = 0 ]; then
    TPORT=$(free_port)
    if start_server mtls --data-dir "$T/mtls.data" --listen-client-urls "https://127.0.0.1:$TPORT" \
        --cert-file "$PKI/server.crt" --key-file "$PKI/server.key" \
        --client-cert-auth --trusted-ca-file "$PKI/ca.crt"; then
        use_endpoint "https://127.0.0.1:$TPORT" --cacert "$PKI/ca.crt" --cert "$PKI/client.crt" --key "$PKI/client.key"
        expect_run "with a client certificate: put" "OK" put mutual yes
        expect_run "with a client certificate: get" "yes" get mutual --print-value-only
        use_endpoint "https://127.0.0.1:$TPORT" --cacert "$PKI/ca.crt"
        run get mutual --command-timeout=3s
        expect_refused "without a client certificate fails (rc $RC)"
        use_endpoint "https://127.0.0.1:$TPORT" --cacert "$PKI/ca.crt" --cert "$PKI/rogue.crt" --key "$PKI/rogue.key"
        run get mutual --command-timeout=3s
        expect_refused "with a certificate from another CA fails (rc $RC)"
        stop_server TERM
        expect_clean_exit "exit code"
    else
        fail "mTLS server did not start"
    fi
else
    fail "no certificates (openssl failed)"
fi

finish_check
[ "$SKIPPED" = 0 ] || echo "($SKIPPED checks skipped against $FLAVOR)"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
