package preflight

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/config"
)

var (
	wantControlPlaneHead = []string{
		"NumCPU",
		"Mem",
		"Port-6443",
		"Port-10259",
		"Port-10257",
		"FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
		"FileAvailable--etc-kubernetes-manifests-kube-controller-manager.yaml",
		"FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml",
		"FileAvailable--etc-kubernetes-manifests-etcd.yaml",
	}
	wantNode = []string{
		"Swap",
		"FileExisting-runc",
		"FileExisting-iptables",
		"SystemVerification",
		"KernelFeatures",
		"Hostname",
		"Port-10250",
		"FileContent--proc-sys-net-ipv4-ip_forward",
	}
	wantEtcd = []string{"Port-2379", "Port-2380", "Port-2381", "DirAvailable--var-lib-etcd"}

	// wantInitNames is every check of a default init, in order.
	wantInitNames = concat(
		[]string{"IsPrivilegedUser"},
		wantControlPlaneHead,
		// No kubeconfig file checks, as kubeadm's init (external CA mode).
		[]string{"HTTPProxy"},
		wantNode,
		wantEtcd,
	)
)

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func without(list []string, drop ...string) []string {
	var out []string
	for _, s := range list {
		keep := true
		for _, d := range drop {
			keep = keep && s != d
		}
		if keep {
			out = append(out, s)
		}
	}
	return out
}

