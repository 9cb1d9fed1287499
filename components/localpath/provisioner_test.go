package localpath

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	"github.com/kubeforge/kubeforge/manifests"
)

func TestProvisionerNameMatchesManifests(t *testing.T) {
	if ProvisionerName != manifests.LocalPathProvisioner {
		t.Fatalf("components/localpath serves %q, the StorageClass names %q", ProvisionerName, manifests.LocalPathProvisioner)
	}
}

// Volume directories are direct children of the root whatever the names
// hold: "../", "/", dots only, upper case and overlong names are made
// harmless.
func TestVolumeDir(t *testing.T) {
	root := "/var/lib/kubeforge/storage"
	for _, c := range []struct{ pv, ns, claim, want string }{
		{"pvc-1", "default", "data-web-0", root + "/pvc-1_default_data-web-0"},
		{"pvc-1", "../../etc", "x", root + "/pvc-1_..-..-etc_x"},
		{"pvc-1", "default", "../../../../etc/passwd", root + "/pvc-1_default_..-..-..-..-etc-passwd"},
		{"..", "..", "..", root + "/--_--_--"},
		{"pvc-1", ".", "a/b", root + "/pvc-1_-_a-b"},
		{"pvc-1", "Default", "x\x00y", root + "/pvc-1_-efault_x-y"},
		{"pvc-1", "ns", strings.Repeat("a", 400), root + "/" + ("pvc-1_ns_" + strings.Repeat("a", 400))[:255]},
	} {
		got, err := VolumeDir(root, c.pv, c.ns, c.claim)
		if err != nil {
			t.Errorf("%q %q %q: %v", c.pv, c.ns, c.claim, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q %q %q: %q, want %q", c.pv, c.ns, c.claim, got, c.want)
		}
		if filepath.Dir(got) != root {
			t.Errorf("%q escapes %s", got, root)
		}
	}
	for _, bad := range []string{"", "relative/root"} {
		if _, err := VolumeDir(bad, "pvc-1", "ns", "c"); err == nil {
			t.Errorf("root %q accepted", bad)
		}
	}
	if _, err := VolumeDir(root, "", "ns", "c"); err == nil {
		t.Error("an empty volume name was accepted")
	}
}

func claim(mutate func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data-web-0", Namespace: "default",
			Annotations: map[string]string{AnnSelectedNode: "n1"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if mutate != nil {
		mutate(c)
	}
	return c
}

func TestCheckClaim(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	fsMode := corev1.PersistentVolumeFilesystem
	for _, c := range []struct {
		name    string
		mutate  func(*corev1.PersistentVolumeClaim)
		wantErr string
	}{
		{"rwo", nil, ""},
		{"rwop", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}
		}, ""},
		{"filesystem", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = &fsMode }, ""},
		{"rwx", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteMany}
		}, "ReadWriteMany"},
		{"rox", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
		}, "ReadOnlyMany"},
		{"block", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = &block }, "volumeMode Block"},
		{"selector", func(c *corev1.PersistentVolumeClaim) { c.Spec.Selector = &metav1.LabelSelector{} }, "selector"},
	} {
		err := CheckClaim(claim(c.mutate))
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "default/data-web-0")):
			t.Errorf("%s: error %v, want one naming the claim and %s", c.name, err, c.wantErr)
		}
	}
}

func TestPV(t *testing.T) {
	retain := corev1.PersistentVolumeReclaimRetain
	for _, c := range []struct {
		name   string
		class  *storagev1.StorageClass
		policy corev1.PersistentVolumeReclaimPolicy
	}{
		{"class without policy", &storagev1.StorageClass{}, corev1.PersistentVolumeReclaimDelete},
		{"retain", &storagev1.StorageClass{ReclaimPolicy: &retain, MountOptions: []string{"noatime"}}, retain},
	} {
		pvc := claim(nil)
		pv := PV(controller.ProvisionOptions{StorageClass: c.class, PVName: "pvc-1", PVC: pvc}, "n1", "host-1", "/r/pvc-1_default_data-web-0")
		if pv.Spec.PersistentVolumeReclaimPolicy != c.policy {
			t.Errorf("%s: policy %s, want %s", c.name, pv.Spec.PersistentVolumeReclaimPolicy, c.policy)
		}
		if pv.Name != "pvc-1" || pv.Spec.Local == nil || pv.Spec.Local.Path != "/r/pvc-1_default_data-web-0" || pv.Annotations[AnnPath] != pv.Spec.Local.Path || pv.Annotations[AnnNode] != "n1" {
			t.Errorf("%s: %+v", c.name, pv)
		}
		req := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0]
		if req.Key != corev1.LabelHostname || req.Operator != corev1.NodeSelectorOpIn || len(req.Values) != 1 || req.Values[0] != "host-1" {
			t.Errorf("%s: nodeAffinity %+v", c.name, req)
		}
		if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.String() != "1Gi" {
			t.Errorf("%s: capacity %s", c.name, q.String())
		}
		if *pv.Spec.VolumeMode != corev1.PersistentVolumeFilesystem || len(pv.Spec.AccessModes) != 1 || pv.Spec.AccessModes[0] != corev1.ReadWriteOnce {
			t.Errorf("%s: modes %v %v", c.name, *pv.Spec.VolumeMode, pv.Spec.AccessModes)
		}
		if strings.Join(pv.Spec.MountOptions, ",") != strings.Join(c.class.MountOptions, ",") {
			t.Errorf("%s: mount options %v", c.name, pv.Spec.MountOptions)
		}
	}
	pv := PV(controller.ProvisionOptions{PVName: "pvc-1", PVC: claim(nil)}, "n1", "", "/r/x")
	if v := pv.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0]; v != "n1" {
		t.Errorf("no hostname label: affinity to %q, want the node name", v)
	}
}

