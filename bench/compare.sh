#!/usr/bin/env bash
# compare.sh -- etcd-fdb (embedded store) against the real etcd on this machine, side by side.
#
# Runs each workload against etcd, then against etcd-fdb (never both at once), each on 127.0.0.1
# only, with a fresh temporary data directory per workload group, both durable (etcd fsyncs its
# WAL; etcd-fdb's embedded store fsyncs each commit group). The load comes from real etcd clients:
# `etcdctl check perf` and bench/loadgen (Go, go.etcd.io/etcd/client/v3). Prints every figure for
# both servers and the ratio etcd-fdb/etcd, writes them to bench/results/<date>.txt, and prints a
# markdown table at the end.
#
#   bench/compare.sh                 # quick run (~16 minutes)
#   bench/compare.sh --full          # everything at full size (~36 minutes)
#   bench/compare.sh --workloads put,range --duration 20
#
# See bench/README.md for what each workload does.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

usage() {
    cat <<'EOF'
usage: bench/compare.sh [options]

  --quick                 quick run (default): 10 s per point, check perf xl, 1k/10k watchers,
                          200,000 keys loaded
  --full                  full run: 30 s per point, check perf s m l xl, 1k/10k/100k watchers,
                          1,000,000 keys loaded
  --workloads LIST        comma-separated subset of: checkperf,put,range,txn,watch,lease,load,
                          watchscale,leasescale (default: all)
  --duration SECS         measured seconds per point (put, range, txn, watch, keepalive)
  --checkperf-loads LIST  e.g. "s,m,l,xl"
  --put-clients LIST      e.g. "1,100,1000"
  --watchers LIST         e.g. "1000,10000,100000"
  --scale-watchers LIST   watchers of the watchscale points, on 1,000 streams
                          (default "1000,10000,100000")
  --expiry-leases N       leases expiring together in leasescale, 10 keys each (default 10000)
  --load-keys N           keys of 1 KiB written by the load workload
  --servers LIST          order in which the servers run (default "etcd,etcd-fdb")
  --etcd PATH             etcd binary (default /usr/bin/etcd)
  --etcdctl PATH          etcdctl binary (default: etcdctl on PATH)
  --etcd-fdb PATH         etcd-fdb binary (default: built here, Release, in --build-dir)
  --build-dir DIR         where etcd-fdb and the load generator are built
                          (default /tmp/etcd-fdb-bench-build)
  --out FILE              results file (default bench/results/<date>.txt)
  --update-readme         replace the results table in bench/README.md with this run's
  --keep                  keep the temporary data directories
EOF
}

ORIG_ARGS="$*"
MODE=quick
WORKLOADS=checkperf,put,range,txn,watch,lease,load,watchscale,leasescale
DURATION=""
CHECKPERF_LOADS=""
PUT_CLIENTS="1,100,1000"
WATCHERS=""
SCALE_WATCHERS="1000,10000,100000"
EXPIRY_LEASES=10000
LOAD_KEYS=""
SERVERS="etcd,etcd-fdb"
ETCD_BIN=/usr/bin/etcd
ETCDCTL_BIN=$(command -v etcdctl || echo /usr/bin/etcdctl)
FDB_BIN=""
BUILD_DIR=/tmp/etcd-fdb-bench-build
OUT=""
UPDATE_README=0
KEEP=0

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --workloads) WORKLOADS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --checkperf-loads) CHECKPERF_LOADS=$2; shift ;;
    --put-clients) PUT_CLIENTS=$2; shift ;;
    --watchers) WATCHERS=$2; shift ;;
    --scale-watchers) SCALE_WATCHERS=$2; shift ;;
    --expiry-leases) EXPIRY_LEASES=$2; shift ;;
    --load-keys) LOAD_KEYS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --etcd) ETCD_BIN=$2; shift ;;
    --etcdctl) ETCDCTL_BIN=$2; shift ;;
    --etcd-fdb) FDB_BIN=$2; shift ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    --out) OUT=$2; shift ;;
    --update-readme) UPDATE_README=1 ;;
    --keep) KEEP=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ "$MODE" = full ]; then
    : "${DURATION:=30}" "${CHECKPERF_LOADS:=s,m,l,xl}" "${WATCHERS:=1000,10000,100000}" "${LOAD_KEYS:=1000000}"
