//go:build !embedhosttools

package hosttools

// trampoline is empty without the embedhosttools build tag: the links then
// point at the kubeforge executable itself (see IsTool), which works but
// pays kubeforge's start-up cost on every tool run.
var trampoline []byte
