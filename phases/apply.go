package phases

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/internal/progress"
)

// Applier creates or updates API objects idempotently.
type Applier interface {
	Apply(ctx context.Context, phase string, objs ...runtime.Object) error
}

// resources maps the kinds kubeforge creates to their API resources.
var resources = map[schema.GroupVersionKind]string{
	{Version: "v1", Kind: "ConfigMap"}:                                                               "configmaps",
	{Version: "v1", Kind: "Secret"}:                                                                  "secrets",
	{Version: "v1", Kind: "Service"}:                                                                 "services",
	{Version: "v1", Kind: "ServiceAccount"}:                                                          "serviceaccounts",
	{Version: "v1", Kind: "Namespace"}:                                                               "namespaces",
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                                               "deployments",
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}:                                                "daemonsets",
	{Group: "apps", Version: "v1", Kind: "StatefulSet"}:                                              "statefulsets",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"}:                                "roles",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"}:                         "rolebindings",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"}:                         "clusterroles",
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"}:                  "clusterrolebindings",
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:                                    "poddisruptionbudgets",
	{Group: "scheduling.k8s.io", Version: "v1", Kind: "PriorityClass"}:                               "priorityclasses",
	{Group: "certificates.k8s.io", Version: "v1", Kind: "CertificateSigningRequest"}:                 "certificatesigningrequests",
	{Group: "discovery.k8s.io", Version: "v1", Kind: "EndpointSlice"}:                                "endpointslices",
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingAdmissionPolicy"}:        "validatingadmissionpolicies",
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingAdmissionPolicyBinding"}: "validatingadmissionpolicybindings",
	{Group: "apiregistration.k8s.io", Version: "v1", Kind: "APIService"}:                             "apiservices",
	{Group: "storage.k8s.io", Version: "v1", Kind: "StorageClass"}:                                   "storageclasses",
}

// FieldManager is kubeforge's server-side apply field manager.
const FieldManager = "kubeforge"

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, schema.GroupVersionResource, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, schema.GroupVersionResource{}, err
	}
	u := &unstructured.Unstructured{Object: m}
	gvk := u.GroupVersionKind()
	res, ok := resources[gvk]
	if !ok {
		return nil, schema.GroupVersionResource{}, fmt.Errorf("kubeforge cannot apply %s (no TypeMeta or unknown kind)", gvk)
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, gvk.GroupVersion().WithResource(res), nil
}

func describe(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", u.GetKind(), ns, u.GetName())
	}
	return fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
}

// ServerApplier applies objects with server-side apply, so a rerun updates
// what kubeforge owns and leaves other managers' fields alone.
type ServerApplier struct {
	Client dynamic.Interface
	Out    *progress.Reporter
	// Changed counts the objects Apply created or updated.
	Changed int
}

// applyConcurrency bounds the requests Apply has in flight.
const applyConcurrency = 8

// workload reports whether u runs pods: those are applied after the
// objects they use (ServiceAccounts, ConfigMaps, RBAC), so that their
// first pods find them.
func workload(u *unstructured.Unstructured) bool {
	switch u.GetKind() {
	case "Deployment", "DaemonSet", "StatefulSet":
		return true
	}
	return false
}

// Apply applies the objects: all but the workloads at once, then the
// workloads at once. Each API write is an etcd commit, so a phase of a
// dozen objects took a dozen round trips in a row. The progress lines come
// in the order of objs; the first error (in that order) is returned.
func (a *ServerApplier) Apply(ctx context.Context, phase string, objs ...runtime.Object) error {
	us := make([]*unstructured.Unstructured, len(objs))
	gvrs := make([]schema.GroupVersionResource, len(objs))
	for i, obj := range objs {
		u, gvr, err := toUnstructured(obj)
		if err != nil {
			return err
		}
		us[i], gvrs[i] = u, gvr
	}
	for _, tier := range []bool{false, true} {
		var idx []int
		for i, u := range us {
			if workload(u) == tier {
				idx = append(idx, i)
			}
		}
		results := make([]applyResult, len(idx))
		var wg sync.WaitGroup
		sem := make(chan struct{}, applyConcurrency)
		for k, i := range idx {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				results[k] = a.applyOne(ctx, us[i], gvrs[i])
			}()
		}
		wg.Wait()
		for _, r := range results {
			if r.err != nil {
				return r.err
			}
			if r.action != "unchanged" {
				a.Changed++
			}
			a.Out.Emit(progress.Event{Phase: phase, Action: r.action, Message: r.message,
				Seconds: progress.Seconds(r.took)})
		}
	}
	return nil
}

type applyResult struct {
	action, message string
	took            time.Duration
	err             error
}

func (a *ServerApplier) applyOne(ctx context.Context, u *unstructured.Unstructured, gvr schema.GroupVersionResource) applyResult {
	start := time.Now()
	var ri dynamic.ResourceInterface = a.Client.Resource(gvr)
	if ns := u.GetNamespace(); ns != "" {
		ri = a.Client.Resource(gvr).Namespace(ns)
	}
	before := ""
	if cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
		before = cur.GetResourceVersion()
	}
	got, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return applyResult{err: fmt.Errorf("apply %s: %w", describe(u), err)}
	}
	action, verb := "created", "Created"
	switch {
	case before == got.GetResourceVersion():
		action, verb = "unchanged", "Using existing"
	case before != "":
		action, verb = "updated", "Updated"
	}
	return applyResult{action: action, message: verb + " " + describe(u), took: time.Since(start)}
}

// PrintingApplier is the dry-run applier: it prints each object it would apply.
type PrintingApplier struct{ Out *progress.Reporter }

// Apply prints the objects as YAML.
func (a *PrintingApplier) Apply(_ context.Context, phase string, objs ...runtime.Object) error {
	for _, obj := range objs {
		u, _, err := toUnstructured(obj)
		if err != nil {
			return err
		}
		b, err := yaml.Marshal(redactSecret(u).Object)
		if err != nil {
			return err
		}
		a.Out.Emit(progress.Event{Phase: phase, Action: "would-apply", Message: "Would apply " + describe(u),
			Detail: string(b)})
	}
	return nil
}

// redactSecret returns, for dry-run output, a copy of a Secret whose
// data and stringData values read <redacted>; any other object comes back
// as it is.
func redactSecret(u *unstructured.Unstructured) *unstructured.Unstructured {
	if u.GetKind() != "Secret" {
		return u
	}
	u = u.DeepCopy()
	for _, field := range []string{"data", "stringData"} {
		if m, ok := u.Object[field].(map[string]interface{}); ok {
			for k := range m {
				m[k] = "<redacted>"
			}
		}
	}
	return u
}
