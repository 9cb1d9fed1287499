package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// checkNodeCredentials checks what node n's own credentials (kubelet.conf)
// may read of the Nodes and of kube-system's ConfigMaps: its own Node and
// the node directory (kube-system/kubeforge-nodes), which names every node
// in all (n's own name among them), and nothing else.
func checkNodeCredentials(t *testing.T, n *testbed.Node, all ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	kubectl := func(args ...string) (string, error) {
		return n.Run(ctx, "/usr/bin/kubectl", append([]string{"--kubeconfig=/etc/kubernetes/kubelet.conf", "--request-timeout=20s"}, args...)...)
	}
	refused := func(args ...string) {
		t.Helper()
		out, err := kubectl(args...)
		if err == nil || !strings.Contains(strings.ToLower(out), "forbidden") {
			t.Errorf("node %s: kubectl %s was not refused: err=%v\n%s", n.Name, strings.Join(args, " "), err, out)
		}
	}
	allowed := func(args ...string) string {
		t.Helper()
		out, err := kubectl(args...)
		if err != nil {
			t.Errorf("node %s: kubectl %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
		}
		return out
	}
	var other string
	for _, o := range all {
		if o != n.Name {
			other = o
		}
	}
	// Nodes: only its own (the Node authorizer), by name or by a
	// metadata.name selector; not the list, not a watch, not another.
	refused("get", "nodes")
	refused("get", "--raw", "/api/v1/nodes?watch=true&timeoutSeconds=1")
	refused("get", "node", other)
	if out := allowed("get", "node", n.Name, "-o", "name"); strings.TrimSpace(out) != "node/"+n.Name {
		t.Errorf("node %s: get its own Node: %q", n.Name, out)
	}
	allowed("get", "nodes", "--field-selector", "metadata.name="+n.Name)
	// kube-system's ConfigMaps: the directory only (get, and list/watch
	// selecting it by name, as the node's informers do).
	refused("-n", "kube-system", "get", "configmaps")
	refused("-n", "kube-system", "get", "configmap", "extension-apiserver-authentication")
	refused("-n", "kube-system", "get", "--raw", "/api/v1/namespaces/kube-system/configmaps?watch=true&timeoutSeconds=1")
	allowed("-n", "kube-system", "get", "configmaps", "--field-selector", "metadata.name=kubeforge-nodes")
	allowed("-n", "kube-system", "get", "--raw", "/api/v1/namespaces/kube-system/configmaps?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dkubeforge-nodes")
	for _, c := range []struct{ verb, what, want string }{
		{"list", "nodes", "no"},
		{"watch", "nodes", "no"},
		{"get", "nodes/" + other, "no"},
		{"get", "nodes/" + n.Name, "yes"},
		{"get", "configmaps/kubeforge-nodes -n kube-system", "yes"},
		{"watch", "configmaps/kubeforge-nodes -n kube-system", "yes"},
		{"update", "configmaps/kubeforge-nodes -n kube-system", "no"},
		{"list", "configmaps -n kube-system", "no"},
	} {
		out, _ := kubectl(append([]string{"auth", "can-i", c.verb}, strings.Fields(c.what)...)...)
		// The answer is the last line's first word ("no - node: ...",
		// after a warning that nodes are not namespaced).
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if got := strings.Fields(lines[len(lines)-1] + " "); len(got) == 0 || got[0] != c.want {
			t.Errorf("node %s: can-i %s %s = %q, want %s", n.Name, c.verb, c.what, out, c.want)
		}
	}
	out := allowed("-n", "kube-system", "get", "configmap", "kubeforge-nodes", "-o", "json")
	var cm struct{ Data map[string]string }
	if err := json.Unmarshal([]byte(out), &cm); err != nil {
		t.Fatalf("node %s: the node directory: %v\n%s", n.Name, err, out)
	}
	var names []string
	for k, v := range cm.Data {
		names = append(names, k)
		// Only the projection: no labels, images or capacity.
		for _, leak := range []string{"kubernetes.io/hostname", "capacity", "images", "kubeletVersion"} {
			if strings.Contains(v, leak) {
				t.Errorf("the node directory's entry for %s carries %q: %s", k, leak, v)
			}
		}
	}
	slices.Sort(names)
	want := slices.Sorted(slices.Values(all))
	if !slices.Equal(names, want) {
		t.Errorf("the node directory names %v, want %v", names, want)
	}
}
