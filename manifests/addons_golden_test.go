package manifests

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
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
	golden(t, "log-store.yaml", objectsYAML(t, LogStoreObjects(c, LogStorage{Class: LogStoreClass})))
	golden(t, "log-store-hostpath.yaml", objectsYAML(t, LogStoreObjects(c, LogStorage{})))
	cc, err := CloudControllerObjects(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "cloud-controller.yaml", objectsYAML(t, cc))
}
