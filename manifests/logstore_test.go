package manifests

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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
			rb = o
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

// The store knows the cluster's pod network and the controller-manager's
// node block sizes, so that it can tell pods from nodes.
func TestLogStorePodNetworkArgs(t *testing.T) {
	c := testConfig(t)
	if got := nodeCIDRMaskSizes(c); got != "24,64" {
		t.Errorf("default node blocks %q, want 24,64", got)
	}
	c.Cluster.ControllerManager.ExtraArgs = append(c.Cluster.ControllerManager.ExtraArgs, argOf("node-cidr-mask-size", "26"))
	if got := nodeCIDRMaskSizes(c); got != "26,26" {
		t.Errorf("with --node-cidr-mask-size=26: %q", got)
	}
	c.Cluster.ControllerManager.ExtraArgs = append(c.Cluster.ControllerManager.ExtraArgs, argOf("node-cidr-mask-size-ipv6", "80"))
	if got := nodeCIDRMaskSizes(c); got != "26,80" {
		t.Errorf("with -ipv6=80 after it: %q", got)
	}
	sts, _, _ := logStoreParts(t, LogStorage{})
	args := strings.Join(sts.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "-podNetwork="+c.Cluster.Networking.PodSubnet) {
		t.Errorf("the store does not get the pod network: %s", args)
	}
}
