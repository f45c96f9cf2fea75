#!/usr/bin/env bash
# live_test.sh -- a live kube-apiserver on etcd-fdb, driven with kubectl.
#
# Makes a CA and certificates (openssl), starts etcd-fdb over https with mTLS and kube-apiserver
# on it (client certificates both ways, RBAC, service-account keys), then with kubectl:
# namespaces, configmaps, secrets, a CRD and its objects, a deployment updated by scale and
# patch (resourceVersion moves, a stale update conflicts), 320 configmaps listed in chunks of
# 50, watches that see every event, deletes; then kills etcd-fdb (SIGTERM, then SIGKILL) and
# restarts it on the same data dir while the apiserver keeps running, and checks that the
# apiserver recovers (readyz, old objects, new writes, the watch opened before the restart
# sees events made after it). Finally stops both, checks etcd-fdb exits 0 on SIGTERM and that
# the apiserver log has no "Too large resource version" (and lists its other errors).
#
# Usage: live_test.sh path/to/etcd-fdb
# Environment:
#   KUBE_BIN_DIR  directory with kube-apiserver and kubectl; default: tests/kube/build.sh's
#                 cache directory, built there first when missing (about 7 minutes).
#   LIVE_KEEP=1   keep the temp dir (certificates, logs, data dir).
#   ASAN_OPTIONS / UBSAN_OPTIONS pass through to a sanitizer build of etcd-fdb; its log is
#   then checked for sanitizer reports.
# Every kubectl call runs under `timeout` and with --request-timeout. Prints one line per
# named check ("ok" or "FAIL" with the reasons), ends with exactly "N passed, N failed" and
# exits 1 if any check failed.
set -u

BIN=${1:?usage: live_test.sh path/to/etcd-fdb}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
HERE=$(cd "$(dirname "$0")" && pwd)
exec </dev/null

for tool in openssl curl python3 timeout; do
    command -v "$tool" >/dev/null || { echo "live_test.sh: $tool not found" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "live_test.sh: $BIN is not executable" >&2; exit 2; }
if [ -z "${KUBE_BIN_DIR:-}" ]; then
    KUBE_BIN_DIR=$("$HERE/build.sh") || { echo "live_test.sh: building Kubernetes failed" >&2; exit 2; }
