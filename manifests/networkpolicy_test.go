package manifests

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

func TestNetworkPolicyGolden(t *testing.T) {
	golden(t, "network-policy.yaml", objectsYAML(t, NetworkPolicyObjects(testConfig(t))))
}

// The controller gets what it needs and no more: read-only list/watch of
// pods, namespaces and NetworkPolicies; CAP_NET_ADMIN alone (not
// privileged); the host network (nftables and NFQUEUE are per network
// namespace); every node, control plane included; the self-image.
func TestNetworkPolicyLeastPrivilege(t *testing.T) {
	var ds *appsv1.DaemonSet
	var role *rbacv1.ClusterRole
	for _, o := range NetworkPolicyObjects(testConfig(t)) {
		switch v := o.(type) {
		case *appsv1.DaemonSet:
			ds = v
		case *rbacv1.ClusterRole:
			role = v
		}
	}
	if ds == nil || role == nil {
		t.Fatal("no DaemonSet or ClusterRole")
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v != "list" && v != "watch" {
				t.Errorf("rule %v grants %q", r, v)
			}
		}
		for _, res := range r.Resources {
			if !slices.Contains([]string{"pods", "namespaces", "networkpolicies"}, res) {
				t.Errorf("rule %v covers %q", r, res)
			}
		}
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("not in the host network")
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("does not tolerate every taint (control-plane nodes too): %v", spec.Tolerations)
	}
	ctr := spec.Containers[0]
	sc := ctr.SecurityContext
	if sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("security context %+v", sc)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities %+v", sc.Capabilities)
	}
	if !slices.Equal(ctr.Command[:3], []string{"kubeforge", "component", NetworkPolicyComponent}) || !strings.HasPrefix(ctr.Image, "kubeforge.local/kubeforge:") {
		t.Errorf("not the self-image's controller: %s %v", ctr.Image, ctr.Command)
	}
	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "127.0.0.1" || p.HTTPGet.Port.IntValue() != NetworkPolicyHealthPort {
		t.Errorf("readiness probe %+v", p)
	}
	if !slices.Contains(ctr.Command, "--health-address=127.0.0.1:10264") {
		t.Errorf("health address not on loopback: %v", ctr.Command)
	}
}
