#!/bin/sh
# Installs, from Debian's packages, everything etcd-fdb needs to build, run and test.
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build pkg-config \
    librocksdb-dev libbsd-dev check \
    libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libssl-dev zlib1g-dev \
    etcd-client etcd-server openssl ca-certificates >/dev/null
