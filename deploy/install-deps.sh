#!/bin/sh
# Installs, from Debian's packages, everything etcd-fdb needs to build, run and test.
# (Go, Node.js with npm, and Python's pip come with the machine; python3-venv lets
# tests/conformance/python make its virtual environment.)
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build pkg-config \
    librocksdb-dev libbsd-dev check \
    libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libssl-dev zlib1g-dev \
    etcd-client etcd-server openssl ca-certificates python3 python3-venv >/dev/null
