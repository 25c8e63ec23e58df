#!/usr/bin/env bash
# Builds the real peers that `make e2e` drives into e2e/.bin. Go's and Cargo's caches make a rerun
# a relink at most; a cold build is documented in e2e/README.md.
set -euo pipefail
cd "$(dirname "$0")"
BIN="$PWD/.bin"
mkdir -p "$BIN"

# Kubernetes control plane (kube-apiserver, kube-scheduler, kubectl) and etcd, from e2e/cluster.

# The kubelet's device manager harness, from e2e/cluster.

# Fortanix aesm-client test program (Rust), from e2e/aesm-client.
