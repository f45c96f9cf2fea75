#!/usr/bin/env bash
# watch_test.sh -- `etcdctl watch` end to end: replay from a past --rev; single key, range
# (key + range_end) and prefix; --prev-kv; interactive mode (`watch -i`: several watches on
# one stream, the `progress` command); compaction while a watch runs and a watch from a
# compacted revision; a range delete seen as DELETE events of one revision in one response;
# the exec-command form. Outputs are compared exactly as etcdctl prints them.
#
# Not covered here: event filters (NOPUT/NODELETE). etcdctl 3.4's watch has no flag for them,
# not even in interactive mode; tests/go/watch_test.go (TestWatchPrevKVAndFilters) covers them.
#
# Usage: watch_test.sh path/to/etcd-fdb. Environment: ETCDCTL (default etcdctl), E2E_KEEP=1
# keeps the temp dir. Given the real etcd's binary instead, the same checks run against etcd
# (to check the checks). Prints one line per check ("ok" or "FAIL" with the reasons) and ends
# with exactly "N passed, N failed"; exits 1 if any check failed.
#
# No check depends on timing: every watch starts at an explicit --rev (the revision before
# the writes it must see), so it prints the same lines however late it is created; a check
# waits (20 s at most) until the expected number of lines has arrived, then compares.
# Revisions are compared by relation, never by value (etcd-fdb's are sparse).
set -u

BIN=${1:?usage: watch_test.sh path/to/etcd-fdb}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ETCDCTL=${ETCDCTL:-etcdctl}
export ETCDCTL_API=3
exec </dev/null

for tool in "$ETCDCTL" python3 timeout; do
    command -v "$tool" >/dev/null || { echo "watch_test.sh: $tool not found" >&2; exit 2; }
done
FLAVOR=etcd-fdb
"$BIN" --version 2>/dev/null | grep -q '^etcd Version:' && FLAVOR=etcd

T=$(mktemp -d "${TMPDIR:-/tmp}/etcd-fdb-watch.XXXXXX")
SRV_PID=""
BG=() # background etcdctl processes still to be ended

cleanup()
{
    local pid
    for pid in "${BG[@]}"; do
        pkill -TERM -P "$pid" 2>/dev/null # its timeout, which passes TERM on to etcdctl
        kill -KILL "$pid" 2>/dev/null
    done
    if [ -n "$SRV_PID" ]; then
        kill -KILL "$SRV_PID" 2>/dev/null
        wait "$SRV_PID" 2>/dev/null
    fi
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- checks ----

. "$(dirname "$0")/checks.sh"

# ---- etcdctl ----

ctl()
{
    timeout 60 "$ETCDCTL" --endpoints="$EP" --dial-timeout=3s --command-timeout=20s "$@"
}

# w ARGS...: a write that must succeed; prints nothing.
w()
{
    local out
    out=$(ctl "$@" 2>&1) || fail "etcdctl $* failed: $out"
}

# rev: the store's current revision (header of a read).
rev()
{
    ctl get nothing-here -w json | python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])'
}

# wrev ARGS...: a write that must succeed; prints its header revision.
wrev()
{
    local out
    out=$(ctl "$@" -w json 2>&1) || { fail "etcdctl $* failed: $out"; echo 0; return; }
    printf %s "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["header"]["revision"])'
}

# watch_bg NAME ARGS...: `etcdctl watch ARGS` in the background, stdout in $T/NAME.out and
# stderr in $T/NAME.err; its pid in WPID[NAME] and its exit code, once ended, in $T/NAME.rc.
declare -A WPID
watch_bg()
{
    local name=$1
    shift
    (
        ctl watch "$@" >"$T/$name.out" 2>"$T/$name.err"
        echo $? >"$T/$name.rc"
    ) &
    WPID[$name]=$!
    BG+=("$!")
}

# wait_for NAME PATTERN [COUNT]: waits (20 s at most) until $T/NAME.out has COUNT (default 1)
# lines matching the extended regular expression PATTERN.
wait_for()
{
    local name=$1 pattern=$2 count=${3:-1} i
    for ((i = 0; i < 200; i++)); do
        [ "$(grep -Ec -- "$pattern" "$T/$name.out" 2>/dev/null)" -ge "$count" ] && return 0
        sleep 0.1
    done
    fail "$name: waited 20 s for $count lines matching [$pattern]; got [$(head -c 800 "$T/$name.out")] stderr [$(head -c 400 "$T/$name.err")]"
    return 1
}

# wait_exit NAME: waits (20 s at most) until the background watch NAME has ended by itself.
wait_exit()
{
    local i
    for ((i = 0; i < 200; i++)); do
        [ -s "$T/$1.rc" ] && return 0
        sleep 0.1
    done
    fail "$1: etcdctl watch did not end within 20 s"
    return 1
}