else
    : "${DURATION:=10}" "${CHECKPERF_LOADS:=xl}" "${WATCHERS:=1000,10000}" "${LOAD_KEYS:=200000}"
fi
list() { tr ',' ' ' <<<"$1"; }
want() { [[ ",$WORKLOADS," == *",$1,"* ]]; }

# 1,000 clients (check perf xl opens 1,000 connections) need more descriptors than the default.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard"
if [ "$(ulimit -n)" -lt 4096 ]; then
    echo "compare.sh: ulimit -n is $(ulimit -n); 1,000 clients need more (raise the hard limit)" >&2
    exit 1
fi

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Build etcd-fdb (Release) and the load generator.
mkdir -p "$BUILD_DIR"
if [ -z "$FDB_BIN" ]; then
    log "building etcd-fdb (Release) in $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$BUILD_DIR/cmake.log" 2>&1 ||
        { cat "$BUILD_DIR/cmake.log" >&2; exit 1; }
    ninja -C "$BUILD_DIR" etcd-fdb >"$BUILD_DIR/ninja.log" 2>&1 || { tail -30 "$BUILD_DIR/ninja.log" >&2; exit 1; }
    FDB_BIN=$BUILD_DIR/etcd-fdb
fi
log "building the load generator"
(cd "$HERE/loadgen" && go build -o "$BUILD_DIR/loadgen" .)
LG=$BUILD_DIR/loadgen
[ -x "$ETCD_BIN" ] || { echo "compare.sh: no etcd at $ETCD_BIN (apt-get install etcd-server)" >&2; exit 1; }
[ -x "$ETCDCTL_BIN" ] || { echo "compare.sh: no etcdctl (apt-get install etcd-client)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/etcd-compare.XXXXXX")
STAMP=$(date +%Y-%m-%d-%H%M)
mkdir -p "$HERE/results"
: "${OUT:=$HERE/results/$STAMP.txt}"
RAW=$WORK/raw.txt
: >"$RAW"

SPID=""
cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill -KILL "$SPID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Servers. start_server KIND DATADIR [START_NS_VAR]: starts and waits until a Range is served;
# sets SPID and EP.
SERVER_N=0
start_server() {
    local kind=$1 dir=$2 ports p1 p2
    ports=$("$LG" freeport -n 2)
    read -r p1 p2 <<<"$ports"
    EP=127.0.0.1:$p1
    SERVER_N=$((SERVER_N + 1))
    local logf=$WORK/$kind-$SERVER_N.log
    START_NS=$(date +%s%N)
    case "$kind" in
    etcd)
        "$ETCD_BIN" --name bench --data-dir "$dir" \
            --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
            --listen-peer-urls "http://127.0.0.1:$p2" --initial-advertise-peer-urls "http://127.0.0.1:$p2" \
            --initial-cluster "bench=http://127.0.0.1:$p2" \
            --quota-backend-bytes 8589934592 >"$logf" 2>&1 &
        ;;
    etcd-fdb)
        "$FDB_BIN" --data-dir "$dir" --listen-client-urls "http://$EP" >"$logf" 2>&1 &
        ;;
    *) echo "unknown server $kind" >&2; exit 2 ;;
    esac
    SPID=$!
    CUR_NOISE=""
    PROBE=$("$LG" probe -endpoints "$EP" -start-ns "$START_NS" -timeout 300s -label "$kind") || {
        echo "compare.sh: $kind did not start; its log:" >&2; tail -20 "$logf" >&2; exit 1; }
}

