package manifests

import (
	"slices"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	authuser "k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	psaload "k8s.io/pod-security-admission/admission/api/load"
	"sigs.k8s.io/yaml"
)

// The audit policy, evaluated by the API server's own evaluator: what is
// logged and what is dropped, first match wins.
func TestAuditPolicyLevels(t *testing.T) {
	p, err := policy.LoadPolicyFromBytes(AuditPolicy())
	if err != nil {
		t.Fatal(err)
	}
	eval := policy.NewPolicyRuleEvaluator(p)
	node := &authuser.DefaultInfo{Name: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}}
	admin := &authuser.DefaultInfo{Name: "kubernetes-admin", Groups: []string{"kubeadm:cluster-admins", "system:authenticated"}}
	proxy := &authuser.DefaultInfo{Name: "system:kube-proxy", Groups: []string{"system:authenticated"}}
	res := func(u authuser.Info, verb, resource, sub string) authorizer.AttributesRecord {
		return authorizer.AttributesRecord{User: u, Verb: verb, Resource: resource, Subresource: sub, Namespace: "default",
			Name: "x", ResourceRequest: true, APIVersion: "v1"}
	}
	for _, tc := range []struct {
		what  string
		attrs authorizer.AttributesRecord
		want  auditinternal.Level
	}{
		{"exec (a GET over WebSocket)", res(admin, "get", "pods", "exec"), auditinternal.LevelMetadata},
		{"exec (create)", res(admin, "create", "pods", "exec"), auditinternal.LevelMetadata},
		{"attach", res(admin, "get", "pods", "attach"), auditinternal.LevelMetadata},
		{"port-forward", res(admin, "get", "pods", "portforward"), auditinternal.LevelMetadata},
		{"pod proxy", res(admin, "get", "pods", "proxy"), auditinternal.LevelMetadata},
		{"service proxy", res(admin, "get", "services", "proxy"), auditinternal.LevelMetadata},
		{"node proxy", res(admin, "get", "nodes", "proxy"), auditinternal.LevelMetadata},
		{"a node reads a Secret", res(node, "get", "secrets", ""), auditinternal.LevelMetadata},
		{"a node watches Secrets", res(node, "watch", "secrets", ""), auditinternal.LevelMetadata},
		{"an admin lists Secrets", res(admin, "list", "secrets", ""), auditinternal.LevelMetadata},
		{"a node asks a service account token", res(node, "create", "serviceaccounts", "token"), auditinternal.LevelMetadata},
		{"a node reads a ConfigMap", res(node, "get", "configmaps", ""), auditinternal.LevelNone},
		{"a node reads a Pod", res(node, "get", "pods", ""), auditinternal.LevelNone},
		{"kube-proxy watches Services", res(proxy, "watch", "services", ""), auditinternal.LevelNone},
		{"an admin reads a Pod", res(admin, "get", "pods", ""), auditinternal.LevelNone},
		{"an admin creates a Pod", res(admin, "create", "pods", ""), auditinternal.LevelMetadata},
		{"an admin changes a ConfigMap", res(admin, "update", "configmaps", ""), auditinternal.LevelMetadata},
		{"health", authorizer.AttributesRecord{User: admin, Verb: "get", Path: "/readyz"}, auditinternal.LevelNone},
	} {
		if got := eval.EvaluatePolicyRule(tc.attrs).Level; got != tc.want {
			t.Errorf("%s: level %s, want %s", tc.what, got, tc.want)
		}
	}
}

// The Pod Security configuration loads with the admission plugin's own
// loader and says what the README says.
func TestAdmissionConfigPodSecurity(t *testing.T) {
	var doc struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Plugins    []struct {
			Name          string         `json:"name"`
			Configuration map[string]any `json:"configuration"`
		} `json:"plugins"`
	}
	if err := yaml.UnmarshalStrict(AdmissionConfig(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Kind != "AdmissionConfiguration" || len(doc.Plugins) != 1 || doc.Plugins[0].Name != "PodSecurity" {
		t.Fatalf("plugins %+v", doc.Plugins)
	}
	raw, _ := yaml.Marshal(doc.Plugins[0].Configuration)
	cfg, err := psaload.LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.Enforce != "baseline" || cfg.Defaults.Warn != "restricted" || cfg.Defaults.Audit != "restricted" ||
		!slices.Equal(cfg.Exemptions.Namespaces, []string{"kube-system"}) {
		t.Fatalf("%+v", cfg)
	}
}
