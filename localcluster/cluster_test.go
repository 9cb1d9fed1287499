package localcluster

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"kubeforge", true}, {"dev-1", true}, {"a", true}, {strings.Repeat("a", 32), true},
		{"", false}, {"Dev", false}, {"-a", false}, {"a-", false}, {"a_b", false}, {strings.Repeat("a", 33), false}, {"a.b", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateName(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "lower case") {
				t.Errorf("error does not say what a name must be: %v", err)
			}
		})
	}
}

func TestNodeNames(t *testing.T) {
	got := strings.Join(NodeNames("dev", 2, 3), " ")
	want := "dev-control-plane dev-control-plane2 dev-worker dev-worker2 dev-worker3"
	if got != want {
		t.Fatalf("NodeNames = %q, want %q", got, want)
	}
	for _, n := range NodeNames(strings.Repeat("a", 32), 9, 9) {
		if !NodeNameRE.MatchString(n) {
			t.Errorf("node name %q of a longest cluster name is not a valid node name", n)
		}
	}
}

func TestFreeSubnet(t *testing.T) {
	p := netip.MustParsePrefix
	rng := p("10.200.0.0/13")
	for _, tc := range []struct {
		name string
		used []netip.Prefix
		want string
	}{
		{"empty host", nil, "10.200.0.0/24"},
		{"default route overlaps nothing", []netip.Prefix{p("0.0.0.0/0")}, "10.200.0.0/24"},
		{"first taken by a bridge address", []netip.Prefix{p("10.200.0.1/32")}, "10.200.1.0/24"},
		{"a wide route covers the start", []netip.Prefix{p("10.200.0.0/23"), p("10.200.2.0/24")}, "10.200.3.0/24"},
		{"a /8 route covers all", []netip.Prefix{p("10.0.0.0/8")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := FreeSubnet(rng, tc.used, false)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("FreeSubnet = %v, want an error", got)
				}
				if !strings.Contains(err.Error(), "10.200.0.0/13") {
					t.Errorf("error does not name the range: %v", err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("FreeSubnet = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
	// At random: never a used one, always in the range.
	used := []netip.Prefix{p("10.160.0.0/12")} // half of TestRange
	for i := 0; i < 200; i++ {
		got, err := FreeSubnet(TestRange, used, true)
		if err != nil || !TestRange.Contains(got.Addr()) || Overlapping(got, used).IsValid() || got.Bits() != 24 {
			t.Fatalf("FreeSubnet random = %v, %v", got, err)
		}
	}
	if ClusterRange.Overlaps(TestRange) || ClusterRange.Overlaps(p("10.96.0.0/12")) || ClusterRange.Overlaps(p("10.244.0.0/16")) {
		t.Error("the cluster range overlaps the test range or the default Service or pod network")
	}
}

func TestParseIPOutput(t *testing.T) {
	out := `default via 172.17.0.1 dev eth0
172.17.0.0/16 dev eth0 proto kernel scope link src 172.17.0.2
10.200.0.0/24 dev kfcab12cd proto kernel scope link src 10.200.0.1
local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1
2: eth0    inet 172.17.0.2/16 brd 172.17.255.255 scope global eth0
`
	got := ParseIPOutput(out)
	for _, want := range []string{"172.17.0.0/16", "10.200.0.0/24", "172.17.0.1/32", "127.0.0.1/32"} {
		found := false
		for _, g := range got {
			found = found || g.String() == want
		}
		if !found {
			t.Errorf("ParseIPOutput lacks %s: %v", want, got)
		}
	}
	if c := Overlapping(netip.MustParsePrefix("10.200.0.0/24"), got); c.String() != "10.200.0.0/24" {
		t.Errorf("Overlapping = %v", c)
	}
	if c := Overlapping(netip.MustParsePrefix("10.200.1.0/24"), got); c.IsValid() {
		t.Errorf("Overlapping(10.200.1.0/24) = %v, want none", c)
	}
}

func TestNodeConfigs(t *testing.T) {
	user := `apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
networking:
  podSubnet: 10.250.0.0/16
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPods: 50
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
nodeRegistration:
  kubeletExtraArgs:
  - name: v
    value: "2"
  labels:
    tier: test
`
	nc, err := ParseNodeConfigs("user.yaml", []byte(user))
	if err != nil {
		t.Fatal(err)
	}
	b, err := nc.Init(InitFacts{Name: "dev-control-plane", IP: "10.200.0.2", CgroupRoot: "/kfc-x-dev-control-plane", ResolvConf: "/r/resolv.conf", Endpoint: "10.200.0.2:6443", Token: "abcdef.0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"advertiseAddress: 10.200.0.2", "name: dev-control-plane", "token: abcdef.0123456789abcdef",
		"controlPlaneEndpoint: 10.200.0.2:6443", "podSubnet: 10.250.0.0/16", "cgroupRoot: /kfc-x-dev-control-plane",
		"resolvConf: /r/resolv.conf", "maxPods: 50", "imagefs.available: 0%"} {
		if !strings.Contains(s, want) {
			t.Errorf("init config lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "JoinConfiguration") {
		t.Errorf("init config has the JoinConfiguration:\n%s", s)
	}
	j, err := nc.Join(JoinFacts{Name: "dev-worker", CgroupRoot: "/kfc-x-dev-worker"})
	if err != nil {
		t.Fatal(err)
	}
	var jm map[string]any
	if err := yaml.Unmarshal(j, &jm); err != nil {
		t.Fatal(err)
	}
	args, _ := lookup(jm, "nodeRegistration", "kubeletExtraArgs")
	if l, _ := args.([]any); len(l) != 2 {
		t.Errorf("join kubeletExtraArgs = %v, want the user's and cgroup-root", args)
	}
	if !strings.Contains(string(j), "value: /kfc-x-dev-worker") || !strings.Contains(string(j), "tier: test") || !strings.Contains(string(j), "name: dev-worker") {
		t.Errorf("join config:\n%s", j)
	}
	// The user's documents are not changed by rendering.
	if _, set := lookup(nc.docs["KubeletConfiguration"], "cgroupRoot"); set {
		t.Error("Init changed the user's KubeletConfiguration")
	}
	// The rendered init config loads and validates as kubeforge init will.
	c, err := nc.Check(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Networking.PodSubnet != "10.250.0.0/16" || c.DNSServiceIP().String() != "10.96.0.10" {
		t.Errorf("checked config: pod subnet %s, DNS %s", c.Cluster.Networking.PodSubnet, c.DNSServiceIP())
	}
	// No --config at all.
	empty, err := ParseNodeConfigs("(no --config)", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Check(t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func TestNodeConfigsRefused(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"unknown kind", "apiVersion: v1\nkind: Pod\n", []string{"user.yaml", "kind \"Pod\""}},
		{"cgroup root", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: /x\n", []string{"KubeletConfiguration.cgroupRoot", "remove it"}},
		{"endpoint", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: 1.2.3.4:6443\n", []string{"ClusterConfiguration.controlPlaneEndpoint"}},
		{"node name", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nnodeRegistration:\n  name: x\n", []string{"InitConfiguration.nodeRegistration.name"}},
		{"discovery", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  tlsBootstrapToken: x\n", []string{"JoinConfiguration.discovery"}},
		{"twice", "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n", []string{"a second ClusterConfiguration"}},
		{"bad yaml", "kind: [\n", []string{"user.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNodeConfigs("user.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// A field kubeforge init refuses: the error comes before anything is made.
	nc, err := ParseNodeConfigs("user.yaml", []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nnetworking:\n  podSubnet: nonsense\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Check(t.TempDir()); err == nil || !strings.Contains(err.Error(), "podSubnet") {
		t.Errorf("Check of a bad podSubnet: %v", err)
	}
}

func TestCheckCreate(t *testing.T) {
	c := &Clusters{Root: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(c.Root, "taken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.saveState(&State{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    CreateOptions
		want []string
	}{
		{"negative workers", CreateOptions{Name: "a", Workers: -1, ControlPlanes: 1}, []string{"--workers -1"}},
		{"no control plane", CreateOptions{Name: "a", ControlPlanes: 0}, []string{"--control-planes 0"}},
		{"bad name", CreateOptions{Name: "Bad_Name", ControlPlanes: 1}, []string{"cluster name \"Bad_Name\"", "choose another NAME"}},
		{"taken", CreateOptions{Name: "taken", ControlPlanes: 1}, []string{"cluster \"taken\" exists", "kubeforge cluster delete taken"}},
		{"missing file", CreateOptions{Name: "a", ControlPlanes: 1, ConfigFile: "/nonexistent/x.yaml"}, []string{"--config", "/nonexistent/x.yaml"}},
		{"too many", CreateOptions{Name: "a", ControlPlanes: 1, Workers: 300}, []string{"at most 200"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CheckCreate(&tc.o)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	o := CreateOptions{ControlPlanes: 1, Workers: 2}
	if _, err := c.CheckCreate(&o); err != nil || o.Name != DefaultName {
		t.Errorf("defaults: %v, name %q", err, o.Name)
	}
}

func TestStateFile(t *testing.T) {
	c := &Clusters{Root: t.TempDir()}
	if _, err := c.LoadState("none"); err == nil || !strings.Contains(err.Error(), "kubeforge cluster list") {
		t.Errorf("LoadState of a missing cluster: %v", err)
	}
	if _, err := c.LoadState("../etc"); err == nil {
		t.Error("LoadState accepted a path as a name")
	}
	os.MkdirAll(c.dir("dev"), 0o755)
	st := &State{Name: "dev", Created: time.Unix(1700000000, 0).UTC(), ControlPlanes: 1, Workers: 2, Endpoint: "https://10.200.0.2:6443", Ready: true,
		Bed: Record{ID: "abc123", Prefix: "kfc", Bridge: "kfcabc123", Subnet: "10.200.0.0/24", Dir: c.dir("dev"),
			Nodes: []NodeRecord{{Name: "dev-control-plane", IP: "10.200.0.2", NetNS: "kfc-abc123-dev-control-plane", Holder: procID{PID: 1 << 30, Start: 1}}}}}
	if err := c.saveState(st); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.statePath("dev"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	got, err := c.LoadState("dev")
	if err != nil {
		t.Fatal(err)
	}
	if got.Bed.Nodes[0].IP != "10.200.0.2" || got.Endpoint != st.Endpoint || !got.Created.Equal(st.Created) {
		t.Errorf("round trip: %+v", got)
	}
	// list: the node's holder is not alive, so the cluster is stopped.
	l, err := c.List()
	if err != nil || len(l) != 1 || l[0].Status != "stopped" || l[0].Running != 0 || l[0].Nodes != 1 {
		t.Errorf("List = %+v, %v", l, err)
	}
	// A create that did not finish and whose process is gone: failed.
	st.Ready = false
	st.Creator = procID{PID: 1 << 30, Start: 1}
	c.saveState(st)
	if l, _ := c.List(); len(l) != 1 || l[0].Status != "failed" {
		t.Errorf("List of an unfinished create = %+v", l)
	}
	// A create in progress (this process): creating.
	st.Creator = self()
	c.saveState(st)
	if l, _ := c.List(); len(l) != 1 || l[0].Status != "creating" {
		t.Errorf("List of a create in progress = %+v", l)
	}
	// A directory with no state: listed as broken, not skipped.
	os.MkdirAll(c.dir("junk"), 0o755)
	if l, _ := c.List(); len(l) != 2 || l[1].Status != "broken" {
		t.Errorf("List with a broken one = %+v", l)
	}
}

const adminConf = `apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://10.200.0.2:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
`

func TestKubeconfigMerge(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", "")
	path := DefaultKubeconfig()
	if path != filepath.Join(home, ".kube", "config") {
		t.Fatalf("DefaultKubeconfig = %s", path)
	}
	kc, err := RenameKubeconfig([]byte(adminConf), ContextName("dev"))
	if err != nil {
		t.Fatal(err)
	}
	// A missing file (and directory) is made.
	if err := MergeKubeconfig(path, kc, ContextName("dev")); err != nil {
		t.Fatal(err)
	}
	// Another user's entry stays; a second cluster is added beside.
	cfg, _ := clientcmd.LoadFromFile(path)
	if cfg.CurrentContext != "kubeforge-dev" || cfg.Clusters["kubeforge-dev"].Server != "https://10.200.0.2:6443" || string(cfg.AuthInfos["kubeforge-dev"].ClientKeyData) != "KEY" {
		t.Fatalf("merged: %+v", cfg)
	}
	other := strings.ReplaceAll(adminConf, "kubernetes-admin@kubernetes", "mine")
	other = strings.ReplaceAll(other, "name: kubernetes\n", "name: mine-cluster\n")
	other = strings.ReplaceAll(other, "cluster: kubernetes\n", "cluster: mine-cluster\n")
	if err := os.WriteFile(path, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	kc2, _ := RenameKubeconfig([]byte(strings.Replace(adminConf, "10.200.0.2", "10.200.1.2", 1)), ContextName("two"))
	for _, n := range []string{"dev", "two"} {
		k := kc
		if n == "two" {
			k = kc2
		}
		if err := MergeKubeconfig(path, k, ContextName(n)); err != nil {
			t.Fatal(err)
		}
	}
	// Merging again replaces, does not duplicate.
	if err := MergeKubeconfig(path, kc, ContextName("dev")); err != nil {
		t.Fatal(err)
	}
	cfg, _ = clientcmd.LoadFromFile(path)
	if len(cfg.Contexts) != 3 || cfg.Contexts["mine"] == nil || cfg.Clusters["kubeforge-two"].Server != "https://10.200.1.2:6443" || cfg.CurrentContext != "kubeforge-dev" {
		t.Fatalf("after merging two clusters: contexts %v current %s", keys(cfg.Contexts), cfg.CurrentContext)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v", fi.Mode())
	}
	// Remove: only that cluster's entries; the current context is cleared.
	if err := RemoveKubeconfigContext(path, "dev"); err != nil {
		t.Fatal(err)
	}
	cfg, _ = clientcmd.LoadFromFile(path)
	if cfg.Contexts["kubeforge-dev"] != nil || cfg.Clusters["kubeforge-dev"] != nil || cfg.AuthInfos["kubeforge-dev"] != nil || cfg.CurrentContext != "" ||
		cfg.Contexts["kubeforge-two"] == nil || cfg.Contexts["mine"] == nil || cfg.AuthInfos["kubernetes-admin"] == nil {
		t.Fatalf("after remove: contexts %v current %q", keys(cfg.Contexts), cfg.CurrentContext)
	}
	// Twice, and on a missing file: no error.
	if err := RemoveKubeconfigContext(path, "dev"); err != nil {
		t.Error(err)
	}
	if err := RemoveKubeconfigContext(filepath.Join(home, "none"), "dev"); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(home, "none")); err == nil {
		t.Error("remove made a missing kubeconfig")
	}
	// $KUBECONFIG's first file wins.
	t.Setenv("KUBECONFIG", "/a/first"+string(filepath.ListSeparator)+"/b/second")
	if p := DefaultKubeconfig(); p != "/a/first" {
		t.Errorf("DefaultKubeconfig with KUBECONFIG = %s", p)
	}
	// A broken kubeconfig is not overwritten.
	bad := filepath.Join(home, "bad")
	os.WriteFile(bad, []byte("{{{"), 0o600)
	if err := MergeKubeconfig(bad, kc, ContextName("dev")); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("merge into a broken file: %v", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != "{{{" {
		t.Error("a broken kubeconfig was overwritten")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestNewBedRefuses(t *testing.T) {
	for _, tc := range []struct {
		o    BedOptions
		want string
	}{
		{BedOptions{Prefix: "KFC", Dir: "/tmp/x"}, "prefix"},
		{BedOptions{Prefix: "kfc", Dir: "/var/lib/kubeforge/clusters/x"}, "outside"},
		{BedOptions{Prefix: "kfc", Dir: "relative"}, "absolute"},
	} {
		if _, err := NewBed(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewBed(%+v) = %v, want an error about %s", tc.o, err, tc.want)
		}
	}
}

func TestStuckInCountsThreadsByState(t *testing.T) {
	got := stuckIn(os.Getpid())
	if !strings.HasPrefix(got, "threads ") || !regexp.MustCompile(`\d+ [RS]`).MatchString(got) {
		t.Errorf("stuckIn(self) = %q, want the threads counted by state (R or S)", got)
	}
	if got := stuckIn(1 << 30); got != "gone" {
		t.Errorf("stuckIn(no such pid) = %q, want gone", got)
	}
}

func TestKubectlBound(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"get", "pods"}, time.Minute},
		{[]string{"rollout", "status", "deploy/x", "--timeout=2m"}, 150 * time.Second},
		{[]string{"wait", "--timeout", "5m", "pod/x"}, 330 * time.Second},
		{[]string{"wait", "--timeout=10s", "pod/x"}, time.Minute},
		{[]string{"wait", "--timeout=bad"}, time.Minute},
	} {
		if got := kubectlBound(tc.args); got != tc.want {
			t.Errorf("kubectlBound(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestStartedAfter(t *testing.T) {
	if startedAfter(os.Getpid(), time.Now().Add(time.Minute)) {
		t.Error("this process started after a minute from now")
	}
	if !startedAfter(os.Getpid(), time.Now().Add(-24*365*time.Hour)) {
		t.Error("this process did not start after a year ago")
	}
	if startedAfter(1<<30, time.Time{}) {
		t.Error("a missing process started after")
	}
}

// TestSaveRecordKeepsEveryNode saves a bed's record from many nodes at once,
// each with a slow save, as AddNodes does: the last record written must
// hold every node's namespaces (a save of an older copy after a newer one
// once lost a node's holder, and `cluster delete` then left it running).
func TestSaveRecordKeepsEveryNode(t *testing.T) {
	const nodes = 8
	var mu sync.Mutex
	var last Record
	b := &Bed{ID: "t", Subnet: netip.MustParsePrefix("10.0.0.0/24"), save: func(rec Record) error {
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		last = rec
		return nil
	}, logf: t.Logf}
	var ns []*Node
	for i := range nodes {
		n, err := b.reserve(fmt.Sprintf("n%d", i))
		if err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(2)) * time.Millisecond)
			n.netnsID, n.mountNSID = fmt.Sprintf("net:[%d]", i+1), fmt.Sprintf("mnt:[%d]", i+1)
			n.holder = procID{PID: 100 + i, Start: 1}
			b.updateNode(n)
		}()
	}
	wg.Wait()
	if len(last.Nodes) != nodes {
		t.Fatalf("the last record has %d nodes, want %d", len(last.Nodes), nodes)
	}
	for _, nr := range last.Nodes {
		if nr.Holder.PID == 0 || nr.NetNSID == "" || nr.MountNSID == "" {
			t.Errorf("node %s lost its namespaces in the last record: %+v", nr.Name, nr)
		}
	}
}

// TestOpenBedKeepsOnlyPinnedNamespaces opens records whose holder is not
// (or no longer provably) the node's: its pid and namespace numbers must
// not survive, or a delete would kill the processes of whatever namespaces
// have those numbers now. A live holder of this boot keeps them.
func TestOpenBedKeepsOnlyPinnedNamespaces(t *testing.T) {
	nr := NodeRecord{Name: "n", IP: "10.0.0.2", NetNS: "kftb-none-n", CgroupRoot: "/kftb-none-n",
		NetNSID: "net:[4026531840]", MountNSID: "mnt:[4026531841]"}
	for _, tc := range []struct {
		name   string
		holder procID
		boot   string
		keep   bool
	}{
		{"live holder, this boot", self(), bootID(), true},
		{"live holder, record without a boot ID", self(), "", true},
		{"the same pid and start in another boot", self(), "another-boot", false},
		{"dead holder", procID{PID: 1 << 30, Start: 1}, bootID(), false},
		{"a reused pid", procID{PID: os.Getpid(), Start: 1}, bootID(), false},
	} {
		rec := Record{ID: "none", Prefix: "kftb", BootID: tc.boot, Nodes: []NodeRecord{nr}}
		rec.Nodes[0].Holder = tc.holder
		n := OpenBed(rec, nil, nil).Nodes()[0]
		kept := n.HolderPID() != 0 || n.NetNSID() != "" || n.MountNSID() != ""
		if tc.keep && (n.HolderPID() != tc.holder.PID || n.NetNSID() != nr.NetNSID || n.MountNSID() != nr.MountNSID) {
			t.Errorf("%s: lost the node's namespaces: holder %d, %q %q", tc.name, n.HolderPID(), n.NetNSID(), n.MountNSID())
		}
		if !tc.keep && kept {
			t.Errorf("%s: kept holder %d, %q %q", tc.name, n.HolderPID(), n.NetNSID(), n.MountNSID())
		}
		if !tc.keep && len(n.Processes()) > 0 {
			t.Errorf("%s: the node has processes: %v", tc.name, n.Processes())
		}
	}
}

// TestKillChecksTheProcess signals a process only while it is the one
// recorded: a procID whose start time is another's is refused.
func TestKillChecksTheProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	p := procOf(cmd.Process.Pid)
	if err := (procID{PID: p.PID, Start: p.Start + 1}).kill(syscall.SIGKILL); err == nil {
		t.Fatal("kill of a procID with another start time succeeded")
	}
	select {
	case <-exited:
		t.Fatal("the process was killed through a procID that is not its own")
	case <-time.After(100 * time.Millisecond):
	}
	if err := p.kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the process still runs after kill")
	}
	if err := p.kill(syscall.SIGKILL); err == nil {
		t.Error("kill of an ended process succeeded")
	}
}
