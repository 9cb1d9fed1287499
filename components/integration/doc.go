// Package integration holds the root-only tests that build the kubeforge
// binary once and run its components for real: the upstream versions and
// help behind `kubeforge component`, etcd on loopback, and the node service
// (containerd, images, kubelet restarts, containers surviving a SIGKILL of
// the supervisor) against a temporary root. Set KUBEFORGE_BINARY to test a
// binary built beforehand.
package integration
