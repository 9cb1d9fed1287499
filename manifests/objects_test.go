package manifests

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubeforge/kubeforge/config"
)

// nodeRules are the RBAC rules kubeforge grants the group system:nodes, by
// namespace ("" for cluster-wide), as the objects bind them.
func nodeRules(t *testing.T, objs []runtime.Object) map[string][]rbacv1.PolicyRule {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{}
	for _, o := range objs {
		switch r := o.(type) {
		case *rbacv1.Role:
			roles[r.Namespace+"/Role/"+r.Name] = r.Rules
		case *rbacv1.ClusterRole:
			roles["/ClusterRole/"+r.Name] = r.Rules
		}
	}
	out := map[string][]rbacv1.PolicyRule{}
	bound := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool { return s.Kind == rbacv1.GroupKind && s.Name == "system:nodes" })
	}
	for _, o := range objs {
		switch b := o.(type) {
		case *rbacv1.RoleBinding:
			if bound(b.Subjects) {
				ns := b.Namespace
				if b.RoleRef.Kind == "ClusterRole" {
					out[ns] = append(out[ns], roles["/ClusterRole/"+b.RoleRef.Name]...)
				} else {
					out[ns] = append(out[ns], roles[ns+"/Role/"+b.RoleRef.Name]...)
				}
			}
		case *rbacv1.ClusterRoleBinding:
			if bound(b.Subjects) {
				out[""] = append(out[""], roles["/ClusterRole/"+b.RoleRef.Name]...)
			}
		}
	}
	return out
}

// allows says whether rules allow verb on resource (name "" for a request
// that names no object: a list or watch without a metadata.name selector).
func allows(rules []rbacv1.PolicyRule, verb, resource, name string) bool {
	for _, r := range rules {
		if !slices.Contains(r.APIGroups, "") && !slices.Contains(r.APIGroups, "*") {
			continue
		}
		if !slices.Contains(r.Resources, resource) && !slices.Contains(r.Resources, "*") {
			continue
		}
		if !slices.Contains(r.Verbs, verb) && !slices.Contains(r.Verbs, "*") {
			continue
		}
		if len(r.ResourceNames) > 0 && !slices.Contains(r.ResourceNames, name) {
			continue
		}
		return true
	}
	return false
}

// kubeforge's RBAC lets nodes read no Node beyond what the Node authorizer
// allows (their own), and of kube-system's ConfigMaps only the ones named;
// the node directory and the cloud config (the address pool) are the
// ones, for get, list and watch.
func TestNodesRBAC(t *testing.T) {
	cfg := config.New()
	upload, err := UploadConfigObjects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	objs := append(BootstrapRBAC(), upload...)
	objs = append(objs, LogStoreObjects(cfg, LogStorage{})...)
	rules := nodeRules(t, objs)
	for ns, rs := range rules {
		for _, verb := range []string{"get", "list", "watch"} {
			if allows(rs, verb, "nodes", "") || allows(rs, verb, "nodes", "other-node") {
				t.Errorf("nodes may %s Nodes (namespace %q rules %v)", verb, ns, rs)
			}
		}
	}
	sys := rules["kube-system"]
	for _, verb := range []string{"get", "list", "watch"} {
		if !allows(sys, verb, "configmaps", NodeDirectory) {
			t.Errorf("nodes may not %s ConfigMap kube-system/%s", verb, NodeDirectory)
		}
		if !allows(sys, verb, "configmaps", CloudControllerConfigMap) {
			t.Errorf("nodes may not %s ConfigMap kube-system/%s (the LoadBalancer speakers' address pool)", verb, CloudControllerConfigMap)
		}
		if allows(sys, verb, "configmaps", "") || allows(sys, verb, "configmaps", "coredns") {
			t.Errorf("nodes may %s other ConfigMaps in kube-system", verb)
		}
	}
	if allows(rules[""], "list", "configmaps", "") {
		t.Errorf("nodes may list ConfigMaps cluster-wide")
	}
	// The publisher's rights: create, and write only the directory.
	var pub []rbacv1.PolicyRule
	for _, o := range BootstrapRBAC() {
		if r, ok := o.(*rbacv1.Role); ok && r.Name == NodeDirectoryPublisher && r.Namespace == "kube-system" {
			pub = r.Rules
		}
	}
	if !allows(pub, "create", "configmaps", "") || !allows(pub, "update", "configmaps", NodeDirectory) || allows(pub, "update", "configmaps", "coredns") ||
		allows(pub, "delete", "configmaps", NodeDirectory) {
		t.Errorf("publisher rules: %v", pub)
	}
}
