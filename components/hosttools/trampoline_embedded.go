//go:build embedhosttools

package hosttools

import _ "embed"

// trampoline is the small program that runs a host tool
// (components/hosttools/trampoline), built by `make build` into
// trampoline.bin before kubeforge itself.
//
//go:embed trampoline.bin
var trampoline []byte
