package manifests

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

func logStoreParts(t *testing.T, st LogStorage) (*appsv1.StatefulSet, *rbacv1.Role, *rbacv1.RoleBinding) {
	var sts *appsv1.StatefulSet
	var role *rbacv1.Role
	var rb *rbacv1.RoleBinding
	for _, o := range LogStoreObjects(testConfig(t), st) {
		switch o := o.(type) {
		case *appsv1.StatefulSet:
			sts = o
		case *rbacv1.Role:
			role = o
		case *rbacv1.RoleBinding:
			if o.Name == LogShipperRole {
				rb = o
			}
		}
	}
	if sts == nil || role == nil || rb == nil {
		t.Fatal("missing the StatefulSet, Role or RoleBinding")
	}
	return sts, role, rb
}

// The store keeps its data on a local-path volume claim when that class
// exists, else on a control-plane node's disk; it runs the self-image's
// log-store component with the configured retention; the nodes may POST
// to its Service proxy and nothing else.
func TestLogStoreObjects(t *testing.T) {
	sts, role, rb := logStoreParts(t, LogStorage{Class: LogStoreClass})
	if n := len(sts.Spec.VolumeClaimTemplates); n != 1 || *sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName != LogStoreClass {
		t.Errorf("volume claims %+v, want one of class %s", sts.Spec.VolumeClaimTemplates, LogStoreClass)
	}
	if len(sts.Spec.Template.Spec.Volumes) != 0 {
		t.Errorf("a volume besides the claim: %+v", sts.Spec.Template.Spec.Volumes)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Command, []string{"kubeforge", "component", "log-store"}) || !slices.Contains(c.Args, "-retentionPeriod=7d") {
		t.Errorf("command %q args %q", c.Command, c.Args)
	}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Verbs, []string{"create"}) || !slices.Equal(role.Rules[0].Resources, []string{"services/proxy"}) ||
		!slices.Equal(role.Rules[0].ResourceNames, []string{LogStoreName}) {
		t.Errorf("shipper role %+v: want create on services/proxy of %s only", role.Rules, LogStoreName)
	}
	if len(rb.Subjects) != 1 || rb.Subjects[0].Name != "system:nodes" || rb.RoleRef.Name != LogShipperRole {
		t.Errorf("binding %+v", rb)
	}

	sts, _, _ = logStoreParts(t, LogStorage{})
	if len(sts.Spec.VolumeClaimTemplates) != 0 {
		t.Error("a volume claim without a class")
	}
	vols := sts.Spec.Template.Spec.Volumes
	if len(vols) != 1 || vols[0].HostPath == nil || vols[0].HostPath.Path != LogStoreHostDir {
		t.Errorf("volumes %+v, want hostPath %s", vols, LogStoreHostDir)
	}
	if _, ok := sts.Spec.Template.Spec.NodeSelector["node-role.kubernetes.io/control-plane"]; !ok {
		t.Error("the hostPath store is not pinned to a control-plane node")
	}

	cfg := testConfig(t)
	cfg.Kubeforge.Addons.LogStore.Retention = "30d"
	for _, o := range LogStoreObjects(cfg, LogStorage{}) {
		if s, ok := o.(*appsv1.StatefulSet); ok && !slices.Contains(s.Spec.Template.Spec.Containers[0].Args, "-retentionPeriod=30d") {
			t.Errorf("retention 30d not passed: %q", s.Spec.Template.Spec.Containers[0].Args)
		}
	}
}

// The store serves the nodes the node directory lists: it is told where
// the directory is, and its own ServiceAccount (with a token) is bound to
// the Role that reads that one ConfigMap; it knows the pod network (to
// name pods in its refusals); its liveness does not hang on the directory.
func TestLogStoreNodeAllowlist(t *testing.T) {
	c := testConfig(t)
	var sts *appsv1.StatefulSet
	var sa *corev1.ServiceAccount
	var binding *rbacv1.RoleBinding
	for _, o := range LogStoreObjects(c, LogStorage{}) {
		switch o := o.(type) {
		case *appsv1.StatefulSet:
			sts = o
		case *corev1.ServiceAccount:
			sa = o
		case *rbacv1.RoleBinding:
			if o.Name == LogStoreDirectoryBinding {
				binding = o
			}
		}
	}
	if sa == nil || sa.Name != LogStoreName || sa.Namespace != "kube-system" || (sa.AutomountServiceAccountToken != nil && !*sa.AutomountServiceAccountToken) {
		t.Fatalf("ServiceAccount %+v: want kube-system/%s with a token", sa, LogStoreName)
	}
	pod := sts.Spec.Template.Spec
	if pod.ServiceAccountName != LogStoreName || (pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken) {
		t.Errorf("the store runs as %q (token %v), want %s with its token", pod.ServiceAccountName, pod.AutomountServiceAccountToken, LogStoreName)
	}
	if binding == nil || binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != NodeDirectoryReader ||
		len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != LogStoreName || binding.Subjects[0].Namespace != "kube-system" {
		t.Errorf("binding %+v: want the store's ServiceAccount bound to Role %s", binding, NodeDirectoryReader)
	}
	// The Role it is bound to (bootstrap RBAC) reads that one ConfigMap.
	for _, o := range NodeDirectoryRBAC() {
		if r, ok := o.(*rbacv1.Role); ok && r.Name == NodeDirectoryReader {
			if len(r.Rules) != 1 || !slices.Equal(r.Rules[0].ResourceNames, []string{NodeDirectory}) || slices.Contains(r.Rules[0].Verbs, "update") {
				t.Errorf("Role %s: %+v", NodeDirectoryReader, r.Rules)
			}
		}
	}
	ctr := pod.Containers[0]
	args := strings.Join(ctr.Args, " ")
	for _, want := range []string{"-nodeDirectory=kube-system/" + NodeDirectory, "-podNetwork=" + c.Cluster.Networking.PodSubnet} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %s: %s", want, args)
		}
	}
	if ctr.LivenessProbe == nil || ctr.LivenessProbe.TCPSocket == nil {
		t.Errorf("liveness %+v: want a TCP probe (/health is 503 until the directory is read)", ctr.LivenessProbe)
	}
	if ctr.ReadinessProbe == nil || ctr.ReadinessProbe.HTTPGet == nil || ctr.ReadinessProbe.HTTPGet.Path != "/health" {
		t.Errorf("readiness %+v: want /health", ctr.ReadinessProbe)
	}
}