fi
APISERVER=$KUBE_BIN_DIR/kube-apiserver
KUBECTL=$KUBE_BIN_DIR/kubectl
for b in "$APISERVER" "$KUBECTL"; do
    [ -x "$b" ] || { echo "live_test.sh: $b not found (run tests/kube/build.sh)" >&2; exit 2; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/etcd-fdb-kube.XXXXXX")
PIDS=() # every process this script started in the background; the exit trap kills the rest
START=$(date +%s)

alive()
{
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

cleanup()
{
    local pid
    for pid in "${PIDS[@]}"; do
        if alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if [ "${LIVE_KEEP:-0}" = 1 ]; then
        echo "kept $T"
    else
        rm -rf "$T"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- checks ----

. "$(dirname "$0")/../e2e/checks.sh"

note()
{
    echo "     . $*"
}

# expect_gt WHAT A B: the integer A is greater than B (resourceVersions are etcd revisions).
expect_gt()
{
    if [[ "$2" =~ ^[0-9]+$ && "$3" =~ ^[0-9]+$ ]] && (($2 > $3)); then
        return 0
    fi
    fail "$1: expected [$2] > [$3]"
    return 1
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
    { wait "$pid"; } 2>/dev/null
    EXIT_RC=$?
    return 0
}

# ---- kubectl ----

KCFG=$T/kubeconfig
REQ_TIMEOUT=30 # seconds: kubectl's --request-timeout; `timeout` kills it 15 s later

# k ARGS...: kubectl with the test's kubeconfig, bounded in time.
k()
{
    timeout $((REQ_TIMEOUT + 15)) "$KUBECTL" --kubeconfig "$KCFG" --request-timeout="${REQ_TIMEOUT}s" "$@"
}

# run ARGS...: k ARGS with the results in OUT, ERR, RC.
OUT=""
ERR=""
RC=0
run()
{
    OUT=$(k "$@" 2>"$T/stderr")
    RC=$?
    ERR=$(cat "$T/stderr")
}

# ok ARGS...: run, and fail the current check (returning 1) unless kubectl exited 0.
ok()
{
    run "$@"
    [ "$RC" = 0 ] && return 0
    fail "kubectl $(printf '%s ' "$@" | head -c 200)exited $RC: $(printf %s "$ERR" | tail -3)"
    return 1
}

# jp RESOURCE NAME JSONPATH [-n NS]: prints one field of an object ("" on error).
jp()
{
    local res=$1 name=$2 path=$3
    shift 3
    k get "$res" "$name" "$@" -o "jsonpath={$path}" 2>/dev/null
}

# start_watch NAME ARGS...: `kubectl get ARGS --watch-only --output-watch-events` in the
# background, one "TYPE NAME RV" line per event in $T/watch-NAME.out. It ends by itself after
# WATCH_SECONDS. Sets WATCH_PID.
WATCH_SECONDS=300
WATCH_PIDS=()
start_watch()
{
    local name=$1
    shift
    timeout $((WATCH_SECONDS + 15)) "$KUBECTL" --kubeconfig "$KCFG" --request-timeout="${WATCH_SECONDS}s" \
        get "$@" --watch-only --output-watch-events \
        -o 'jsonpath={.type} {.object.metadata.name} {.object.metadata.resourceVersion}{"\n"}' \
        >"$T/watch-$name.out" 2>"$T/watch-$name.err" &
    WATCH_PID=$!
    PIDS+=("$WATCH_PID")
    WATCH_PIDS+=("$WATCH_PID")
}

# wait_events NAME SECONDS EVENT...: waits until the watch NAME has printed every "TYPE NAME"
# given (in this order); fails the check with what it saw otherwise.
wait_events()
{
    local name=$1 secs=$2 i got want
    shift 2
    want=$(printf '%s\n' "$@")
    for ((i = 0; i < secs * 5; i++)); do
        got=$(awk '{print $1, $2}' "$T/watch-$name.out" 2>/dev/null)
        [ "$(printf '%s\n' "$got" | grep -Fx -f <(printf '%s\n' "$want") | head -c 100000)" == "$want" ] && return 0
        sleep 0.2
    done
    fail "watch $name: expected events [$(echo $want)], saw [$(echo $got)] $(tail -2 "$T/watch-$name.err" 2>/dev/null)"
    return 1
}

# expect_increasing NAME: the resourceVersions the watch NAME printed strictly increase.
expect_increasing()
{
    awk 'NR > 1 && $3 <= prev { bad = 1 } { prev = $3 } END { exit bad }' "$T/watch-$1.out" && return 0
    fail "watch $1: resourceVersions do not increase: $(tr '\n' ';' <"$T/watch-$1.out")"
    return 1
}

# ---- certificates ----

ETCD_PORT=$(free_port)
API_PORT=$(free_port)
ETCD_URL="https://127.0.0.1:$ETCD_PORT"
API_URL="https://127.0.0.1:$API_PORT"
PKI=$T/pki
mkdir -p "$PKI"

# cert NAME SUBJECT EXT: a key and a certificate signed by the CA.
cert()
{
    openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "$2" &&
        printf '%b' "$3" >"$PKI/$1.ext" &&
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
            -out "$PKI/$1.crt" -days 2 -extfile "$PKI/$1.ext"
}

check "pki: CA, etcd server and client, apiserver serving, admin and service-account keys"
(
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 2 \
        -subj "/CN=etcd-fdb-live-ca" &&
        cert etcd-server "/CN=etcd-fdb" \
            'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' &&
        cert apiserver-etcd-client "/CN=kube-apiserver-etcd-client" 'extendedKeyUsage=clientAuth\n' &&
        cert apiserver "/CN=kube-apiserver" \
            'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' &&
        cert admin "/O=system:masters/CN=live-admin" 'extendedKeyUsage=clientAuth\n' &&
        openssl genrsa -out "$PKI/sa.key" 2048 &&
        openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
) >"$T/openssl.log" 2>&1 || fail "openssl failed: $(tail -5 "$T/openssl.log")"
finish_check
[ "$FAILED" = 0 ] || exit 1

# ---- etcd-fdb ----

ETCD_DATA=$T/etcd.data
ETCD_PID=""
ETCD_LOG=""
ETCD_STARTS=0

# start_etcd: starts etcd-fdb (https, mTLS) on ETCD_DATA and ETCD_PORT, its log in
# $T/etcd-N.log, and waits (30 s at most) until it says it is ready.
start_etcd()
{
    local i
    ETCD_STARTS=$((ETCD_STARTS + 1))
    ETCD_LOG=$T/etcd-$ETCD_STARTS.log
    "$BIN" --name live --data-dir "$ETCD_DATA" --listen-client-urls "$ETCD_URL" \
        --advertise-client-urls "$ETCD_URL" \
        --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" \
        --trusted-ca-file "$PKI/ca.crt" --client-cert-auth >"$ETCD_LOG" 2>&1 &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    for ((i = 0; i < 300; i++)); do
        grep -qs ' ready: ' "$ETCD_LOG" && return 0
        alive "$ETCD_PID" || break
        sleep 0.1
    done
    fail "etcd-fdb did not become ready; its log: $(tail -5 "$ETCD_LOG")"
    return 1
}

check "etcd-fdb: starts with --cert-file/--key-file/--trusted-ca-file/--client-cert-auth"
start_etcd
finish_check
[ "$FAILED" = 0 ] || exit 1

# ---- kube-apiserver ----

API_LOG=$T/kube-apiserver.log
API_PID=""

# readyz: prints the HTTP status of /readyz (000 when nothing answers).
readyz()
{
    curl -s -o "$T/readyz.out" -w '%{http_code}' --max-time 10 --cacert "$PKI/ca.crt" \
        --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$API_URL/readyz?verbose"
}

# wait_readyz SECONDS WANT: waits until /readyz answers WANT (200) or anything else (!200).
wait_readyz()
{
    local i code
    for ((i = 0; i < $1 * 2; i++)); do
        code=$(readyz)
        if [ "$2" = 200 ] && [ "$code" = 200 ]; then return 0; fi
        if [ "$2" = '!200' ] && [ "$code" != 200 ]; then return 0; fi
        alive "$API_PID" || return 1
        sleep 0.5
    done
    return 1
}

# start_apiserver: starts kube-apiserver on etcd-fdb (its log appended to API_LOG) and waits
# (120 s at most) until /readyz answers 200. The compaction interval is short so that the test
# sees the apiserver compact etcd-fdb.
COMPACTION_SECONDS=30
API_STARTS=0
start_apiserver()
{
    API_STARTS=$((API_STARTS + 1))
    echo "==== kube-apiserver start $API_STARTS" >>"$API_LOG"
    "$APISERVER" \
        --etcd-servers="$ETCD_URL" --etcd-prefix=/registry-live \
        --etcd-cafile="$PKI/ca.crt" --etcd-certfile="$PKI/apiserver-etcd-client.crt" \
        --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
        --etcd-compaction-interval="${COMPACTION_SECONDS}s" \
        --bind-address=127.0.0.1 --secure-port="$API_PORT" --cert-dir="$T/apiserver-certs" \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --v=1 >>"$API_LOG" 2>&1 &
    API_PID=$!
    PIDS+=("$API_PID")
    wait_readyz 120 200 && return 0
    fail "no ready kube-apiserver after 120 s: $(grep -v '^\[+\]' "$T/readyz.out" 2>/dev/null | head -5) $(tail -5 "$API_LOG")"
    return 1
}

check "kube-apiserver: starts on etcd-fdb over mTLS and /readyz answers ok"
if ! start_apiserver; then
    finish_check
    echo "$PASSED passed, $FAILED failed"
    exit 1
fi
note "ready $(($(date +%s) - START)) s after the test started"

"$KUBECTL" config --kubeconfig "$KCFG" set-cluster live --server="$API_URL" \
    --certificate-authority="$PKI/ca.crt" --embed-certs >/dev/null &&
    "$KUBECTL" config --kubeconfig "$KCFG" set-credentials admin \
        --client-certificate="$PKI/admin.crt" --client-key="$PKI/admin.key" --embed-certs >/dev/null &&
    "$KUBECTL" config --kubeconfig "$KCFG" set-context live --cluster=live --user=admin >/dev/null &&
    "$KUBECTL" config --kubeconfig "$KCFG" use-context live >/dev/null ||
    fail "kubectl config failed"

check "kubectl version: client and server are the built release"
if ok version -o json; then
    expect_contains "server version" "\"gitVersion\": \"$("$KUBECTL" version --client -o json |
        sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p' | head -1)\"" "$OUT"
fi

check "apiserver bootstrap wrote its objects (default namespaces, RBAC roles, the kubernetes service)"
ok get namespaces -o name && expect_contains "namespaces" "namespace/kube-system" "$OUT"
ok get clusterroles -o name && expect_contains "clusterroles" "clusterrole.rbac.authorization.k8s.io/cluster-admin" "$OUT"
ok get service kubernetes -n default -o 'jsonpath={.spec.clusterIP}' && expect_eq "kubernetes service IP" 10.0.0.1 "$OUT"

# etcd_lists: how many configmap lists (paged Range calls, or RangeStream calls where etcd has
# them) the apiserver has sent to etcd so far, from its metrics.
etcd_lists()
{
    k get --raw /metrics 2>/dev/null | awk '/^etcd_requests_total\{/ && /operation="(list|listStream)"/ && /resource="configmaps"/ { n += $2 } END { print n + 0 }'
}

# The apiserver's own view, for the report: consistent reads served by the watch cache (a
# fallback to etcd means the cache did not catch up in time: missing progress notifications)
# and failed etcd requests.
print_metrics()
{
    local metrics
    metrics=$(k get --raw /metrics 2>/dev/null)
    echo "kube-apiserver metrics (start $API_STARTS):"
    echo "     consistent reads from the watch cache (success, fallback: count):" $(printf '%s\n' "$metrics" |
        awk '/^apiserver_watch_cache_consistent_read_total\{/ { match($0, /fallback="[a-z]+"/); f = substr($0, RSTART + 10, RLENGTH - 11)
            match($0, /success="[a-z]+"/); n[substr($0, RSTART + 9, RLENGTH - 10) "," f] += $2 }
            END { for (k in n) printf "%s: %d; ", k, n[k] }')
    echo "     etcd requests, failed etcd requests:" $(printf '%s\n' "$metrics" |
        awk '/^etcd_requests_total\{/ { t += $2 } /^etcd_request_errors_total\{/ { e += $2 } END { print t + 0 ", " e + 0 }')
    echo "     failed etcd requests by operation:" $(printf '%s\n' "$metrics" |
        awk '/^etcd_request_errors_total\{/ { match($0, /operation="[A-Za-z]+"/); n[substr($0, RSTART + 11, RLENGTH - 12)] += $2 }
            END { for (k in n) printf "%s %d; ", k, n[k] }')
}

# ---- namespaces, configmaps, secrets ----

check "namespaces: create, get, list"
ok create namespace live-a
expect_eq "phase" Active "$(jp namespace live-a .status.phase)"
ok create namespace live-b
ok get namespaces -l kubernetes.io/metadata.name -o name && expect_contains "list" namespace/live-b "$OUT"
run create namespace live-a
[ "$RC" != 0 ] || fail "creating live-a twice succeeded"
expect_contains "AlreadyExists" AlreadyExists "$ERR"

check "configmaps: create, get, update (resourceVersion increases), delete"
ok create configmap cm1 -n live-a --from-literal=color=blue --from-literal=size=10
expect_eq "data.color" blue "$(jp configmap cm1 .data.color -n live-a)"
rv1=$(jp configmap cm1 .metadata.resourceVersion -n live-a)
EARLY_RV=$rv1
ok patch configmap cm1 -n live-a --type=merge -p '{"data":{"color":"green"}}'
expect_eq "patched data.color" green "$(jp configmap cm1 .data.color -n live-a)"
rv2=$(jp configmap cm1 .metadata.resourceVersion -n live-a)
expect_gt "resourceVersion after patch" "$rv2" "$rv1"
ok label configmap cm1 -n live-a tier=front
rv3=$(jp configmap cm1 .metadata.resourceVersion -n live-a)
expect_gt "resourceVersion after label" "$rv3" "$rv2"
ok get configmaps -n live-a -l tier=front -o name && expect_eq "label selector" configmap/cm1 "$OUT"
ok create configmap cm2 -n live-a --from-literal=x=y
ok delete configmap cm2 -n live-a
run get configmap cm2 -n live-a
expect_contains "get after delete" NotFound "$ERR"

check "secrets: create, data round-trip, list, delete"
printf 'line1\nbinary\001\377end' >"$T/secret.bin"
ok create secret generic s1 -n live-a --from-literal=password=s3cr3t --from-file=blob="$T/secret.bin"
expect_eq "password" "$(printf s3cr3t | base64)" "$(jp secret s1 .data.password -n live-a)"
expect_eq "blob" "$(base64 -w0 <"$T/secret.bin")" "$(jp secret s1 .data.blob -n live-a)"
ok create secret generic s2 -n live-a --from-literal=a=b
ok get secrets -n live-a -o name && expect_eq "secrets" "$(printf 'secret/s1\nsecret/s2')" "$OUT"
ok delete secret s2 -n live-a

# ---- a CRD and its objects ----

cat >"$T/crd.yaml" <<'EOF'
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.live.example.com
spec:
  group: live.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string}
          status:
            type: object
            properties:
              ready: {type: boolean}
EOF
widget()
{
    printf 'apiVersion: live.example.com/v1\nkind: Widget\nmetadata: {name: %s, namespace: live-a, labels: {set: w}}\nspec: {size: %s, color: %s}\n' "$@"
}

check "CRD: apply, Established, create/get/list/patch/status/delete custom objects"
ok apply -f "$T/crd.yaml"
ok wait --for=condition=Established crd/widgets.live.example.com --timeout=60s
for i in 1 2 3; do
    widget "w$i" "$i" red >"$T/w$i.yaml"
    ok create -f "$T/w$i.yaml"
done
ok get widgets -n live-a -o name && expect_eq "list" "$(printf 'widget.live.example.com/w1\nwidget.live.example.com/w2\nwidget.live.example.com/w3')" "$OUT"
expect_eq "spec.size" 2 "$(jp wdg w2 .spec.size -n live-a)"
widget bad 0 red >"$T/bad.yaml"
run create -f "$T/bad.yaml"
[ "$RC" != 0 ] || fail "a widget with size 0 was accepted"
rv1=$(jp widget w1 .metadata.resourceVersion -n live-a)
ok patch widget w1 -n live-a --type=merge -p '{"spec":{"color":"blue"}}'
expect_eq "patched color" blue "$(jp widget w1 .spec.color -n live-a)"
expect_gt "resourceVersion after patch" "$(jp widget w1 .metadata.resourceVersion -n live-a)" "$rv1"
ok patch widget w1 -n live-a --subresource=status --type=merge -p '{"status":{"ready":true}}'
expect_eq "status.ready" true "$(jp widget w1 .status.ready -n live-a)"
ok delete widget w2 -n live-a
ok get widgets -n live-a -l set=w -o name && expect_eq "list after delete" "$(printf 'widget.live.example.com/w1\nwidget.live.example.com/w3')" "$OUT"

# ---- a deployment ----

check "deployment: create, scale, patch (resourceVersion and generation move), stale update conflicts"
ok create deployment web -n live-a --image=registry.invalid/web:1 --replicas=1
rv1=$(jp deployment web .metadata.resourceVersion -n live-a)
gen1=$(jp deployment web .metadata.generation -n live-a)
ok get deployment web -n live-a -o json && printf '%s\n' "$OUT" >"$T/web-stale.json"
ok scale deployment web -n live-a --replicas=3
expect_eq "replicas after scale" 3 "$(jp deployment web .spec.replicas -n live-a)"
rv2=$(jp deployment web .metadata.resourceVersion -n live-a)
expect_gt "resourceVersion after scale" "$rv2" "$rv1"
expect_gt "generation after scale" "$(jp deployment web .metadata.generation -n live-a)" "$gen1"
ok scale deployment web -n live-a --current-replicas=3 --replicas=5
run scale deployment web -n live-a --current-replicas=3 --replicas=7
[ "$RC" != 0 ] || fail "scale with a wrong --current-replicas succeeded"
expect_eq "replicas after scales" 5 "$(jp deployment web .spec.replicas -n live-a)"
ok patch deployment web -n live-a --type=strategic \
    -p '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.invalid/web:2"}]}}}}'
expect_eq "image after patch" registry.invalid/web:2 "$(jp deployment web '.spec.template.spec.containers[0].image' -n live-a)"
rv3=$(jp deployment web .metadata.resourceVersion -n live-a)
expect_gt "resourceVersion after patch" "$rv3" "$rv2"
run replace -f "$T/web-stale.json"
[ "$RC" != 0 ] || fail "replace with a stale resourceVersion succeeded"
expect_contains "stale replace" "the object has been modified" "$ERR"
ok get deployment web -n live-a -o "jsonpath={.metadata.resourceVersion}" && expect_eq "GET resourceVersion" "$rv3" "$OUT"

# ---- 320 configmaps, listed in chunks ----

BULK=320
check "chunked list: $BULK configmaps, kubectl get --chunk-size=50 returns each once, in pages"
ok create namespace live-bulk
python3 - "$BULK" >"$T/bulk.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
items = [{"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "bulk-%04d" % i, "namespace": "live-bulk", "labels": {"bulk": "yes"}},
          "data": {"i": str(i), "pad": "x" * 200}} for i in range(n)]
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
EOF
t0=$(date +%s%N)
REQ_TIMEOUT=120 ok create -f "$T/bulk.json" -o name && expect_eq "created" "$BULK" "$(printf '%s\n' "$OUT" | grep -c '^configmap/')"
note "$BULK creates in $((($(date +%s%N) - t0) / 1000000)) ms"
before=$(etcd_lists)
OUT=$(k get configmaps -n live-bulk --chunk-size=50 -o name -v=6 2>"$T/chunk.log")
RC=$?
[ "$RC" = 0 ] || fail "kubectl get --chunk-size=50 exited $RC: $(tail -3 "$T/chunk.log")"
expect_eq "items" "$BULK" "$(printf '%s\n' "$OUT" | grep -c '^configmap/bulk-')"
expect_eq "distinct items" "$BULK" "$(printf '%s\n' "$OUT" | grep '^configmap/bulk-' | sort -u | wc -l)"
pages=$(grep -c 'limit=50' "$T/chunk.log")
expect_eq "pages of 50 requested" $(((BULK + 49) / 50)) "$pages"
OUT=$(k get configmaps -n live-bulk -l bulk=yes --chunk-size=50 -o name 2>"$T/stderr")
expect_eq "with a label selector" "$BULK" "$(printf '%s\n' "$OUT" | grep -c '^configmap/bulk-')"
note "configmap lists sent to etcd-fdb by these two chunked lists: $(($(etcd_lists) - before))"

# The same list at an exact resourceVersion (resourceVersionMatch=Exact), following the
# continue tokens: served by the watch cache's snapshot of that revision when it has one
# (ListFromCacheSnapshot), else by etcd-fdb; the etcd list calls the apiserver made are noted.
check "chunked list at an exact resourceVersion: limit=50, following continue tokens"
cat >"$T/pages.py" <<'EOF'
import json, ssl, sys, urllib.parse, urllib.request
base, pki, ns, limit, rv = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=pki + "/ca.crt")
ctx.load_cert_chain(pki + "/admin.crt", pki + "/admin.key")
names, pages, cont, rvs = [], 0, None, set()
while True:
    q = {"limit": limit}
    if cont:
        q["continue"] = cont
    else:
        q["resourceVersion"] = rv
        q["resourceVersionMatch"] = "Exact"
    url = base + "/api/v1/namespaces/" + ns + "/configmaps?" + urllib.parse.urlencode(q)
    d = json.load(urllib.request.urlopen(url, context=ctx, timeout=30))
    pages += 1
    assert len(d["items"]) <= int(limit), len(d["items"])
    names += [i["metadata"]["name"] for i in d["items"]]
    rvs.add(d["metadata"]["resourceVersion"])
    cont = d["metadata"].get("continue")
    if not cont:
        break
print(len(names), len(set(names)), pages, names == sorted(names), ",".join(sorted(rvs)))
print(",".join(names))
EOF
before=$(etcd_lists)
list_rv=$(k get --raw /api/v1/namespaces/live-bulk/configmaps?limit=1 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])')
OUT=$(timeout 120 python3 "$T/pages.py" "$API_URL" "$PKI" live-bulk 50 "$list_rv" 2>&1)
expect_eq "count distinct pages sorted rv" "$BULK $BULK $(((BULK + 49) / 50)) True $list_rv" "$(head -1 <<<"$OUT")"
note "configmap lists sent to etcd-fdb by the chunked lists: $(($(etcd_lists) - before))"

# ---- watches ----

check "watch: kubectl get -w sees ADDED, MODIFIED and DELETED, in order, with increasing resourceVersions"
ok create namespace live-watch
start_watch cm configmaps -n live-watch
CM_WATCH_PID=$WATCH_PID
start_watch wdg widgets -n live-a
sleep 2 # the watches are established
ok create configmap w1 -n live-watch --from-literal=v=1
ok create configmap w2 -n live-watch --from-literal=v=1
ok patch configmap w1 -n live-watch --type=merge -p '{"data":{"v":"2"}}'
ok delete configmap w2 -n live-watch
widget w4 4 green >"$T/w4.yaml"
ok create -f "$T/w4.yaml"
ok patch widget w4 -n live-a --type=merge -p '{"spec":{"size":5}}'
ok delete widget w4 -n live-a
wait_events cm 20 "ADDED w1" "ADDED w2" "MODIFIED w1" "DELETED w2"
wait_events wdg 20 "ADDED w4" "MODIFIED w4" "DELETED w4"
expect_increasing cm

# ---- deletes ----

check "delete: the custom objects, the CRD, the deployment, a namespace (Terminating: no controller-manager)"
ok delete widgets -n live-a --all
ok get widgets -n live-a -o name && expect_eq "widgets left" "" "$OUT"
ok delete crd widgets.live.example.com --timeout=60s
run get crd widgets.live.example.com
expect_contains "CRD gone" NotFound "$ERR"
ok delete deployment web -n live-a
run get deployment web -n live-a
expect_contains "deployment gone" NotFound "$ERR"
ok delete namespace live-b --wait=false
phase=$(jp namespace live-b .status.phase)
[ "$phase" = Terminating ] || [ -z "$phase" ] || fail "namespace live-b: phase [$phase]"
# --wait=false: waiting would GET each deleted object, throttled by kubectl to 5 per second.
ok delete configmaps -n live-bulk -l bulk=yes -o name --wait=false
expect_eq "bulk deletes" "$BULK" "$(printf '%s\n' "$OUT" | grep -c '^configmap/')"
ok get configmaps -n live-bulk -o name && expect_eq "bulk left" "" "$OUT"

# ---- etcd-fdb restarts under a running apiserver ----

# restart_etcd HOW: kills etcd-fdb with signal HOW (TERM or KILL), checks the apiserver
# notices, restarts etcd-fdb on the same data dir and port, and checks the apiserver recovers
# and the watch opened before the kill sees the writes made after the restart.
restart_etcd()
{
    local how=$1 n=$2 secs
    check "etcd-fdb down ($n, SIG$how): the apiserver reports it (readyz fails, writes fail)"
    ok create configmap before-$n -n live-watch --from-literal=v=1
    { # (bash's "Killed" job report goes nowhere)
        kill "-$how" "$ETCD_PID"
        wait_exit "$ETCD_PID" 30
    } 2>/dev/null
    if [ "$how" = TERM ]; then
        expect_eq "etcd-fdb exit code on SIGTERM" 0 "$EXIT_RC"
    else
        expect_eq "etcd-fdb exit code on SIGKILL" 137 "$EXIT_RC"
    fi
    secs=$(date +%s)
    wait_readyz 60 '!200' || fail "readyz still ok 60 s after etcd-fdb stopped"
    note "readyz failed after $(($(date +%s) - secs)) s: $(grep -m1 '^\[-\]etcd' "$T/readyz.out")"
    REQ_TIMEOUT=10 run create configmap while-down-$n -n live-watch --from-literal=v=1
    [ "$RC" != 0 ] || fail "a write succeeded while etcd-fdb was down"

    check "etcd-fdb restarted ($n, after SIG$how) on the same data dir: readyz ok, objects still there, writes and watches resume"
    start_etcd || return
    secs=$(date +%s)
    wait_readyz 120 200 || fail "readyz not ok 120 s after etcd-fdb restarted: $(grep '^\[-\]' "$T/readyz.out")"
    note "readyz ok $(($(date +%s) - secs)) s after etcd-fdb restarted"
    expect_eq "cm1 after restart" green "$(jp configmap cm1 .data.color -n live-a)"
    expect_eq "before-$n after restart" 1 "$(jp configmap before-$n .data.v -n live-watch)"
    expect_eq "secret after restart" "$(printf s3cr3t | base64)" "$(jp secret s1 .data.password -n live-a)"
    ok create configmap after-$n -n live-watch --from-literal=v=1
    ok patch configmap after-$n -n live-watch --type=merge -p '{"data":{"v":"2"}}'
    expect_eq "after-$n" 2 "$(jp configmap after-$n .data.v -n live-watch)"
    ok get configmaps -n live-watch -o name && expect_contains "list after restart" configmap/after-$n "$OUT"
    ok delete configmap before-$n -n live-watch
    wait_events cm 60 "ADDED before-$n" "ADDED after-$n" "MODIFIED after-$n" "DELETED before-$n"
    expect_increasing cm
    alive "$CM_WATCH_PID" || fail "the kubectl watch opened before the restart ended: $(tail -3 "$T/watch-cm.err")"
}

restart_etcd TERM 1
restart_etcd KILL 2

check "after the restarts: a new watch, a new CRD-free namespace, a chunked list"
start_watch late configmaps -n live-a
sleep 2
ok create configmap late -n live-a --from-literal=v=1
ok delete configmap late -n live-a
wait_events late 20 "ADDED late" "DELETED late"
ok create namespace live-c
ok get namespaces --chunk-size=2 -o name && expect_contains "namespaces" namespace/live-c "$OUT"

# ---- shutdown and logs ----

finish_check

check "compaction: the apiserver compacts etcd-fdb every ${COMPACTION_SECONDS} s; a list at an early resourceVersion is then 410 Expired"
secs=$(date +%s)
while :; do
    run get --raw "/api/v1/namespaces/live-a/configmaps?limit=1&resourceVersion=$EARLY_RV&resourceVersionMatch=Exact"
    [ "$RC" != 0 ] && break
    (($(date +%s) - secs < 3 * COMPACTION_SECONDS)) || break
    sleep 1
done
if [ "$RC" = 0 ]; then
    fail "a list at resourceVersion $EARLY_RV still answers $(($(date +%s) - secs)) s later: $(head -c 200 <<<"$OUT")"
else
    expect_contains "list at a compacted revision" "Expired" "$ERR"
    note "410 after waiting $(($(date +%s) - secs)) s"
fi
finish_check
print_metrics

check "kube-apiserver restarted on the same etcd-fdb: objects and resourceVersions kept; a paged list at a revision from before read from etcd-fdb"
OUT=$(k get --raw /api/v1/namespaces/live-watch/configmaps 2>&1)
old_rv=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["resourceVersion"])' <<<"$OUT")
old_names=$(python3 -c 'import json,sys; print(",".join(i["metadata"]["name"] for i in json.load(sys.stdin)["items"]))' <<<"$OUT")
cm1_rv=$(jp configmap cm1 .metadata.resourceVersion -n live-a)
ok create configmap after-list -n live-watch --from-literal=v=1 # the new cache starts after old_rv
for pid in "${WATCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
done
kill -TERM "$API_PID"
wait_exit "$API_PID" 60 || fail "kube-apiserver still running 60 s after SIGTERM"
secs=$(date +%s)
if start_apiserver; then
    note "ready again $(($(date +%s) - secs)) s after the restart"
    expect_eq "cm1 resourceVersion" "$cm1_rv" "$(jp configmap cm1 .metadata.resourceVersion -n live-a)"
    expect_eq "cm1 data" green "$(jp configmap cm1 .data.color -n live-a)"
    before=$(etcd_lists)
    OUT=$(timeout 120 python3 "$T/pages.py" "$API_URL" "$PKI" live-watch 1 "$old_rv" 2>&1)
    n=$(tr ',' '\n' <<<"$old_names" | grep -c .)
    expect_eq "count distinct pages sorted rv" "$n $n $n True $old_rv" "$(head -1 <<<"$OUT")"
    expect_eq "names" "$old_names" "$(sed -n 2p <<<"$OUT")"
    lists=$(($(etcd_lists) - before))
    [ "$lists" -ge 1 ] || fail "the list at $old_rv was not read from etcd-fdb ($lists etcd lists)"
    note "$lists configmap lists sent to etcd-fdb for it"
    ok create configmap after-apiserver-restart -n live-watch --from-literal=v=1