// Provision makes a 0777 directory under the root on the claim's node and
// reruns reuse it; claims of other nodes are ignored; refused claims make
// no directory. Delete removes the directory with its data (and no file
// outside it, even through a symlink), and refuses volumes whose path is
// not right inside the root.
func TestProvisionDelete(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "storage")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(filepath.Dir(root), "outside")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Provisioner{Node: "n1", Hostname: "n1", Root: root}
	opts := func(pvc *corev1.PersistentVolumeClaim) controller.ProvisionOptions {
		return controller.ProvisionOptions{StorageClass: &storagev1.StorageClass{}, PVName: "pvc-1", PVC: pvc,
			SelectedNodeName: pvc.Annotations[AnnSelectedNode]}
	}

	if !p.ShouldProvision(ctx, claim(nil)) {
		t.Error("ShouldProvision refused a claim of its node")
	}
	other := claim(func(c *corev1.PersistentVolumeClaim) { c.Annotations[AnnSelectedNode] = "n2" })
	if p.ShouldProvision(ctx, other) {
		t.Error("ShouldProvision took a claim of another node")
	}
	if _, _, err := p.Provision(ctx, opts(other)); !isIgnored(err) {
		t.Errorf("another node's claim: %v, want an IgnoredError", err)
	}
	unscheduled := claim(func(c *corev1.PersistentVolumeClaim) { delete(c.Annotations, AnnSelectedNode) })
	if _, _, err := p.Provision(ctx, opts(unscheduled)); err == nil || !strings.Contains(err.Error(), "WaitForFirstConsumer") {
		t.Errorf("claim without a node: %v", err)
	}
	block := corev1.PersistentVolumeBlock
	for _, bad := range []*corev1.PersistentVolumeClaim{
		claim(func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		}),
		claim(func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = &block }),
	} {
		if pv, state, err := p.Provision(ctx, opts(bad)); err == nil || pv != nil || state != controller.ProvisioningFinished {
			t.Errorf("refused claim: %v %v %v", pv, state, err)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("refused or foreign claims made directories: %v", entries)
	}

	pv, state, err := p.Provision(ctx, opts(claim(nil)))
	if err != nil || state != controller.ProvisioningFinished {
		t.Fatalf("provision: %v %v", state, err)
	}
	dir := filepath.Join(root, "pvc-1_default_data-web-0")
	if pv.Spec.Local.Path != dir {
		t.Fatalf("path %s, want %s", pv.Spec.Local.Path, dir)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o777 {
		t.Fatalf("directory %v %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Provision(ctx, opts(claim(nil))); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err != nil {
		t.Fatalf("rerun lost the data: %v", err)
	}
	// A symlink inside the volume to a file outside: Delete removes the
	// link, not the target.
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	if !p.ShouldDelete(ctx, pv) {
		t.Error("ShouldDelete refused a volume of its node")
	}
	foreign := pv.DeepCopy()
	foreign.Annotations[AnnNode] = "n2"
	if p.ShouldDelete(ctx, foreign) {
		t.Error("ShouldDelete took a volume of another node")
	}
	if err := p.Delete(ctx, foreign); !isIgnored(err) {
		t.Errorf("another node's volume: %v, want an IgnoredError", err)
	}
	for _, path := range []string{"/etc", root, filepath.Dir(root), root + "/../outside", root + "/a/b", "relative"} {
		evil := pv.DeepCopy()
		evil.Spec.Local.Path, evil.Annotations[AnnPath] = path, path
		if err := p.Delete(ctx, evil); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("path %s: %v, want a refusal", path, err)
		}
	}
	moved := pv.DeepCopy()
	moved.Spec.Local.Path = filepath.Join(root, "other")
	if err := p.Delete(ctx, moved); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("path changed after provisioning: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("a refused delete removed the volume: %v", err)
	}

	if err := p.Delete(ctx, pv); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the volume directory is still there: %v", err)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
		t.Errorf("the symlink's target was touched: %q %v", b, err)
	}
	if err := p.Delete(ctx, pv); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func isIgnored(err error) bool {
	var ie *controller.IgnoredError
	return errors.As(err, &ie)
}
