// Package version holds the kubeforge version and the versions of the
// upstream components compiled into the binary.
package version

import (
	"runtime/debug"
	"strings"
)

// Version is kubeforge's own version, set at build time with
// -ldflags "-X github.com/kubeforge/kubeforge/internal/version.Version=v0.1.0".
var Version = "v0.1.0-dev"

// Patches lists, comma-separated, the IDs of the changes to upstream code
// compiled in (hack/patches; README "Upstream patches"), set at build time
// by `make build`. Empty: the upstream code as released (a plain `go build`).
var Patches = ""

// patchPrefixes maps a patch ID's first word to the component it changes
// (hack/patches names each ID after its component).
var patchPrefixes = map[string]string{"apiserver": "kube-apiserver", "etcd": "etcd", "kubelet": "kubelet"}

// PatchesOf returns the IDs in Patches that change the component name
// (as `kubeforge component NAME` spells it).
func PatchesOf(name string) []string {
	var out []string
	for _, id := range strings.Split(Patches, ",") {
		word, _, _ := strings.Cut(id, "-")
		if id != "" && patchPrefixes[word] == name {
			out = append(out, id)
		}
	}
	return out
}

// Kubernetes and Containerd, the versions of k8s.io/kubernetes and
// github.com/containerd/containerd/v2 compiled in, are in kubernetes.go
// (kubernetes_k136.go for hack/build-k136.sh's build against the previous
// Kubernetes minor).

const (
	// Etcd is the version of go.etcd.io/etcd/server/v3 compiled in.
	Etcd = "v3.7.0"
	// CoreDNS is the version of github.com/coredns/coredns compiled in.
	CoreDNS = "v1.15.0"
)

// ImageRepository is the registry host of every image kubeforge makes itself.
// Nothing is ever pulled from it: the images are written locally.
const ImageRepository = "kubeforge.local"

// Image is the self-image: one layer holding the running kubeforge executable.
func Image() string { return ImageRepository + "/kubeforge:" + Version }

// PauseImage is the sandbox (pause) image.
func PauseImage() string { return ImageRepository + "/pause:" + Version }

// GoVersion is the Go toolchain that built the binary.
func GoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown"
}
