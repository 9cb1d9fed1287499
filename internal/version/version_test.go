package version

import (
	"reflect"
	"testing"
)

func TestPatchesOf(t *testing.T) {
	defer func(p string) { Patches = p }(Patches)
	Patches = "apiserver-priority-classes-no-initial-wait,etcd-single-member-fast-election,etcd-publish-retry-backoff,kubelet-volume-check-50ms"
	for name, want := range map[string][]string{
		"kube-apiserver":          {"apiserver-priority-classes-no-initial-wait"},
		"etcd":                    {"etcd-single-member-fast-election", "etcd-publish-retry-backoff"},
		"kubelet":                 {"kubelet-volume-check-50ms"},
		"kube-scheduler":          nil,
		"kube-controller-manager": nil,
	} {
		if got := PatchesOf(name); !reflect.DeepEqual(got, want) {
			t.Errorf("PatchesOf(%s) = %v, want %v", name, got, want)
		}
	}
	Patches = ""
	if got := PatchesOf("etcd"); got != nil {
		t.Errorf("no patches: %v", got)
	}
}