# stop_watch NAME: ends the background watch NAME (its etcdctl and the subshell around it).
stop_watch()
{
    local pid=${WPID[$1]}
    pkill -TERM -P "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# settle: a quiet moment before comparing a watch's whole output, so that an extra (wrong)
# event sent after the expected ones would show up in it. Not a timing assertion.
settle() { sleep 0.5; }

out_of() { cat "$T/$1.out"; }

# jsummary NAME: the JSON responses of watch NAME, one line per response that has events:
# "TYPE:key@rev TYPE:key@rev ..." with each revision replaced by its rank among the
# revisions seen (r1, r2, ...) so that outputs compare across servers.
jsummary()
{
    python3 - "$T/$1.out" <<'EOF'
import base64, json, sys
text = open(sys.argv[1]).read()
dec = json.JSONDecoder()
resps, i = [], 0
while True:
    j = text.find("{", i)
    if j < 0:
        break
    try:
        obj, i = dec.raw_decode(text, j)
    except ValueError:
        i = j + 1
        continue
    evs = obj.get("Events") or []
    if evs:
        resps.append([("DELETE" if e.get("type") == 1 else "PUT",
                       base64.b64decode(e["kv"]["key"]).decode(), int(e["kv"]["mod_revision"]))
                      for e in evs])
ranks = {r: n + 1 for n, r in enumerate(sorted({e[2] for r in resps for e in r}))}
for r in resps:
    print(" ".join("%s:%s@r%d" % (t, k, ranks[v]) for t, k, v in r))
EOF
}

# ---- the server ----

PORT=$(free_port)
EP="127.0.0.1:$PORT"
start_server()
{
    local extra=() peer i
    if [ "$FLAVOR" = etcd ]; then
        peer="http://127.0.0.1:$(free_port)"
        extra=(--name w --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer"
            --initial-cluster "w=$peer" --advertise-client-urls "http://$EP")
    fi
    "$BIN" --data-dir "$T/data" --listen-client-urls "http://$EP" "${extra[@]}" >"$T/server.log" 2>&1 &
    SRV_PID=$!
    for ((i = 0; i < 150; i++)); do
        ctl endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start; its log:" >&2
    tail -20 "$T/server.log" >&2
    exit 2
}
start_server

# =============================================================================================

check "replay from a past --rev: every event since, in order, then live ones"
w put r/a 1
R=$(wrev put r/a 2)
w put r/b 3
w del r/a
watch_bg replay --rev="$R" --prefix r/
wait_for replay '^(PUT|DELETE)$' 3
w put r/c 4
wait_for replay '^(PUT|DELETE)$' 4
settle
stop_watch replay
expect_eq "output" "PUT
r/a
2
PUT
r/b
3
DELETE
r/a

PUT
r/c
4" "$(out_of replay)"

check "single key, range [key, range_end) and prefix"
R=$(($(rev) + 1))
watch_bg one --rev="$R" k/b
watch_bg range --rev="$R" k/b k/d
watch_bg prefix --rev="$R" --prefix k/
for k in k/a k/b k/bb k/c k/d k/e; do w put "$k" "v-$k"; done
wait_for one '^PUT$' 1
wait_for range '^PUT$' 3
wait_for prefix '^PUT$' 6
settle
stop_watch one
stop_watch range
stop_watch prefix
expect_eq "single key k/b" $'PUT\nk/b\nv-k/b' "$(out_of one)"
expect_eq "range [k/b, k/d)" $'PUT\nk/b\nv-k/b\nPUT\nk/bb\nv-k/bb\nPUT\nk/c\nv-k/c' "$(out_of range)"
expect_eq "prefix k/" "$(for k in k/a k/b k/bb k/c k/d k/e; do printf 'PUT\n%s\nv-%s\n' "$k" "$k"; done | sed '$d'; printf 'v-k/e')" "$(out_of prefix)"

check "--prev-kv: the previous key-value before each event, none for a create"
R=$(($(rev) + 1))
watch_bg prev --rev="$R" --prev-kv p
w put p one
w put p two
w del p
wait_for prev '^(PUT|DELETE)$' 3
settle
stop_watch prev
expect_eq "output" "PUT
p
one
PUT
p
one
p
two
DELETE
p
two
p
" "$(out_of prev)
"

check "range delete: its DELETE events share one revision and arrive in one response"
w put d/1 a
w put d/2 b
w put d/3 c
R=$(($(rev) + 1))
watch_bg del --rev="$R" --prefix d/ -w json
w put d/0 z
wait_for del '"ZC8w"' 1 # d/0 arrived: the watch exists, the delete comes after
DREV=$(wrev del --prefix d/)
wait_for del '"type":1' 1
settle
stop_watch del
expect_eq "events (revisions by rank)" "PUT:d/0@r1 DELETE:d/0@r2 DELETE:d/1@r2 DELETE:d/2@r2 DELETE:d/3@r2" \
    "$(jsummary del | tr '\n' ' ' | sed 's/ $//')"
expect_eq "the delete's response" "DELETE:d/0@r2 DELETE:d/1@r2 DELETE:d/2@r2 DELETE:d/3@r2" "$(jsummary del | tail -1)"
expect_true "the DELETE events carry the delete's revision $DREV" grep -q "\"mod_revision\":$DREV}" "$T/del.out"
R=$(($(rev) + 1))
watch_bg delsimple --rev="$R" --prefix d/
w put d/1 a
w put d/2 b
w del --prefix d/
wait_for delsimple '^DELETE$' 2
settle
stop_watch delsimple
expect_eq "simple output" $'PUT\nd/1\na\nPUT\nd/2\nb\nDELETE\nd/1\n\nDELETE\nd/2\n' "$(out_of delsimple)
"

check "interactive: several watches on one stream, then progress prints a progress notify"
mkfifo "$T/ctl.in"
R=$(($(rev) + 1))
(
    ctl watch -i <"$T/ctl.in" >"$T/inter.out" 2>"$T/inter.err"
    echo $? >"$T/inter.rc"
) &
WPID[inter]=$!
BG+=("$!")
exec 3>"$T/ctl.in"
echo "watch --rev=$R i/a" >&3
echo "watch --rev=$R --prefix --prev-kv i/b" >&3
w put i/a 1
w put i/b1 2
w put i/b1 3
w put i/c 4
LAST=$(wrev put i/a 5)
wait_for inter '^PUT$' 4
settle
expect_eq "events of both watches, each once" "PUT
i/a
1
PUT
i/b1
2
PUT
i/b1
2
i/b1
3
PUT
i/a
5" "$(out_of inter)"
echo progress >&3
wait_for inter '^progress notify: ' 1
PROG=$(sed -n 's/^progress notify: \([0-9]*\)$/\1/p' "$T/inter.out" | head -1)
expect_true "the progress revision ($PROG) is at least the last write's ($LAST)" [ "${PROG:-0}" -ge "$LAST" ]
expect_eq "last line" "progress notify: $PROG" "$(tail -1 "$T/inter.out")"
echo "watch --rev=$R i/c" >&3
wait_for inter '^i/c$' 1
settle
expect_eq "a watch added later replays its key" $'PUT\ni/c\n4' "$(tail -3 "$T/inter.out")"
exec 3>&-
wait_exit inter
expect_eq "end of input: etcdctl's message" "Error: Error reading watch request line: EOF" "$(cat "$T/inter.err")"

check "compaction while a watch runs: it goes on; a watch from a compacted revision is refused"
R0=$(wrev put c/k 1)
R1=$(wrev put c/k 2)
watch_bg live --rev="$R1" --prefix c/
wait_for live '^PUT$' 1
R2=$(wrev put c/k 3)
OUT=$(ctl compact "$R2" 2>&1)
expect_eq "compact" "compacted revision $R2" "$OUT"
w put c/k 4
wait_for live '^PUT$' 3
settle
stop_watch live
expect_eq "the running watch" $'PUT\nc/k\n2\nPUT\nc/k\n3\nPUT\nc/k\n4' "$(out_of live)"
watch_bg compacted --rev="$R0" c/k
wait_exit compacted
expect_eq "stdout from a compacted revision" "" "$(out_of compacted)"
expect_eq "stderr from a compacted revision" "watch was canceled (etcdserver: mvcc: required revision has been compacted)
Error: watch is canceled by the server" "$(cat "$T/compacted.err")"
expect_eq "exit code" 5 "$(cat "$T/compacted.rc")"
watch_bg compactedjson --rev="$R0" c/k -w json
wait_exit compactedjson
OUT=$(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(d["Canceled"], d["CompactRevision"], d["Events"])' "$T/compactedjson.out" 2>&1)
expect_eq "json: canceled, with the compaction revision" "True $R2 []" "$OUT"
watch_bg atcompact --rev="$R2" c/k
wait_for atcompact '^PUT$' 2
settle
stop_watch atcompact
expect_eq "a watch from the compaction revision itself replays" $'PUT\nc/k\n3\nPUT\nc/k\n4' "$(out_of atcompact)"

check "exec-command: run once per event with the event in its environment"
R=$(($(rev) + 1))
watch_bg exec --rev="$R" x -- sh -c 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"'
XREV=$(wrev put x hello)
wait_for exec '^"PUT" ' 1
settle
stop_watch exec
expect_eq "output (etcdctl prints the event, then the command's output)" "PUT
x
hello
\"PUT\" \"x\" \"hello\" $XREV" "$(out_of exec)"

finish_check
kill -TERM "$SRV_PID"
wait "$SRV_PID"
RC=$?
SRV_PID=""
[ "$FLAVOR" = etcd-fdb ] && [ "$RC" != 0 ] && { echo "FAIL the server exited $RC on SIGTERM"; FAILED=$((FAILED + 1)); }
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
