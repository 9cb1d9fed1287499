package staticproc

import (
	"slices"
	"testing"

	"github.com/kubeforge/kubeforge/manifests"
)

// The node package names the components without importing manifests.
func TestComponentsAreTheManifests(t *testing.T) {
	want := []string{manifests.Etcd, manifests.KubeAPIServer, manifests.KubeControllerMgr, manifests.KubeScheduler}
	if !slices.Equal(Components, want) {
		t.Fatalf("Components = %v, want %v", Components, want)
	}
}
