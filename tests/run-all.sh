#!/bin/sh
# Builds etcd-fdb twice (release, and AddressSanitizer + UBSan) and runs every test in both,
# except those labelled `live` (tests/kube: they first build Kubernetes; `ctest -L live`).
set -eu
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
for variant in release asan; do
    dir="build-test-$variant"
    flags="-DCMAKE_BUILD_TYPE=RelWithDebInfo"
    [ "$variant" = asan ] && flags="$flags -DSANITIZE=ON"
    echo "== $variant build =="
    cmake -S . -B "$dir" -G Ninja $flags >/dev/null
    cmake --build "$dir" -j "$jobs"
    echo "== $variant tests =="
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir "$dir" --output-on-failure -j 1 -LE live
done
