//go:build tools

// Package tools pins the real Kubernetes and etcd commands that `make e2e` builds from this
// module (go build k8s.io/kubernetes/cmd/kube-apiserver ...), so go.mod/go.sum record them.
package tools

import (
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
)
