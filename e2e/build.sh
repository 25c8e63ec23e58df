#!/usr/bin/env bash
# Builds the real peers that `make e2e` drives into e2e/.bin. Go's and Cargo's caches make a rerun
# a relink at most; a cold build is documented in e2e/README.md.
set -euo pipefail
cd "$(dirname "$0")"
BIN="$PWD/.bin"
mkdir -p "$BIN"

# Kubernetes control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl) and
# etcd, from e2e/cluster.
# One `go build` for the Kubernetes commands lets Go share and parallelise their common packages;
# the version stamp makes `kubectl version` and the API server's /version report the pinned release.
command -v go >/dev/null || { echo "e2e/build.sh: needs Go >= 1.26 (see e2e/README.md)" >&2; exit 1; }
K8S_LDFLAGS="-X k8s.io/component-base/version.gitVersion=v1.37.2"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
(
	cd cluster
	go build -ldflags "$K8S_LDFLAGS" -o "$BIN/" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubectl
	# etcd's own server main package (go.etcd.io/etcd/server/v3), the same as the release binary.
	go build -o "$BIN/etcd" go.etcd.io/etcd/server/v3
)

# The kubelet's device manager harness, from e2e/cluster: the kubelet's own devicemanager package
# against `confnode device-plugin` in a temp directory (e2e/test_devicemanager.py).
(
	cd cluster
	go build -buildvcs=false -o "$BIN/devicemanager-harness" ./cmd/devicemanager-harness
)

# Fortanix aesm-client test program (Rust), from e2e/aesm-client.
# aesm-client's build script runs protoc: bin/protoc is the one bundled in the venv's grpcio-tools.
(
	cd aesm-client
	PATH="$PWD/bin:$PATH" cargo build --release --locked --quiet
	cp target/release/aesm-client-quote "$BIN/"
)
