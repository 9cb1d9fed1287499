package manifests

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
)

func TestLocalPathGolden(t *testing.T) {
	golden(t, "local-path.yaml", objectsYAML(t, LocalPathObjects(testConfig(t))))
}

// The provisioner runs the self-image with the configured root mounted at
// the same path and nothing else of the host; its role reads and writes
// volumes and claims and creates no pods, reads no Secrets.
func TestLocalPathObjects(t *testing.T) {
	c := testConfig(t)
	c.Kubeforge.Addons.LocalPath.Root = "/data/volumes/"
	var ds *appsv1.DaemonSet
	var sc *storagev1.StorageClass
	var role *rbacv1.ClusterRole
	for _, o := range LocalPathObjects(c) {
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ds = o
		case *storagev1.StorageClass:
			sc = o
		case *rbacv1.ClusterRole:
			role = o
		}
	}
	if ds == nil || sc == nil || role == nil {
		t.Fatal("missing DaemonSet, StorageClass or ClusterRole")
	}
	if sc.Name != LocalPathClass || sc.Provisioner != LocalPathProvisioner || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer ||
		string(*sc.ReclaimPolicy) != "Delete" || sc.Annotations[annDefaultClass] != "true" {
		t.Errorf("StorageClass %+v", sc)
	}
	spec := ds.Spec.Template.Spec
	ctr := spec.Containers[0]
	if !slices.Equal(ctr.Command, []string{"kubeforge", "component", LocalPathName, "--root=/data/volumes"}) || !strings.HasPrefix(ctr.Image, "kubeforge.local/kubeforge:") {
		t.Errorf("not the self-image's provisioner with the root: %s %v", ctr.Image, ctr.Command)
	}
	if len(spec.Volumes) != 1 || spec.Volumes[0].HostPath == nil || spec.Volumes[0].HostPath.Path != "/data/volumes" ||
		len(ctr.VolumeMounts) != 1 || ctr.VolumeMounts[0].MountPath != "/data/volumes" {
		t.Errorf("host mounts: %+v %+v", spec.Volumes, ctr.VolumeMounts)
	}
	if spec.HostNetwork || spec.HostPID || (ctr.SecurityContext.Privileged != nil && *ctr.SecurityContext.Privileged) ||
		*ctr.SecurityContext.AllowPrivilegeEscalation || !*ctr.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("pod is not least privilege: %+v %+v", spec, ctr.SecurityContext)
	}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			switch res {
			case "pods", "secrets", "pods/exec", "configmaps":
				t.Errorf("the provisioner may %v %s", r.Verbs, res)
			case "nodes":
				if !slices.Equal(r.Verbs, []string{"get"}) {
					t.Errorf("the provisioner may %v nodes", r.Verbs)
				}
			}
			if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") {
				t.Errorf("wildcard rule %+v", r)
			}
		}
	}
}
