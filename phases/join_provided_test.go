package phases

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/pki"
)

// externalCAJoin is node cp2 (10.201.0.3) about to join, as a control
// plane, a cluster at 10.201.0.2:6443 whose CAs are external, after its
// operator did what the README says: `certs generate-csr` for this node,
// every request signed with the cluster's CAs, kubelet.conf pointed at the
// control-plane endpoint. Its shared files are what download-certs brings
// from an upload under the external CA (CA certificates without keys).
func externalCAJoin(t *testing.T) (*JoinData, map[string]testutil.ExternalCA, *bytes.Buffer) {
	t.Helper()
	cfg := config.New()
	cfg.Paths = config.DefaultPaths().WithRoot(t.TempDir())
	cfg.ThisNode = config.ThisNode{Name: "cp2", IP: "10.201.0.3", API: config.Endpoint{Host: "10.201.0.3", Port: 6443}}
	cfg.Join.ControlPlane = &v1beta4.JoinControlPlane{LocalAPIEndpoint: v1beta4.APIEndpoint{AdvertiseAddress: "10.201.0.3", BindPort: 6443}}
	cfg.Cluster.ControlPlaneEndpoint = "10.201.0.2:6443"
	cfg.Cluster.Networking.ServiceSubnet = "10.96.0.0/12"
	cfg.Cluster.Networking.DNSDomain = "cluster.local"
	cfg.Cluster.EncryptionAlgorithm = pki.AlgorithmECDSAP256
	var out bytes.Buffer
	n, err := NewNode(cfg, progress.New(&out, false), false, config.HostFacts{})
	if err != nil {
		t.Fatal(err)
	}
	d := &JoinData{Node: n}
	cas := map[string]testutil.ExternalCA{
		pki.CAName:       testutil.NewExternalCA(t, "corp-kubernetes-ca"),
		pki.FrontProxyCA: testutil.NewExternalCA(t, "corp-front-proxy-ca"),
		pki.EtcdCA:       testutil.NewExternalCA(t, "corp-etcd-ca"),
	}
	p := cfg.Paths
	if _, err := pki.GenerateCSRs(d.PKISpec()); err != nil {
		t.Fatal(err)
	}
	if err := testutil.SignCSRDirs(p.Host(p.CertDir), p.Host(p.KubernetesDir), cas, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	setKubeconfigServer(t, p, "kubelet.conf", "https://10.201.0.2:6443")
	d.sharedCerts = map[string][]byte{
		"ca.crt":             cas[pki.CAName].CertPEM(),
		"front-proxy-ca.crt": cas[pki.FrontProxyCA].CertPEM(),
		"etcd/ca.crt":        cas[pki.EtcdCA].CertPEM(),
		"sa.key":             []byte("sa.key"),
		"sa.pub":             []byte("sa.pub"),
	}
	return d, cas, &out
}

func setKubeconfigServer(t *testing.T, p config.Paths, file, server string) {
	t.Helper()
	path := p.Host(p.Kubeconfig(file))
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server = server
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

// signOne replaces one certificate with one that ca signs for its request
// (the .csr generate-csr left), valid for validity from now.
func signOne(t *testing.T, p config.Paths, ca testutil.ExternalCA, base string, validity time.Duration) {
	t.Helper()
	csr, err := os.ReadFile(p.Host(pki.CSRPath(p, base)))
	if err != nil {
		t.Fatal(err)
	}
	crt, err := ca.Sign(csr, validity)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Host(pki.CertPath(p, base)), crt, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestJoinAcceptsProvidedFilesUnderExternalCA(t *testing.T) {
	d, _, out := externalCAJoin(t)
	root := d.Paths.Host("/")
	before := testutil.Tree(t, root)
	if err := d.checkProvidedFiles(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "External CA mode") || !strings.Contains(out.String(), "signs nothing") {
		t.Errorf("output: %s", out)
	}
	if after := testutil.Tree(t, root); !slices.Equal(before, after) {
		t.Errorf("the check wrote on the node:\nbefore %v\nafter  %v", before, after)
	}
	// The join's certs and kubeconfig phases then use every file as given
	// and sign nothing (no CA key on the node): after download-certs, every
	// leaf and kubeconfig is the external CA's.
	delete(d.sharedCerts, "sa.key")
	delete(d.sharedCerts, "sa.pub") // made here instead: a key, not a signature
	if err := uploadcerts.Write(d.Paths, d.sharedCerts); err != nil {
		t.Fatal(err)
	}
	results, err := pki.EnsureAll(d.PKISpec())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"admin.conf", "controller-manager.conf", "scheduler.conf"} {
		r, err := pki.EnsureKubeconfig(d.PKISpec(), f)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, r)
	}
	for _, r := range results {
		c, isCert := pki.LookupCert(r.Name)
		switch {
		case r.Name == pki.ServiceAccount, isCert && c.IsCA:
		case r.Action != pki.ActionExternal:
			t.Errorf("%s: %s, want %s", r.Name, r.Action, pki.ActionExternal)
		}
	}
}

// Each way a provided file can be wrong is refused before anything is
// written, naming the file and what to do.
func TestJoinRefusesProvidedFilesThatDoNotFit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, d *JoinData, cas map[string]testutil.ExternalCA)
		want  []string
	}{
		{"missing certificate", func(t *testing.T, d *JoinData, _ map[string]testutil.ExternalCA) {
			os.Remove(d.Paths.Host(pki.CertPath(d.Cfg.Paths, "apiserver")))
		}, []string{"/etc/kubernetes/pki/apiserver.crt is missing and must be provided", "apiserver.csr"}},
		{"signed by another CA", func(t *testing.T, d *JoinData, _ map[string]testutil.ExternalCA) {
			signOne(t, d.Cfg.Paths, testutil.NewExternalCA(t, "other-ca"), "etcd/peer", 24*time.Hour)
		}, []string{"/etc/kubernetes/pki/etcd/peer.crt exists but is not signed by /etc/kubernetes/pki/etcd/ca.crt", "provide a certificate issued by"}},
		{"another node's names", func(t *testing.T, d *JoinData, _ map[string]testutil.ExternalCA) {
			// cp2's files on a node that joins as cp3 (10.201.0.4).
			d.Cfg.ThisNode.Name = "cp3"
			d.Cfg.ThisNode.API.Host = "10.201.0.4"
		}, []string{"/etc/kubernetes/pki/apiserver.crt exists but", "lacks SAN 10.201.0.4", "lacks SAN cp3", "re-issue it from your CA"}},
		{"expired", func(t *testing.T, d *JoinData, cas map[string]testutil.ExternalCA) {
			signOne(t, d.Cfg.Paths, cas[pki.CAName], "apiserver-kubelet-client", -30*time.Minute)
		}, []string{"/etc/kubernetes/pki/apiserver-kubelet-client.crt exists but expired", "renew it with your CA"}},
		{"kubeconfig of another cluster", func(t *testing.T, d *JoinData, _ map[string]testutil.ExternalCA) {
			other, _, _ := externalCAJoin(t)
			b, err := os.ReadFile(other.Paths.Host(other.Cfg.Paths.Kubeconfig("admin.conf")))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(d.Paths.Host(d.Cfg.Paths.Kubeconfig("admin.conf")), b, 0o600)
		}, []string{"/etc/kubernetes/admin.conf exists but trusts another CA", "replace it with one made for this cluster"}},
		{"missing kubelet.conf", func(t *testing.T, d *JoinData, _ map[string]testutil.ExternalCA) {
			os.Remove(d.Paths.Host(d.Cfg.Paths.Kubeconfig("kubelet.conf")))
		}, []string{"/etc/kubernetes/kubelet.conf is missing and must be provided", "system:node:cp2"}},
		{"kubelet.conf at the node's own API server", func(t *testing.T, d *JoinData, _ map[string]testutil.ExternalCA) {
			setKubeconfigServer(t, d.Cfg.Paths, "kubelet.conf", "https://10.201.0.3:6443")
		}, []string{"/etc/kubernetes/kubelet.conf points at https://10.201.0.3:6443", "set its server to https://10.201.0.2:6443"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "-"), func(t *testing.T) {
			d, cas, _ := externalCAJoin(t)
			tc.spoil(t, d, cas)
			root := d.Paths.Host("/")
			before := testutil.Tree(t, root)
			err := d.checkProvidedFiles()
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append([]string{"under the cluster's external CA", "nothing was written"}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the refusal does not say %q:\n%v", w, err)
				}
			}
			if after := testutil.Tree(t, root); !slices.Equal(before, after) {
				t.Errorf("the check wrote on the node:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// Outside external CA mode (the cluster's CA key comes with the shared
// files), kubeforge makes the node's files: a kubelet.conf already there is
// refused, other kubeconfig files must fit, none is fine.
func TestJoinProvidedFilesWithSharedCAKey(t *testing.T) {
	d, _, _ := externalCAJoin(t)
	d.sharedCerts["ca.key"] = []byte("the cluster CA's key")
	err := d.checkProvidedFiles()
	if err == nil || !strings.Contains(err.Error(), "/etc/kubernetes/kubelet.conf already exists") || !strings.Contains(err.Error(), "kubeforge reset") {
		t.Errorf("kubelet.conf present: %v", err)
	}
	// A rerun of this node's unfinished join, whose kubelet-start wrote
	// kubelet.conf: not refused for it.
	for _, f := range joinKubeconfigs {
		if f != "kubelet.conf" {
			os.Remove(d.Paths.Host(d.Cfg.Paths.Kubeconfig(f)))
		}
	}
	d.resuming = true
	if err := d.checkProvidedFiles(); err != nil {
		t.Errorf("resuming, with the kubelet.conf this join wrote: %v", err)
	}
	d.resuming = false
	for _, f := range joinKubeconfigs {
		os.Remove(d.Paths.Host(d.Cfg.Paths.Kubeconfig(f)))
	}
	if err := d.checkProvidedFiles(); err != nil {
		t.Errorf("no kubeconfig files: %v", err)
	}
	// A worker join checks nothing here (its preflight refuses kubelet.conf).
	d.Cfg.Join.ControlPlane = nil
	if err := d.checkProvidedFiles(); err != nil {
		t.Errorf("worker: %v", err)
	}
}