fi
print_metrics

check "shutdown: kube-apiserver and then etcd-fdb stop on SIGTERM (etcd-fdb exits 0)"
for pid in "${WATCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
done
kill -TERM "$API_PID"
wait_exit "$API_PID" 60 || fail "kube-apiserver still running 60 s after SIGTERM"
[ "$EXIT_RC" = 0 ] || note "kube-apiserver exited $EXIT_RC"
kill -TERM "$ETCD_PID"
wait_exit "$ETCD_PID" 30
expect_eq "etcd-fdb exit code" 0 "$EXIT_RC"

check "etcd-fdb logs: no sanitizer reports, no crash"
for log in "$T"/etcd-*.log; do
    if grep -Eq 'ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|SUMMARY: .*Sanitizer' "$log"; then
        fail "$(basename "$log"): $(grep -Em3 'ERROR: |runtime error:|SUMMARY: ' "$log")"
    fi
done

check "kube-apiserver log: no \"Too large resource version\""
if grep -q 'Too large resource version' "$API_LOG"; then
    # Each line with the apiserver's state when it was logged: serving, or shutting down.
    awk '/^==== kube-apiserver start/ { start = $4; state = "serving" } /name="ShutdownInitiated"/ { state = "shutting down" }
        /Too large resource version/ { print "(kube-apiserver start " start ", " state ") " $0 }' "$API_LOG" | head -5 | while IFS= read -r line; do
        fail "$line"
    done