func sameNames(t *testing.T, got []Check, want []string) {
	t.Helper()
	if g := names(got); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("check names =\n\t%s\nwant\n\t%s", strings.Join(g, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestInitChecksNames(t *testing.T) {
	f := goodHost()
	tests := []struct {
		name string
		o    InitOptions
		want []string
	}{
		{name: "default", o: InitOptions{AdvertiseAddress: "10.201.0.2"}, want: wantInitNames},
		{name: "bind port", o: InitOptions{BindPort: 7443},
			want: concat([]string{"IsPrivilegedUser", "NumCPU", "Mem", "Port-7443"}, wantInitNames[4:])},
		{name: "external CRI", o: InitOptions{ExternalCRI: true}, want: without(wantInitNames, "FileExisting-runc")},
		{name: "external etcd", o: InitOptions{ExternalEtcd: true}, want: without(wantInitNames, wantEtcd...)},
		{name: "IPv6", o: InitOptions{AdvertiseAddress: "fd00::2"},
			want: concat(wantInitNames[:len(wantInitNames)-5], []string{"FileContent--proc-sys-net-ipv6-conf-default-forwarding"}, wantEtcd)},
		{name: "subnets", o: InitOptions{ServiceSubnet: "10.96.0.0/12", PodSubnet: "10.244.0.0/16,fd00:10:244::/56"},
			want: concat(wantInitNames[:11], []string{"HTTPProxyCIDR", "HTTPProxyCIDR", "HTTPProxyCIDR"}, wantInitNames[11:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { sameNames(t, InitChecks(tt.o, f), tt.want) })
	}
}

var wantJoinWorker = concat(
	[]string{
		"IsPrivilegedUser",
		"FileAvailable--etc-kubernetes-kubelet.conf",
		"FileAvailable--etc-kubernetes-bootstrap-kubelet.conf",
		"FileAvailable--etc-kubernetes-pki-ca.crt",
	},
	wantNode,
	[]string{"HTTPProxy"},
)
var wantJoinControlPlane = concat(
	without(wantJoinWorker, "FileAvailable--etc-kubernetes-pki-ca.crt", "FileAvailable--etc-kubernetes-kubelet.conf"),
	wantControlPlaneHead,
	[]string{"HTTPProxy"},
	wantEtcd,
)

func TestJoinChecksNames(t *testing.T) {
	f := goodHost()
	sameNames(t, JoinChecks(JoinOptions{APIServerEndpoint: "10.201.0.2:6443"}, f), wantJoinWorker)
	sameNames(t, JoinChecks(JoinOptions{APIServerEndpoint: "10.201.0.2:6443", ExternalCRI: true}, f), without(wantJoinWorker, "FileExisting-runc"))
	sameNames(t, JoinChecks(JoinOptions{APIServerEndpoint: "10.201.0.2:6443", ControlPlane: true, AdvertiseAddress: "10.201.0.3"}, f), wantJoinControlPlane)
	sameNames(t, JoinChecks(JoinOptions{ControlPlane: true, ExternalEtcd: true}, f), without(wantJoinControlPlane, wantEtcd...))
	sameNames(t, ResetChecks(f), []string{"IsPrivilegedUser"})
}

func portAddresses(checks []Check) map[string]string {
	out := map[string]string{}
	for _, c := range checks {
		if p, ok := c.(PortCheck); ok {
			out[p.Name()] = fmt.Sprintf("%q", p.Addresses)
		}
	}
	return out
}

func TestPortAddresses(t *testing.T) {
	f := goodHost()
	got := portAddresses(InitChecks(InitOptions{AdvertiseAddress: "10.201.0.2"}, f))
	want := map[string]string{
		"Port-6443":  `[""]`,
		"Port-10259": `[""]`,
		"Port-10257": `[""]`,
		"Port-10250": `[""]`,
		"Port-2379":  `["10.201.0.2" "127.0.0.1"]`,
		"Port-2380":  `["10.201.0.2"]`,
		"Port-2381":  `["127.0.0.1"]`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("port addresses = %v, want %v", got, want)
	}
	got = portAddresses(InitChecks(InitOptions{AdvertiseAddress: "127.0.0.1", BindAddress: "127.0.0.1"}, f))
	for name, a := range got {
		if a != `["127.0.0.1"]` {
			t.Errorf("%s checked on %s, want only 127.0.0.1", name, a)
		}
	}
	got = portAddresses(JoinChecks(JoinOptions{APIServerEndpoint: "10.201.0.2:6443"}, f))
	if fmt.Sprint(got) != fmt.Sprint(map[string]string{"Port-10250": `[""]`}) {
		t.Errorf("worker join ports = %v", got)
	}
}

func TestInitCleanHost(t *testing.T) {
	warnings, err := Run(InitChecks(InitOptions{AdvertiseAddress: "10.201.0.2", NodeName: "n1"}, goodHost()), nil)
	if err != nil || len(warnings) != 0 {
		t.Errorf("Run on a good host = %v, %v; want no findings", warnings, err)
	}
	warnings, err = Run(JoinChecks(JoinOptions{APIServerEndpoint: "10.201.0.2:6443", ControlPlane: true, AdvertiseAddress: "10.201.0.2"}, goodHost()), nil)
	if err != nil || len(warnings) != 0 {
		t.Errorf("Run join on a good host = %v, %v; want no findings", warnings, err)
	}
}

// A host that already runs a cluster is refused, naming each file and port
// and telling to run kubeforge reset.
func TestInitRefusesExistingCluster(t *testing.T) {
	f := goodHost().hybrid()
	for _, p := range []string{
		"/etc/kubernetes/admin.conf",
		"/etc/kubernetes/super-admin.conf",
		"/etc/kubernetes/kubelet.conf",
		"/etc/kubernetes/controller-manager.conf",
		"/etc/kubernetes/scheduler.conf",
		"/etc/kubernetes/manifests/kube-apiserver.yaml",
		"/etc/kubernetes/manifests/kube-controller-manager.yaml",
		"/etc/kubernetes/manifests/kube-scheduler.yaml",
		"/etc/kubernetes/manifests/etcd.yaml",
		"/var/lib/etcd/member/wal/0.wal",
	} {
		f.files[p] = "x"
	}
	for _, a := range []string{":6443", ":10259", ":10257", ":10250", "10.201.0.2:2379", "10.201.0.2:2380", "127.0.0.1:2381"} {
		f.busy[a] = inUse()
	}
	f.files[ipv4Forward] = "0\n"

	warnings, err := Run(InitChecks(InitOptions{AdvertiseAddress: "10.201.0.2"}, f), []string{"Port-10250"})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("err = %v, want *Error", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: /etc/kubernetes/manifests/kube-apiserver.yaml already exists; this host already runs a cluster or holds the leftovers of one: run `kubeforge reset` first",
		"[ERROR FileAvailable--etc-kubernetes-manifests-etcd.yaml]: /etc/kubernetes/manifests/etcd.yaml already exists",
		"[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty; it holds the data of a previous etcd member: run `kubeforge reset`",
		"[ERROR Port-6443]: Port 6443 is in use",
		"[ERROR Port-2381]: Port 2381 is in use (on 127.0.0.1)",
		"[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents are not set to 1; pods cannot reach anything without IP forwarding: run `sysctl -w net.ipv4.ip_forward=1`",
		"--ignore-preflight-errors=Port-6443,Port-10259,Port-10257,FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml,",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "ERROR Port-10250") {
		t.Errorf("ignored Port-10250 reported as an error:\n%s", msg)
	}
	if len(perr.Failures) != 12 { // the kubeconfig files are not checked (kubeadm)
		t.Errorf("%d failures, want 12:\n%s", len(perr.Failures), msg)
	}
	var got []string
	for _, w := range warnings {
		got = append(got, fmt.Sprintf("%s ignored=%v", w.Check, w.Ignored))
	}
	if want := "SystemVerification ignored=false,Port-10250 ignored=true"; strings.Join(got, ",") != want {
		t.Errorf("warnings = %v, want %s", got, want)
	}
}

func TestDefaultPaths(t *testing.T) {
	if p := defaultPaths(config.Paths{}); p.KubernetesDir != "/etc/kubernetes" || p.Root != "" {
		t.Errorf("defaultPaths(zero) = %+v", p)
	}
	if p := defaultPaths(config.Paths{Root: "/tmp/x"}); p.EtcdDataDir != "/var/lib/etcd" || p.Root != "/tmp/x" {
		t.Errorf("defaultPaths(root) = %+v", p)
	}
	custom := config.DefaultPaths()
	custom.EtcdDataDir = "/data/etcd"
	checks := InitChecks(InitOptions{Paths: custom}, goodHost())
	if n := checks[len(checks)-1].Name(); n != "DirAvailable--data-etcd" {
		t.Errorf("last check = %q, want DirAvailable--data-etcd", n)
	}
}

// External CA mode, as kubeadm: the kubeconfig files the user made with
// `certs generate-csr` and signed elsewhere are in place before init, and
// its preflight accepts them (the kubeconfig phase verifies them).
func TestInitAcceptsProvidedKubeconfigs(t *testing.T) {
	f := goodHost()
	for _, k := range []string{"admin.conf", "super-admin.conf", "kubelet.conf", "controller-manager.conf", "scheduler.conf"} {
		f.files["/etc/kubernetes/"+k] = "x"
	}
	f.files["/etc/kubernetes/pki/ca.crt"] = "x"
	if warnings, err := Run(InitChecks(InitOptions{AdvertiseAddress: "10.201.0.2"}, f), nil); err != nil || len(warnings) != 0 {
		t.Errorf("init preflight with provided kubeconfigs = %v, %v; want no findings", warnings, err)
	}
}
