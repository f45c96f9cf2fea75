#!/usr/bin/env bash
# lease_test.sh -- leases end to end with etcdctl: grant, put --lease, timetolive --keys,
# list, keep-alive (--once and the stream), revoke, expiry seen by a watch as DELETEs of one
# revision, errors for unknown leases, and live leases across a restart.
#
# Usage: lease_test.sh path/to/etcd-fdb. Ends with "N passed, N failed".
set -u
BIN=${1:?usage: lease_test.sh path/to/etcd-fdb}
export ETCDCTL_API=3
exec </dev/null
T=$(mktemp -d "${TMPDIR:-/tmp}/etcd-fdb-lease.XXXXXX")
PID=
PASSED=0
FAILED=0
cleanup()
{
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
E="etcdctl --endpoints=127.0.0.1:$PORT --command-timeout=10s"

start()
{
    "$BIN" --data-dir "$T/data" --listen-client-urls "http://127.0.0.1:$PORT" >>"$T/log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
        $E endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start" >&2
    cat "$T/log" >&2
    exit 2
}

stop()
{
    kill -TERM "$PID"
    wait "$PID"
    local rc=$?
    PID=
    return $rc
}

check()
{
    local name=$1 cond=$2
    if [ "$cond" = 1 ]; then
        echo "ok   $name"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $name"
        FAILED=$((FAILED + 1))
    fi
}

is() { [ "$1" = "$2" ] && echo 1 || echo 0; }
has() { case "$1" in *"$2"*) echo 1 ;; *) echo 0 ;; esac; }

start

# grant, attach, timetolive --keys, list
L=$($E lease grant 30 | awk '{print $2}')
check "grant prints an id" "$( [ -n "$L" ] && echo 1 || echo 0)"
$E put --lease="$L" lk1 v1 >/dev/null
$E put --lease="$L" lk2 v2 >/dev/null
OUT=$($E lease timetolive "$L" --keys)
check "timetolive --keys lists the attached keys" "$(has "$OUT" "attached keys([lk1 lk2])")"
check "timetolive reports the granted TTL" "$(has "$OUT" "granted with TTL(30s)")"
check "lease list shows it" "$(has "$($E lease list)" "$L")"
check "minimum TTL is etcd's 2 s" "$(has "$($E lease grant 1)" "TTL(2s)")"

# keep-alive --once and the stream
check "keep-alive --once" "$(has "$($E lease keep-alive --once "$L")" "keepalived with TTL(30)")"
timeout 3 $E lease keep-alive "$L" >"$T/ka" 2>&1
check "keep-alive stream answers repeatedly" "$( [ "$(grep -c keepalived "$T/ka")" -ge 1 ] && echo 1 || echo 0)"

# errors for unknown leases
check "put with an unknown lease" "$(has "$($E put --lease=1234abcd x y 2>&1)" "etcdserver: requested lease not found")"
check "revoke an unknown lease" "$(has "$($E lease revoke 1234abcd 2>&1)" "requested lease not found")"
check "timetolive of an unknown lease" "$(has "$($E lease timetolive 1234abcd 2>&1)" "already expired")"

# expiry: a watch sees both keys deleted in one revision
S=$($E lease grant 2 | awk '{print $2}')
$E put --lease="$S" ek1 a >/dev/null
$E put --lease="$S" ek2 b >/dev/null
timeout 6 $E watch --prefix ek -w json >"$T/w" 2>&1 &
WP=$!
sleep 5
wait $WP
N=$(python3 - "$T/w" <<'EOF'
import json, sys
revs = set(); dels = 0; resps = 0
dec = json.JSONDecoder(); text = open(sys.argv[1]).read(); i = 0
while True:
    j = text.find("{", i)
    if j < 0: break
    try:
        obj, i = dec.raw_decode(text, j)
    except ValueError:
        i = j + 1; continue
    evs = [e for e in obj.get("Events") or [] if e.get("type") == 1]
    if evs:
        resps += 1
    for e in evs:
        dels += 1; revs.add(e["kv"]["mod_revision"])
print(dels, len(revs), resps)
EOF
)
check "expiry deletes both keys in one revision, one response ($N)" "$(is "$N" "2 1 1")"
check "expired keys are gone" "$(is "$($E get --prefix ek)" "")"
check "the expired lease is gone" "$(has "$($E lease timetolive "$S")" "already expired")"

# revoke deletes the keys
R=$($E lease grant 60 | awk '{print $2}')
$E put --lease="$R" rk v >/dev/null
check "revoke" "$(has "$($E lease revoke "$R")" "revoked")"
check "revoked keys are gone" "$(is "$($E get rk)" "")"

# restart: a live lease keeps its keys and is extended, not expired
K=$($E lease grant 8 | awk '{print $2}')
$E put --lease="$K" rs v >/dev/null
stop
check "SIGTERM exits 0" "$(is $? 0)"
start
OUT=$($E lease timetolive "$K" --keys)
check "after restart the lease lives with its keys ($OUT)" "$(has "$OUT" "attached keys([rs])")"
check "its key survived" "$(is "$($E get rs --print-value-only)" "v")"
# without the handover the new process would wait for the old hold (5 s) to run out first
REM=$(printf %s "$OUT" | sed -n 's/.*remaining(\([0-9]*\)s).*/\1/p')
check "a clean stop hands leadership over at once: the TTL is renewed ($REM s left)" "$( [ "${REM:-0}" -ge 5 ] && echo 1 || echo 0)"
stop

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