fi
finish_check

# Other errors, for the report: klog error lines (E...) and the warnings about etcd (W...),
# by message (numbers replaced by N) with their counts.
echo "kube-apiserver log: $(wc -l <"$API_LOG") lines, $(grep -c '^E[0-9]' "$API_LOG") errors, $(grep -c '^W[0-9]' "$API_LOG") warnings; the distinct errors:"
grep '^E[0-9]' "$API_LOG" | sed -E 's/^E[0-9]{4} [0-9:.]+ +[0-9]+ //; s/[0-9]+/N/g' | cut -c1-220 |
    sort | uniq -c | sort -rn | head -25 | sed 's/^/     /'
echo "     the distinct warnings that mention etcd or grpc:"
grep '^W[0-9]' "$API_LOG" | grep -iE 'etcd|grpc' | sed -E 's/^W[0-9]{4} [0-9:.]+ +[0-9]+ //; s/[0-9]+/N/g' |
    cut -c1-220 | sort | uniq -c | sort -rn | head -10 | sed 's/^/     /'
echo "etcd-fdb logs: $(cat "$T"/etcd-*.log | grep -ciE 'error|warn') error/warning lines"
grep -hiE 'error|warn' "$T"/etcd-*.log | sed -E 's/^[^ ]+ //; s/[0-9]{6,}/N/g' | cut -c1-200 | sort | uniq -c | sort -rn | head -10 | sed 's/^/     /'

[ "${LIVE_KEEP:-0}" = 1 ] && cp "$API_LOG" "$T/kept-kube-apiserver.log"
echo "time: $(($(date +%s) - START)) s"
if [ "$FAILED" != 0 ]; then
    echo "failed checks:"
    printf '     %s\n' "${FAILED_NAMES[@]}"
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
