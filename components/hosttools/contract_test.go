package hosttools

import (
	"testing"

	"github.com/kubeforge/kubeforge/manifests"
)

// The kube-proxy pod that manifests renders and the tools here must agree on
// where the host's root is and which variable names it.
func TestManifestContract(t *testing.T) {
	if manifests.KubeProxyHostRootEnv != HostRootEnv || manifests.KubeProxyHostRootDir != HostRootDir {
		t.Errorf("manifests mounts the host root at %s named by $%s; hosttools expects %s named by $%s",
			manifests.KubeProxyHostRootDir, manifests.KubeProxyHostRootEnv, HostRootDir, HostRootEnv)
	}
}
