// Package bootstraphooks tests the kube-apiserver post-start hooks that
// kubeforge patches (hack/patches; README "Upstream patches"): each hook runs
// against a small in-memory API (fakeapi_test.go), and the test checks what
// it wrote. The package has tests only.
//
// The tests pass on the upstream code and on the patched code. Where the
// test binary says the patch is compiled in (version.Patches, stamped with
// -ldflags -X the way `make build` stamps the binary), they also check that
// the patched behaviour is there: that catches a test run that says
// "patched" but compiled upstream's code. `make unit` and hack/test.sh run
// them on the patched code, hack/test.sh with the race detector too, which
// is the point for apiserver-bootstrap-roles-parallel: it turns the hook's
// loops into goroutines.
package bootstraphooks

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/rest"
	schedulingapiv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	rbacrest "k8s.io/kubernetes/pkg/registry/rbac/rest"
	schedulingrest "k8s.io/kubernetes/pkg/registry/scheduling/rest"
	"k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac/bootstrappolicy"

	"github.com/kubeforge/kubeforge/internal/version"
)

const rbacGV = "rbac.authorization.k8s.io/v1"

// The hooks poll every second; the patches make their first attempt
// immediate.
const pollInterval = time.Second

// patched says whether the test binary is stamped with the patch id.
func patched(id string) bool {
	return slices.Contains(strings.Split(version.Patches, ","), id)
}

// runHook runs a post-start hook once against the fake API and returns how
// long after its start the first request came.
func runHook(t *testing.T, api *fakeAPI, cfg *rest.Config, hook genericapiserver.PostStartHookFunc) time.Duration {
	t.Helper()
	api.reset()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := hook(genericapiserver.PostStartHookContext{LoopbackClientConfig: cfg, Context: ctx}); err != nil {
		t.Fatalf("hook: %v", err)
	}
	_, _, first, unsupported := api.stats()
	if len(unsupported) > 0 {
		t.Fatalf("the hook sent requests the fake API does not serve: %v", unsupported)
	}
	return first.Sub(start)
}

