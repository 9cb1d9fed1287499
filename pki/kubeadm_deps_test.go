//go:build kubeadmdeps

package pki

// Keeps kubeadm's dependencies in go.mod/go.sum (go mod tidy reads files of
// every build tag) so that TestKubeadmInterop can `go build
// k8s.io/kubernetes/cmd/kubeadm`, without linking kubeadm into the pki test
// binary of an ordinary `go test ./pki/`.
import _ "k8s.io/kubernetes/cmd/kubeadm/app"
