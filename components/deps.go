package components

// Blank imports pin the upstream component programs until each one is wired
// into the registry.
import (
	_ "github.com/containerd/containerd/v2/cmd/containerd/command"
	_ "github.com/coredns/coredns/coremain"
	_ "go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-proxy/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)