stop_server() {
    [ -n "$SPID" ] || return 0
    kill -TERM "$SPID" 2>/dev/null || true
    local i
    for i in $(seq 600); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SPID" 2>/dev/null; then
        log "server $SPID did not stop in 60 s; killing it"
        kill -KILL "$SPID" 2>/dev/null || true
    fi
    wait "$SPID" 2>/dev/null || true
    SPID=""
    CUR_NOISE=""
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.0f", k / 1024; else print "?" }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
# Results. M[metric|server] = value; METRICS keeps the order; DESC/UNIT/TARGET describe a metric.
declare -A M DESC TARGET NOISE
CUR_NOISE=""
METRICS=()
metric() { # metric ID "description" TARGET (TARGET: ratio ">=2.0" or "<=1.0", absolute
           # "abs<=300" (etcd-fdb's own value), "PASS" or "")
    if [ -z "${DESC[$1]+x}" ]; then METRICS+=("$1"); fi
    DESC[$1]=$2
    TARGET[$1]=${3:-}
}
put_value() { # put_value ID SERVER VALUE
    M["$1|$2"]=$3
    NOISE["$1|$2"]=$CUR_NOISE
    printf 'VALUE %s server=%s value=%s\n' "$1" "$2" "$3" >>"$RAW"
}
field() { # field NAME LINE -> value of NAME=... in a RESULT line
    sed -n "s/.* $1=\([^ ]*\).*/\1/p;T;q" <<<" $2"
}
# lg SERVER GROUP ARGS...: runs the load generator, keeps its RESULT line in LAST.
lg() {
    local server=$1 group=$2
    shift 2
    local out
    out=$("$LG" "$@" -endpoints "$EP" 2>>"$WORK/loadgen.err") || {
        log "loadgen $* failed:"; tail -5 "$WORK/loadgen.err" >&2; LAST=""; return 0; }
    LAST=$(grep '^RESULT' <<<"$out" | tail -1)
    CUR_NOISE=$(field other_cpu "$LAST")
    printf '%s server=%s group=%s loadavg="%s"\n' "$LAST" "$server" "$group" "$(loadavg)" >>"$RAW"
    log "  $server: $(cut -c1-220 <<<"$LAST")"
}

# ---------------------------------------------------------------------------------------------
# Workloads. Each function runs one group against one server (fresh data dir, fresh process).

wl_checkperf() {
    local s=$1 load out writes slowest stddev verdict
    for load in $(list "$CHECKPERF_LOADS"); do
        start_server "$s" "$WORK/$s-checkperf-$load"
        ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints "$EP" check perf --load="$load" >"$WORK/checkperf.out" 2>&1 &
        local cpid=$!
        LAST=$("$LG" cpuwatch -server-pid "$SPID" -client-pid "$cpid" -label "checkperf-$load" || true)
        wait "$cpid" || true
        CUR_NOISE=$(field other_cpu "$LAST")
        out=$(tr '\r' '\n' <"$WORK/checkperf.out" | grep -E 'PASS|FAIL|Slowest|Stddev|Throughput|ERROR' || true)
        stop_server
        CUR_NOISE=$(field other_cpu "$LAST")
        printf 'CHECKPERF server=%s load=%s %s output=%s\n' "$s" "$load" "$(cut -d' ' -f3- <<<"$LAST")" \
            "$(tr '\n' '|' <<<"$out")" >>"$RAW"
        writes=$(grep -oE 'Throughput[^0-9]*[0-9]+' <<<"$out" | grep -oE '[0-9]+$' || echo "?")
        slowest=$(grep -oE 'Slowest request took[^0-9]*[0-9.]+' <<<"$out" | grep -oE '[0-9.]+$' || echo "?")
        stddev=$(grep -oE 'Stddev[^0-9]*[0-9.]+' <<<"$out" | grep -oE '[0-9.]+$' || echo "?")
        verdict=$(tail -1 <<<"$out")
        [ "$verdict" = PASS ] || verdict=FAIL
        local tgt=""
        [ "$load" = xl ] && tgt=PASS
        metric "checkperf-$load-verdict" "check perf --load=$load: verdict" "$tgt"
        metric "checkperf-$load-writes" "check perf --load=$load: writes/s" ""
        metric "checkperf-$load-slowest" "check perf --load=$load: slowest request (s)" ""
        metric "checkperf-$load-stddev" "check perf --load=$load: stddev (s)" ""
        put_value "checkperf-$load-verdict" "$s" "$verdict"
        put_value "checkperf-$load-writes" "$s" "$writes"
        put_value "checkperf-$load-slowest" "$s" "$slowest"
        put_value "checkperf-$load-stddev" "$s" "$stddev"
        metric "checkperf-$load-cpu" "check perf --load=$load: server CPU used (cores of 2)" ""
        put_value "checkperf-$load-cpu" "$s" "$(field server_cpu "$LAST")"
        log "  $s: check perf --load=$load: $verdict, $writes writes/s, slowest ${slowest}s"
    done
}

cpu_metric() { # cpu_metric ID LABEL SERVER: the server's CPU use during the last measurement
    metric "$1-cpu" "$2: server CPU used (cores of 2)" ""
    put_value "$1-cpu" "$3" "$(field server_cpu "$LAST")"
}
latency_metrics() { # latency_metrics ID LABEL SERVER [P99TARGET]
    metric "$1-p50" "$2: p50 latency (ms)" ""
    metric "$1-p99" "$2: p99 latency (ms)" "${4-<=1.0}"
    metric "$1-p999" "$2: p99.9 latency (ms)" ""
    put_value "$1-p50" "$3" "$(field p50_ms "$LAST")"
    put_value "$1-p99" "$3" "$(field p99_ms "$LAST")"
    put_value "$1-p999" "$3" "$(field p999_ms "$LAST")"
}

wl_put() {
    local s=$1 c
    start_server "$s" "$WORK/$s-put"
    for c in $(list "$PUT_CLIENTS"); do
        lg "$s" put put -clients "$c" -duration "${DURATION}s" -server-pid "$SPID"
        metric "put-c$c-ops" "put, $c clients: writes/s" ">=2.0"
        put_value "put-c$c-ops" "$s" "$(field ops_per_s "$LAST")"
        latency_metrics "put-c$c" "put, $c clients" "$s"
        cpu_metric "put-c$c" "put, $c clients" "$s"
    done
    metric "put-rss" "put: server RSS after the put points (MiB)" ""
    put_value "put-rss" "$s" "$(mib "$(rss_kb "$SPID")")"
    stop_server
}

wl_range() {
    local s=$1 cons name
    start_server "$s" "$WORK/$s-range"
    for cons in l s; do
        name=linearizable
        [ "$cons" = s ] && name=serializable
        lg "$s" range range -clients 100 -conns 10 -consistency "$cons" -duration "${DURATION}s" -server-pid "$SPID"
        metric "range-key-$cons-ops" "range one key, $name, 100 clients: reads/s" ">=1.5"
        put_value "range-key-$cons-ops" "$s" "$(field ops_per_s "$LAST")"
        latency_metrics "range-key-$cons" "range one key, $name" "$s"
        cpu_metric "range-key-$cons" "range one key, $name" "$s"
    done
    lg "$s" range range -pages -keys 100000 -page-size 500 -clients 10 -conns 10 -consistency l \
        -duration "${DURATION}s" -server-pid "$SPID"
    metric "range-pages-ops" "range 500-key pages over 100,000 keys, 10 clients: pages/s" ">=1.5"
    put_value "range-pages-ops" "$s" "$(field ops_per_s "$LAST")"
    latency_metrics "range-pages" "range 500-key pages" "$s"
    cpu_metric "range-pages" "range 500-key pages" "$s"
    lg "$s" range range -pages -past-revision -keys 100000 -page-size 500 -clients 10 -conns 10 \
        -consistency l -duration "${DURATION}s" -server-pid "$SPID"
    metric "range-pastpages-ops" "range 500-key pages at a past revision (kube-apiserver's continue): pages/s" ">=1.5"
    put_value "range-pastpages-ops" "$s" "$(field ops_per_s "$LAST")"
    latency_metrics "range-pastpages" "range 500-key pages at a past revision" "$s"
    cpu_metric "range-pastpages" "range 500-key pages at a past revision" "$s"
    stop_server
}

wl_txn() {
    local s=$1
    start_server "$s" "$WORK/$s-txn"
    lg "$s" txn txn -clients 100 -conns 10 -objects 10000 -val-size 1024 -duration "${DURATION}s" -server-pid "$SPID"
    metric "txn-ops" "txn (kube-apiserver update), 100 clients: txns/s" ">=2.0"
    put_value "txn-ops" "$s" "$(field ops_per_s "$LAST")"
    latency_metrics "txn" "txn (kube-apiserver update)" "$s"
    cpu_metric "txn" "txn (kube-apiserver update)" "$s"
    metric "txn-failed" "txn: compares failed (else branch), whole run" ""
    put_value "txn-failed" "$s" "$(field failed_total "$LAST")"
    stop_server
}

wl_watch() {
    local s=$1 w rate
    for w in $(list "$WATCHERS"); do
        start_server "$s" "$WORK/$s-watch-$w"
        lg "$s" watch watch-latency -watchers "$w" -streams 100 -mode distinct -put-rate 1000 \
            -duration "${DURATION}s" -server-pid "$SPID"
        metric "watch-$w-creates" "watch, $w watchers: watch creations/s" ""
        put_value "watch-$w-creates" "$s" "$(field creates_per_s "$LAST")"
        metric "watch-$w-rss" "watch, $w watchers: server RSS with the watchers (MiB)" ""
        put_value "watch-$w-rss" "$s" "$(mib "$(field rss_watchers_kb "$LAST")")"
        metric "watch-$w-delivered" "watch, $w watchers, 1,000 puts/s to watched keys: events delivered/expected" ""
        put_value "watch-$w-delivered" "$s" "$(field events_received "$LAST")/$(field events_expected "$LAST")"
        latency_metrics "watch-$w" "watch, $w watchers, one key each: put-to-event" "$s"
        # Fan-out: every watcher on one key; about 50,000 events/s in all.
        rate=$(awk -v w="$w" 'BEGIN { r = 50000 / w; if (r > 100) r = 100; printf "%g", r }')
        lg "$s" watch watch-latency -watchers "$w" -streams 100 -mode same -put-rate "$rate" \
            -duration "${DURATION}s" -server-pid "$SPID"
        metric "watch-$w-fanout-p50" "watch fan-out, $w watchers on one key: p50 put-to-event (ms)" ""
        metric "watch-$w-fanout-p99" "watch fan-out, $w watchers on one key: p99 put-to-event (ms)" "<=1.0"
        metric "watch-$w-fanout-max" "watch fan-out, $w watchers on one key: slowest event (ms)" ""
        put_value "watch-$w-fanout-p50" "$s" "$(field p50_ms "$LAST")"
        put_value "watch-$w-fanout-p99" "$s" "$(field p99_ms "$LAST")"
        put_value "watch-$w-fanout-max" "$s" "$(field max_ms "$LAST")"
        metric "watch-$w-fanout-delivered" "watch fan-out, $w watchers: events delivered/expected" ""
        put_value "watch-$w-fanout-delivered" "$s" "$(field events_received "$LAST")/$(field events_expected "$LAST")"
        stop_server
    done
}

wl_lease() {
    local s=$1
    start_server "$s" "$WORK/$s-lease"
    lg "$s" lease keepalive -clients 100 -conns 10 -duration "${DURATION}s" -server-pid "$SPID"
    metric "lease-ops" "lease keepalives, 100 streams: keepalives/s" ""
    put_value "lease-ops" "$s" "$(field ops_per_s "$LAST")"
    latency_metrics "lease" "lease keepalive" "$s"
    cpu_metric "lease" "lease keepalive" "$s"
    stop_server
}

wl_load() {
    local s=$1 dir=$WORK/$s-load k
    k=$(awk -v n="$LOAD_KEYS" 'BEGIN { if (n % 1000000 == 0) printf "%dM", n / 1000000; else if (n % 1000 == 0) printf "%dk", n / 1000; else print n }')
    start_server "$s" "$dir"
    lg "$s" load load -keys "$LOAD_KEYS" -val-size 1024 -batch 100 -clients 16 -server-pid "$SPID"
    metric "load-keys-s" "load $k keys of 1 KiB (txns of 100 puts, 16 clients): keys/s" ">=2.0"
    put_value "load-keys-s" "$s" "$(field keys_per_s "$LAST")"
    cpu_metric "load" "load $k keys" "$s"
    sleep 5
    CUR_NOISE=""
    metric "load-rss" "load $k keys: server RSS (MiB)" "<=0.5"
    put_value "load-rss" "$s" "$(mib "$(rss_kb "$SPID")")"
    metric "load-disk" "load $k keys: on-disk size (MiB)" ""
    put_value "load-disk" "$s" "$(mib "$(du -sk "$dir" | cut -f1)")"
    stop_server
    metric "load-disk-stopped" "load $k keys: on-disk size after a clean stop (MiB)" ""
    put_value "load-disk-stopped" "$s" "$(mib "$(du -sk "$dir" | cut -f1)")"
    start_server "$s" "$dir"
    printf '%s server=%s group=restart\n' "$PROBE" "$s" >>"$RAW"
    metric "load-restart" "load $k keys: restart to first served request (ms)" "<=0.25"
    put_value "load-restart" "$s" "$(field first_request_ms "$PROBE")"
    metric "load-rss-restart" "load $k keys: server RSS just after restart (MiB)" ""
    put_value "load-rss-restart" "$s" "$(mib "$(rss_kb "$SPID")")"
    stop_server
}

# watchscale: W idle watchers (one key each, every 10th a one-key range) on 1,000 streams over
# 10 connections: server RSS per stream and per idle watcher; then 1,000 puts/s to random
# watched keys: latency from the put's acknowledgement to the event's arrival.
wl_watchscale() {
    local s=$1 w id
    for w in $(list "$SCALE_WATCHERS"); do
        start_server "$s" "$WORK/$s-watchscale-$w"
        lg "$s" watchscale watch-scale -watchers "$w" -streams 1000 -conns 10 -range-every 10 \
            -put-rate 1000 -duration "${DURATION}s" -server-pid "$SPID"
        id="wscale-$w"
        metric "$id-rss" "watch scale, $w idle watchers on 1,000 streams: server RSS (MiB)" ""
        put_value "$id-rss" "$s" "$(mib "$(field rss_watchers_kb "$LAST")")"
        if [ "$w" -gt 1000 ]; then
            metric "$id-bpw" "watch scale, $w watchers: RSS per idle watcher (bytes)" "abs<=300"
            put_value "$id-bpw" "$s" "$(field bytes_per_watcher "$LAST")"
        fi
        metric "$id-bps" "watch scale, $w watchers: RSS per stream, with its first watcher (bytes)" ""
        put_value "$id-bps" "$s" "$(field bytes_per_stream "$LAST")"
        if [ "$w" -gt 1000 ]; then
            metric "$id-creates" "watch scale, $w watchers: watcher creations/s" ""
            put_value "$id-creates" "$s" "$(field creates_per_s "$LAST")"
        fi
        metric "$id-p50" "watch scale, $w watchers, 1,000 puts/s: p50 put-ack-to-event (ms)" ""
        metric "$id-p99" "watch scale, $w watchers, 1,000 puts/s: p99 put-ack-to-event (ms)" "abs<=10"
        metric "$id-p999" "watch scale, $w watchers, 1,000 puts/s: p99.9 put-ack-to-event (ms)" ""
        put_value "$id-p50" "$s" "$(field p50_ms "$LAST")"
        put_value "$id-p99" "$s" "$(field p99_ms "$LAST")"
        put_value "$id-p999" "$s" "$(field p999_ms "$LAST")"
        metric "$id-send-p99" "watch scale, $w watchers: p99 put-send-to-event (ms)" ""
        put_value "$id-send-p99" "$s" "$(field send_p99_ms "$LAST")"
        metric "$id-before-ack" "watch scale, $w watchers: events that arrived before their put's ack" ""
        put_value "$id-before-ack" "$s" "$(field before_ack "$LAST")/$(field events_received "$LAST")"
        metric "$id-delivered" "watch scale, $w watchers: events delivered/expected" ""
        put_value "$id-delivered" "$s" "$(field events_received "$LAST")/$(field events_expected "$LAST")"
        cpu_metric "$id" "watch scale, $w watchers, 1,000 puts/s" "$s"
        stop_server
    done
}

# leasescale: keepalives/s on one stream (1 and 100 in flight) and on 1,000 streams (one in
# flight each); then EXPIRY_LEASES leases with 10 keys each expiring together (lined up by one
# keepalive each after a third of the 20 s TTL): lag of the DELETE events after the expiry.
wl_leasescale() {
    local s=$1 spec streams per id
    start_server "$s" "$WORK/$s-leasescale"
    for spec in 1:1 1:100 1000:1; do
        streams=${spec%%:*}
        per=${spec##*:}
        lg "$s" leasescale keepalive-pipe -streams "$streams" -leases-per-stream "$per" -conns 10 \
            -duration "${DURATION}s" -server-pid "$SPID"
        id="ka-$streams-$per"
        metric "$id-ops" "keepalives/s, $streams stream(s), $per in flight per stream" ""
        put_value "$id-ops" "$s" "$(field ops_per_s "$LAST")"
        latency_metrics "$id" "keepalive, $streams stream(s), $per in flight" "$s" ""
        cpu_metric "$id" "keepalive, $streams stream(s), $per in flight" "$s"
    done
    stop_server
    start_server "$s" "$WORK/$s-leaseexpiry"
    lg "$s" leasescale lease-expiry -leases "$EXPIRY_LEASES" -keys-per-lease 10 -ttl 20 -clients 64 \
        -conns 10 -server-pid "$SPID"
    id="expiry"
    metric "$id-p50" "expiry of $EXPIRY_LEASES leases (10 keys each) together: p50 lag (ms)" ""
    metric "$id-p99" "expiry of $EXPIRY_LEASES leases together: p99 lag (ms)" ""
    metric "$id-max" "expiry of $EXPIRY_LEASES leases together: max lag (ms)" ""
    metric "$id-min" "expiry of $EXPIRY_LEASES leases together: min lag (ms; < 0: before ack + TTL)" ""
    put_value "$id-p50" "$s" "$(field p50_ms "$LAST")"
    put_value "$id-p99" "$s" "$(field p99_ms "$LAST")"
    put_value "$id-max" "$s" "$(field max_ms "$LAST")"
    put_value "$id-min" "$s" "$(field min_lag_ms "$LAST")"
    metric "$id-early" "expiry: leases deleted before keepalive send + TTL (must be 0)" ""
    put_value "$id-early" "$s" "$(field early_vs_send "$LAST")"
    metric "$id-rate" "expiry: leases revoked per second (first to last DELETE)" ""
    put_value "$id-rate" "$s" "$(field revokes_per_s "$LAST")"
    metric "$id-keys" "expiry: keys deleted/expected" ""
    put_value "$id-keys" "$s" "$(field keys_deleted "$LAST")/$(field keys_expected "$LAST")"
    metric "$id-atomic" "expiry: leases whose keys came in more than one revision or response / deleted twice" ""
    put_value "$id-atomic" "$s" "$(field split_leases "$LAST")/$(field dup_deletes "$LAST")"
    stop_server
}

# ---------------------------------------------------------------------------------------------
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain -- kv mvcc watch lease server 2>/dev/null)" ]; then GIT_REV="$GIT_REV+dirty"; fi
# (awk reads all of it: with `head -1` and pipefail, etcd's SIGPIPE ended the script silently)
ETCD_VERSION=$("$ETCD_BIN" --version 2>/dev/null | awk 'NR == 1 {print $3}')
MACHINE=$(printf '%s; %s cores; %s GiB RAM; kernel %s; data dirs on %s' \
    "$(lscpu | awk -F': *' '/^Model name:/ && !n++ {print $2}')" "$(nproc)" \
    "$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)" "$(uname -r)" \
    "$(df -T "$WORK" | awk 'NR == 2 {print $2 " (" $1 ")"}')")
START_LOAD=$(loadavg)
T_START=$(date +%s)
log "mode=$MODE workloads=$WORKLOADS duration=${DURATION}s servers=$SERVERS; work dir $WORK"
log "machine: $MACHINE; load average $START_LOAD"

for wl in checkperf put range txn watch lease load watchscale leasescale; do
    want "$wl" || continue
    for s in $(list "$SERVERS"); do
        log "$wl: $s"
        "wl_$wl" "$s"
    done
done
T_END=$(date +%s)

# ---------------------------------------------------------------------------------------------
# Report.
S1=$(list "$SERVERS" | awk '{print $1}')
S2=$(list "$SERVERS" | awk '{print $2}')
ratio() { # ratio FDB ETCD -> "1.23x"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2fx", a / b; else print "-" }'
}
verdict() { # verdict TARGET FDB ETCD
    local t=$1 a=$2 b=$3
    [ -n "$t" ] || { echo ""; return; }
    if [ "$t" = PASS ]; then
        [ "$a" = PASS ] && echo "PASS: met" || echo "PASS: **missed**"
        return
    fi
    if [[ "$t" == abs* ]]; then
        awk -v t="${t#abs}" -v a="$a" 'BEGIN {
            op = substr(t, 1, 2); v = substr(t, 3) + 0
            if (!(a ~ /^-?[0-9.]+$/)) { print (op == ">=" ? "≥ " : "≤ ") v ": n/a"; exit }
            ok = (op == ">=") ? (a + 0 >= v) : (a + 0 <= v)
            printf "%s%s: %s\n", (op == ">=" ? "≥ " : "≤ "), substr(t, 3), ok ? "met" : "**missed**"
        }'
        return
    fi
    awk -v t="$t" -v a="$a" -v b="$b" 'BEGIN {
        if (!(a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/) || b + 0 == 0) { print t "x: n/a"; exit }
        r = a / b; op = substr(t, 1, 2); v = substr(t, 3) + 0
        ok = (op == ">=") ? (r >= v) : (r <= v)
        printf "%s%sx: %s\n", (op == ">=" ? "≥ " : "≤ "), substr(t, 3), ok ? "met" : "**missed**"
    }'
}
TABLE=$WORK/table.md
{
    echo "| workload: figure | etcd $ETCD_VERSION | etcd-fdb $GIT_REV | etcd-fdb/etcd | target | other processes' CPU (cores), etcd / etcd-fdb run |"
    echo "|---|---:|---:|---:|---|---|"
    for id in "${METRICS[@]}"; do
        e=${M["$id|etcd"]:-}
        f=${M["$id|etcd-fdb"]:-}
        if [[ "$e" == */* || "$e" == PASS || "$e" == FAIL ]]; then r="-"; else r=$(ratio "$f" "$e"); fi
        n=""
        if [ -n "${NOISE["$id|etcd"]:-}${NOISE["$id|etcd-fdb"]:-}" ]; then n="${NOISE["$id|etcd"]:--} / ${NOISE["$id|etcd-fdb"]:--}"; fi
        printf '| %s | %s | %s | %s | %s | %s |\n' "${DESC[$id]}" "${e:--}" "${f:--}" "$r" "$(verdict "${TARGET[$id]}" "$f" "$e")" "$n"
    done
} >"$TABLE"

{
    echo "# etcd-fdb vs etcd, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "command: bench/compare.sh $ORIG_ARGS"
    echo "settings: --$MODE --workloads $WORKLOADS --duration $DURATION --checkperf-loads $CHECKPERF_LOADS --put-clients $PUT_CLIENTS --watchers $WATCHERS --scale-watchers $SCALE_WATCHERS --expiry-leases $EXPIRY_LEASES --load-keys $LOAD_KEYS --servers $SERVERS"
    echo "machine: $MACHINE"
    echo "etcd: $ETCD_BIN $ETCD_VERSION (--quota-backend-bytes 8589934592, otherwise defaults: WAL fsync on)"
    echo "etcd-fdb: $FDB_BIN, commit $GIT_REV (embedded RocksDB store, synced commit groups)"
    echo "load average at start: $START_LOAD; at end: $(loadavg); wall time $((T_END - T_START)) s"
    echo
    cat "$TABLE"
    echo
    echo "## raw results"
    cat "$RAW"
} >"$OUT"

if [ "$UPDATE_README" = 1 ]; then
    README=$HERE/README.md
    if grep -q '<!-- results:begin -->' "$README" 2>/dev/null; then
        {
            sed '/<!-- results:begin -->/q' "$README"
            echo
            echo "Measured $(date -u +%Y-%m-%d) with \`bench/compare.sh $ORIG_ARGS\` (results file \`bench/results/$(basename "$OUT")\`), etcd-fdb at $GIT_REV."
            echo "Machine: $MACHINE. Load average at start $START_LOAD."
            echo
            cat "$TABLE"
            echo
            sed -n '/<!-- results:end -->/,$p' "$README"
        } >"$README.new" && mv "$README.new" "$README"
        log "updated $README"
    fi
fi

echo
echo "Results: $OUT"
echo
cat "$TABLE"
