#!/bin/sh
# build.sh -- builds kube-apiserver and kubectl of the Kubernetes release pinned in
# tests/kube/module/go.mod from the Go module proxy, once: prints the directory that holds both
# binaries and does nothing else when they are already there.
#
# Usage: build.sh [DIR]
#   DIR defaults to $KUBE_BIN_DIR, else ${XDG_CACHE_HOME:-~/.cache}/etcd-fdb/kube-vX.Y.Z (outside
#   the repository, shared by every build directory). Progress goes to stderr; the only line on
#   stdout is DIR.
# Environment: GOFLAGS, GOCACHE, GOMODCACHE as usual; KUBE_BUILD_JOBS (default 2) is go build -p.
# On two cores the first build takes about 7 minutes (see tests/kube/README.md).
set -eu
case "${1:-}" in
-*) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
mod="$here/module"
version=$(sed -n 's|^[[:space:]]*\(require[[:space:]]*\)\{0,1\}k8s.io/kubernetes \(v[0-9.]*\).*|\2|p' "$mod/go.mod")
[ -n "$version" ] || { echo "build.sh: no k8s.io/kubernetes version in $mod/go.mod" >&2; exit 2; }
dir=${1:-${KUBE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-fdb/kube-$version}}

if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/kubectl" ]; then
    echo "$dir"
    exit 0
fi
command -v go >/dev/null || { echo "build.sh: go not found" >&2; exit 2; }
mkdir -p -- "$dir"

# The version the binaries report (kubectl version, /version, the client's User-Agent); a
# build from the module proxy would otherwise say v0.0.0-master.
minor=$(echo "$version" | cut -d. -f2)
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    stamp="$stamp -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    stamp="$stamp -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done

start=$(date +%s)
for cmd in kube-apiserver kubectl; do
    echo "build.sh: building $cmd $version into $dir" >&2
    (cd "$mod" && CGO_ENABLED=0 go build -mod=readonly -p "${KUBE_BUILD_JOBS:-2}" -trimpath \
        -ldflags "-s -w $stamp" -o "$dir/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$dir/$cmd.tmp" "$dir/$cmd"
done
echo "build.sh: built in $(($(date +%s) - start)) s" >&2
echo "$dir"
