package e2e

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/pki"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// TestExternalCA is kubeadm's external CA mode, done as a kubeadm user
// does it: `certs generate-csr` on the node; the CAs (made by the test,
// their keys never on the node) sign every request; the certificates, the
// completed kubeconfigs and the CA certificates without keys go in place;
// `init` accepts the provided kubeconfigs, uses every file as given and
// says it signs nothing; the node comes up and kubectl (with the admin.conf
// the external CA signed) works, logs too; check-expiration marks the
// certificates as the external CA's and `certs renew` refuses. A second
// node joins as a control plane with its own certificates and kubeconfig
// files made the same way: refused, before it writes anything, while its
// kubelet.conf points at its own API server; joined, signing nothing, once
// that is fixed.
func TestExternalCA(t *testing.T) {
	testbed.RequireHost(t)
	tb := testbed.New(t)
	n := tb.AddNode("xca1")
	n2 := tb.AddNode("xca2")
	c := &cluster{t: t, n: n}
	endpoint := n.IP.String() + ":6443"
	withEndpoint := func(cfg string) string {
		return strings.Replace(cfg, "kind: ClusterConfiguration\n", "kind: ClusterConfiguration\ncontrolPlaneEndpoint: "+endpoint+"\n", 1)
	}
	initFile := n.WriteConfigFile("init.yaml", withEndpoint(n.InitConfigYAML()))
	var cas map[string]testutil.ExternalCA
	var cpJoin []string

	step := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, func(t *testing.T) { c.t = t; f(t) })
		c.t = t
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}

	step("generate-csr and sign", func(t *testing.T) {
		out := c.kubeforge(time.Minute, "certs", "generate-csr", "--config", initFile)
		if !strings.Contains(out, `Generated "apiserver" key and CSR`) || !strings.Contains(out, n.IP.String()) {
			t.Errorf("generate-csr:\n%s", out)
		}
		cas = map[string]testutil.ExternalCA{
			pki.CAName:       testutil.NewExternalCA(t, "corp-kubernetes-ca"),
			pki.FrontProxyCA: testutil.NewExternalCA(t, "corp-front-proxy-ca"),
			pki.EtcdCA:       testutil.NewExternalCA(t, "corp-etcd-ca"),
		}
		if err := testutil.SignCSRDirs(n.Path("/etc/kubernetes/pki"), n.Path("/etc/kubernetes"), cas, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	})

	step("init", func(t *testing.T) {
		out := c.kubeforge(3*time.Minute, "init", "--config", initFile, "--advertise-address", n.IP.String(), "--node-name", n.Name, "--single-node", "--upload-certs")
		_, cpJoin = joinCommands(t, out)
		if cpJoin == nil {
			t.Errorf("init --upload-certs printed no control-plane join command:\n%s", out)
		}
		for _, w := range []string{"External CA mode for ca:", "External CA mode for front-proxy-ca:", "External CA mode for etcd/ca:",
			`Using externally managed "apiserver" certificate`, `Using externally managed "admin.conf" kubeconfig`, "Skipping metrics-server"} {
			if !strings.Contains(out, w) {
				t.Errorf("init output lacks %q:\n%s", w, out)
			}
		}
		for _, k := range []string{"ca.key", "front-proxy-ca.key", "etcd/ca.key"} {
			if _, err := os.Stat(n.Path("/etc/kubernetes/pki/" + k)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s on the node: %v", k, err)
			}
		}
		poll(t, 90*time.Second, "node Ready and control plane Running", func() string {
			if s := c.nodeReady(time.Time{}); s != "" {
				return s
			}
			return c.controlPlaneReady()
		})
		if out := c.kubectl("get", "nodes"); !strings.Contains(out, n.Name) || !strings.Contains(out, " Ready ") {
			t.Errorf("kubectl get nodes:\n%s", out)
		}
		// The API server reaches the kubelet with the apiserver-kubelet-client
		// certificate the external CA signed (the kubelet's serving
		// certificate comes from kubeforge's own kubelet serving CA).
		poll(t, 60*time.Second, "kubectl logs", func() string {
			if _, err := n.Kubectl("logs", "-n", "kube-system", "kube-apiserver-"+n.Name, "--tail=1"); err != nil {
				return err.Error()
			}
			return ""
		})
		m, err := n.ReadFile("/etc/kubernetes/manifests/kube-controller-manager.yaml")
		if err != nil || strings.Contains(string(m), "/pki/ca.key") {
			t.Errorf("the controller-manager signs with the absent ca.key (%v):\n%s", err, m)
		}
	})

	step("not renewable", func(t *testing.T) {
		out := c.kubeforge(time.Minute, "certs", "check-expiration")
		if n := strings.Count(out, "external CA: renew it with your CA"); n < 12 {
			t.Errorf("check-expiration marks %d certificates as the external CA's, want the 7 leaves and 5 kubeconfigs:\n%s", n, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := n.Kubeforge(ctx, "certs", "renew", "apiserver")
		if err == nil || !strings.Contains(out, "cannot renew apiserver: its CA is external") || !strings.Contains(out, "renew it with your CA") {
			t.Errorf("certs renew apiserver under an external CA: %v\n%s", err, out)
		}
		if s := c.readyz(); s != "" {
			t.Error(s)
		}
	})

	step("control-plane join", func(t *testing.T) {
		if cpJoin == nil {
			t.Fatal("no control-plane join command")
		}
		// On xca2, as on xca1: requests for its names, signed by the same CAs.
		csrFile := n2.WriteConfigFile("csr.yaml", withEndpoint(n2.InitConfigYAML()))
		kf(t, n2, time.Minute, "certs", "generate-csr", "--config", csrFile)
		if err := testutil.SignCSRDirs(n2.Path("/etc/kubernetes/pki"), n2.Path("/etc/kubernetes"), cas, 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		args := append(slices.Clone(cpJoin), "--config", n2.JoinConfigFile())
		// generate-csr points kubelet.conf at the node's own API server.
		before := filesUnder(n2, nodeDirs...)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := n2.Kubeforge(ctx, args...)
		cancel()
		if err == nil || !strings.Contains(out, "/etc/kubernetes/kubelet.conf points at https://"+n2.IP.String()+":6443") ||
			!strings.Contains(out, "set its server to https://"+endpoint) || !strings.Contains(out, "nothing was written") {
			t.Fatalf("join with kubelet.conf at the node's own API server: %v\n%s", err, out)
		}
		if after := filesUnder(n2, nodeDirs...); !slices.Equal(before, after) {
			t.Errorf("the refused join changed the node's files:\nbefore %v\nafter  %v", before, after)
		}
		kc, err := clientcmd.LoadFromFile(n2.Path("/etc/kubernetes/kubelet.conf"))
		if err != nil {
			t.Fatal(err)
		}
		kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster].Server = "https://" + endpoint
		if err := clientcmd.WriteToFile(*kc, n2.Path("/etc/kubernetes/kubelet.conf")); err != nil {
			t.Fatal(err)
		}
		out = kf(t, n2, 5*time.Minute, args...)
		for _, w := range []string{"External CA mode: this node's certificates and kubeconfig files are in place", `Using externally managed "apiserver" certificate`,
			`Using externally managed "admin.conf" kubeconfig`, "Promoted etcd member " + n2.Name} {
			if !strings.Contains(out, w) {
				t.Errorf("join output lacks %q:\n%s", w, out)
			}
		}
		for _, k := range []string{"ca.key", "front-proxy-ca.key", "etcd/ca.key"} {
			if _, err := os.Stat(n2.Path("/etc/kubernetes/pki/" + k)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s on %s: %v", k, n2.Name, err)
			}
		}
		api := apiClient(t, n, "")
		poll(t, 3*time.Minute, n2.Name+" Ready with its control plane", func() string {
			if s := nodesReady(api, n.Name, n2.Name); s != "" {
				return s
			}
			return controlPlaneOf(api, n2.Name)
		})
		poll(t, time.Minute, "two voting etcd members", func() string { return votingMembers(n, n, n2) })
		if out, err := kubectlTry(n2, apiServer(n2), "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
			t.Errorf("%s's API server: /readyz %q %v", n2.Name, out, err)
		}
	})
}
