package manifests

import (
	"maps"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/internal/version"
)

// objectsYAML is a list of objects as one YAML stream, each document
// after a "---" line (as the golden files hold them).
func objectsYAML(t *testing.T, objs []runtime.Object) []byte {
	t.Helper()
	var out []byte
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(append(out, "---\n"...), b...)
	}
	return out
}

// The addons without a golden file of their own: CoreDNS, kube-proxy, the
// log store (on a claim and on a host directory) and the cloud controller.
func TestAddonsGolden(t *testing.T) {
	c := testConfig(t)
	golden(t, "coredns.yaml", objectsYAML(t, CoreDNSObjects(c)))
	kp, err := KubeProxyObjects(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kube-proxy.yaml", objectsYAML(t, kp))
	golden(t, "log-store.yaml", objectsYAML(t, LogStoreObjects(c, LogStorage{Class: LogStoreClass, QueryKey: "test-query-key"})))
	golden(t, "log-store-hostpath.yaml", objectsYAML(t, LogStoreObjects(c, LogStorage{})))
	cc, err := CloudControllerObjects(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cloud-controller.yaml", objectsYAML(t, cc))
}

// Every addon's workload is the one its WorkloadRef names, runs the
// self-image's component in its one container named as the workload,
// selects its own pods, runs on Linux nodes only, and gives no privilege
// escalation (kube-proxy, privileged, aside).
func TestAddonWorkloads(t *testing.T) {
	c := testConfig(t)
	kp, err := KubeProxyObjects(c)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := CloudControllerObjects(c)
	if err != nil {
		t.Fatal(err)
	}
	addons := map[WorkloadRef][]runtime.Object{
		CoreDNSWorkload:         CoreDNSObjects(c),
		KubeProxyWorkload:       kp,
		MetricsServerWorkload:   MetricsServerObjects(c, MetricsServerTLS{}),
		LocalPathWorkload:       LocalPathObjects(c),
		CloudControllerWorkload: cc,
		DashboardWorkload:       DashboardObjects(c),
		NetworkPolicyWorkload:   NetworkPolicyObjects(c),
		LogStoreWorkload:        LogStoreObjects(c, LogStorage{}),
	}
	for ref, objs := range addons {
		var found []string
		for _, o := range objs {
			var meta metav1.ObjectMeta
			var sel *metav1.LabelSelector
			var tmpl corev1.PodTemplateSpec
			switch w := o.(type) {
			case *appsv1.Deployment:
				meta, sel, tmpl = w.ObjectMeta, w.Spec.Selector, w.Spec.Template
			case *appsv1.DaemonSet:
				meta, sel, tmpl = w.ObjectMeta, w.Spec.Selector, w.Spec.Template
			case *appsv1.StatefulSet:
				meta, sel, tmpl = w.ObjectMeta, w.Spec.Selector, w.Spec.Template
			default:
				continue
			}
			kind := o.GetObjectKind().GroupVersionKind().Kind
			found = append(found, kind+"/"+meta.Name)
			if kind != string(ref.Kind) || meta.Name != ref.Name || meta.Namespace != metav1.NamespaceSystem {
				t.Errorf("%v renders %s %s/%s", ref, kind, meta.Namespace, meta.Name)
			}
			if !maps.Equal(sel.MatchLabels, tmpl.Labels) || !maps.Equal(meta.Labels, tmpl.Labels) {
				t.Errorf("%v: selector %v, labels %v, pod labels %v", ref, sel.MatchLabels, meta.Labels, tmpl.Labels)
			}
			pod := tmpl.Spec
			if len(pod.Containers) != 1 || pod.NodeSelector[corev1.LabelOSStable] != "linux" {
				t.Fatalf("%v: %d containers, node selector %v", ref, len(pod.Containers), pod.NodeSelector)
			}
			ctr := pod.Containers[0]
			if ctr.Name != ref.Name || ctr.Image != version.Image() || len(ctr.Command) < 3 || ctr.Command[0] != "kubeforge" || ctr.Command[1] != "component" {
				t.Errorf("%v: container %s runs %s %q, not the self-image's component", ref, ctr.Name, ctr.Image, ctr.Command)
			}
			sc := ctr.SecurityContext
			if sc == nil || (sc.Privileged == nil && (sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation)) {
				t.Errorf("%v: security context %+v allows privilege escalation", ref, sc)
			}
			if sc != nil && sc.Privileged != nil && ref != KubeProxyWorkload {
				t.Errorf("%v is privileged", ref)
			}
		}
		if len(found) != 1 {
			t.Errorf("%v: workloads %v, want one", ref, found)
		}
	}
}