// TestBootstrapRoles runs the rbac/bootstrap-roles hook
// (apiserver-bootstrap-roles-parallel, apiserver-bootstrap-roles-no-initial-wait)
// on an empty API, then again on what it wrote, as an API server restart does.
func TestBootstrapRoles(t *testing.T) {
	api, cfg := newFakeAPI(t)
	name, hook, err := rbacrest.RESTStorageProvider{}.PostStartHook()
	if err != nil {
		t.Fatal(err)
	}
	if name != "rbac/bootstrap-roles" {
		t.Fatalf("hook name %q", name)
	}
	// The first create of every 5th ClusterRole and ClusterRoleBinding
	// fails: goroutines less than 8 apart then record a failure at the same
	// time (the race detector's part), and the hook's next attempt, a poll
	// interval later, creates the rest.
	for i, r := range append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...) {
		if i%5 == 0 {
			api.failCreate["clusterroles/"+r.Name] = true
		}
	}
	for i, b := range append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...) {
		if i%5 == 0 {
			api.failCreate["clusterrolebindings/"+b.Name] = true
		}
	}

	firstRequest := runHook(t, api, cfg, hook)
	writes, peak, _, _ := api.stats()
	t.Logf("first run: %d writes, at most %d requests in flight, first request after %v", writes, peak, firstRequest.Round(time.Millisecond))
	if n := api.pendingFailures(); n > 0 {
		t.Errorf("%d injected failures were not reached", n)
	}

	// Every bootstrap object is there, each with its own content: a
	// goroutine that reconciled the wrong loop item would show here.
	clusterRoles := list[rbacv1.ClusterRole](t, api, rbacGV, "", "clusterroles")
	for _, want := range append(bootstrappolicy.ClusterRoles(), bootstrappolicy.ControllerRoles()...) {
		got, ok := clusterRoles[want.Name]
		if !ok {
			t.Errorf("ClusterRole %s was not created", want.Name)
		} else if !equality.Semantic.DeepEqual(got.Rules, want.Rules) || !equality.Semantic.DeepEqual(got.AggregationRule, want.AggregationRule) {
			t.Errorf("ClusterRole %s: rules %v, aggregation %v; want %v, %v", want.Name, got.Rules, got.AggregationRule, want.Rules, want.AggregationRule)
		}
	}
	bindings := list[rbacv1.ClusterRoleBinding](t, api, rbacGV, "", "clusterrolebindings")
	for _, want := range append(bootstrappolicy.ClusterRoleBindings(), bootstrappolicy.ControllerRoleBindings()...) {
		got, ok := bindings[want.Name]
		if !ok {
			t.Errorf("ClusterRoleBinding %s was not created", want.Name)
		} else if got.RoleRef != want.RoleRef || !equality.Semantic.DeepEqual(got.Subjects, want.Subjects) {
			t.Errorf("ClusterRoleBinding %s: %v %v; want %v %v", want.Name, got.RoleRef, got.Subjects, want.RoleRef, want.Subjects)
		}
	}
	var namespaces []string
	for ns, want := range bootstrappolicy.NamespaceRoles() {
		namespaces = append(namespaces, ns)
		roles := list[rbacv1.Role](t, api, rbacGV, ns, "roles")
		for _, w := range want {
			if got, ok := roles[w.Name]; !ok || !equality.Semantic.DeepEqual(got.Rules, w.Rules) {
				t.Errorf("Role %s/%s: %v (created: %v); want %v", ns, w.Name, got.Rules, ok, w.Rules)
			}
		}
	}
	for ns, want := range bootstrappolicy.NamespaceRoleBindings() {
		namespaces = append(namespaces, ns)
		rbs := list[rbacv1.RoleBinding](t, api, rbacGV, ns, "rolebindings")
		for _, w := range want {
			if got, ok := rbs[w.Name]; !ok || got.RoleRef != w.RoleRef || !equality.Semantic.DeepEqual(got.Subjects, w.Subjects) {
				t.Errorf("RoleBinding %s/%s: %v %v (created: %v); want %v %v", ns, w.Name, got.RoleRef, got.Subjects, ok, w.RoleRef, w.Subjects)
			}
		}
	}
	created := list[map[string]any](t, api, "v1", "", "namespaces")
	for _, ns := range namespaces {
		if _, ok := created[ns]; !ok {
			t.Errorf("namespace %s (of bootstrap roles) was not created", ns)
		}
	}
	if n, want := len(clusterRoles)+len(bindings), 100; n < want {
		t.Errorf("%d ClusterRoles and ClusterRoleBindings; bootstrappolicy has more than %d", n, want)
	}

	// At most 8 at a time; the patch's parallelism when it is compiled in
	// (upstream sends one request at a time).
	if peak > 8 {
		t.Errorf("%d requests in flight at once; the patch allows 8", peak)
	}
	if patched("apiserver-bootstrap-roles-parallel") && peak < 2 {
		t.Errorf("apiserver-bootstrap-roles-parallel is stamped in, but the hook never had two requests in flight " +
			"(built without -modfile build/go.mod?)")
	}
	if patched("apiserver-bootstrap-roles-no-initial-wait") && firstRequest >= pollInterval {
		t.Errorf("apiserver-bootstrap-roles-no-initial-wait is stamped in, but the first request came after %v", firstRequest)
	}

	// A second run finds everything reconciled and writes nothing.
	runHook(t, api, cfg, hook)
	if writes, _, _, _ := api.stats(); writes != 0 {
		t.Errorf("second run: %d writes, want none", writes)
	}
}

// TestSystemPriorityClasses runs the scheduling/bootstrap-system-priority-classes
// hook (apiserver-priority-classes-no-initial-wait) twice, as TestBootstrapRoles does.
func TestSystemPriorityClasses(t *testing.T) {
	api, cfg := newFakeAPI(t)
	_, hook, err := schedulingrest.RESTStorageProvider{}.PostStartHook()
	if err != nil {
		t.Fatal(err)
	}
	firstRequest := runHook(t, api, cfg, hook)
	t.Logf("first request after %v", firstRequest.Round(time.Millisecond))
	got := list[schedulingv1.PriorityClass](t, api, "scheduling.k8s.io/v1", "", "priorityclasses")
	for _, want := range schedulingapiv1.SystemPriorityClasses() {
		if pc, ok := got[want.Name]; !ok || pc.Value != want.Value {
			t.Errorf("PriorityClass %s: value %d (created: %v), want %d", want.Name, pc.Value, ok, want.Value)
		}
	}
	if patched("apiserver-priority-classes-no-initial-wait") && firstRequest >= pollInterval {
		t.Errorf("apiserver-priority-classes-no-initial-wait is stamped in, but the first request came after %v", firstRequest)
	}
	runHook(t, api, cfg, hook)
	if writes, _, _, _ := api.stats(); writes != 0 {
		t.Errorf("second run: %d writes, want none", writes)
	}
}
