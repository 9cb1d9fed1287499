package node

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/config"
)

func testPaths(t *testing.T) config.Paths {
	t.Helper()
	dir := t.TempDir()
	p := config.DefaultPaths()
	p.KubernetesDir = filepath.Join(dir, "etc")
	p.KubeletDir = filepath.Join(dir, "kubelet")
	p.StateDir = filepath.Join(dir, "state")
	p.RunDir = filepath.Join(dir, "run")
	p.LogDir = filepath.Join(dir, "log")
	return p
}

func TestKubeletArgs(t *testing.T) {
	p := testPaths(t)
	base := []string{
		"--config=" + filepath.Join(p.KubeletDir, "config.yaml"),
		"--kubeconfig=" + filepath.Join(p.KubernetesDir, "kubelet.conf"),
	}
	got, err := KubeletArgs(p)
	if err != nil || !reflect.DeepEqual(got, base) {
		t.Fatalf("no flags file: got %q, %v; want %q", got, err, base)
	}

	os.MkdirAll(p.KubeletDir, 0o700)
	os.WriteFile(p.KubeletFlagsFile(), []byte(`KUBELET_KUBEADM_ARGS="--node-ip=10.201.0.2 --hostname-override=n1"`+"\n"), 0o600)
	os.MkdirAll(p.KubernetesDir, 0o700)
	os.WriteFile(filepath.Join(p.KubernetesDir, "bootstrap-kubelet.conf"), []byte("x"), 0o600)
	got, err = KubeletArgs(p)
	want := append(append([]string{}, base...),
		"--bootstrap-kubeconfig="+filepath.Join(p.KubernetesDir, "bootstrap-kubelet.conf"),
		"--node-ip=10.201.0.2", "--hostname-override=n1")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}

	os.WriteFile(p.KubeletFlagsFile(), []byte(`KUBELET_KUBEADM_ARGS="--broken`), 0o600)
	if _, err := KubeletArgs(p); err == nil || !strings.Contains(err.Error(), p.KubeletFlagsFile()) {
		t.Fatalf("broken flags file: error %v should name the file", err)
	}
}

func TestPathArgsRoundTrip(t *testing.T) {
	p := testPaths(t)
	args := PathArgs(p)
	q := config.DefaultPaths()
	flags := PathFlags(&q)
	if len(flags) != len(args) {
		t.Fatalf("%d flags, %d args", len(flags), len(args))
	}
	for _, a := range args {
		name, val, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		found := false
		for _, f := range flags {
			if f.Name == name {
				*f.Field = val
				found = true
			}
		}
		if !found {
			t.Fatalf("PathArgs emits --%s, which PathFlags lacks", name)
		}
	}
	if q != p {
		t.Fatalf("round trip lost something:\n got %+v\nwant %+v", q, p)
	}
}

func TestUnit(t *testing.T) {
	u := Unit("/usr/local/bin/kubeforge", []string{"node", "run", "--run-dir=/run/kube forge", "--log-dir=/var/log/100%"})
	for _, want := range []string{
		`ExecStart=/usr/local/bin/kubeforge node run "--run-dir=/run/kube forge" "--log-dir=/var/log/100%%"`,
		"KillMode=process", "Delegate=yes", "Restart=always", "WantedBy=multi-user.target",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
}

func TestPaths(t *testing.T) {
	tests := []struct {
		env  []string
		want []string
	}{
		{[]string{"A=1", "PATH=/usr/bin:/bin"}, []string{"A=1", "PATH=/shim:/usr/bin:/bin"}},
		{[]string{"PATH="}, []string{"PATH=/shim"}},
		{[]string{"A=1"}, []string{"A=1", "PATH=/shim"}},
	}
	for _, tt := range tests {
		if got := PrependPath(tt.env, "/shim"); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("PrependPath(%q) = %q, want %q", tt.env, got, tt.want)
		}
	}
	if got := WithDefaultPath([]string{"A=1"}); got[1] != "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("WithDefaultPath without PATH: %q", got)
	}
	if got := WithDefaultPath([]string{"PATH=/x"}); got[0] != "PATH=/x" {
		t.Errorf("WithDefaultPath keeps a set PATH: %q", got)
	}
}

// The node's name comes from what init or join recorded; a node set up
// before they recorded it falls back to the flags file's last
// --hostname-override, the one the kubelet takes.
func TestNodeName(t *testing.T) {
	p := testPaths(t)
	if got := NodeName(p); got != "" {
		t.Fatalf("no files: %q", got)
	}
	os.MkdirAll(p.KubeletDir, 0o700)
	os.WriteFile(p.KubeletFlagsFile(), []byte(`KUBELET_KUBEADM_ARGS="--hostname-override=n1 --node-ip=10.0.0.1"`+"\n"+
		`KUBELET_EXTRA_ARGS="--hostname-override=n2"`+"\n"), 0o600)
	if got := NodeName(p); got != "n2" {
		t.Fatalf("from the flags file: %q, want the last occurrence n2", got)
	}
	os.MkdirAll(p.StateDir, 0o700)
	if err := os.WriteFile(InfoFile(p), MarshalInfo(Info{NodeName: "worker-7"}), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := NodeName(p); got != "worker-7" {
		t.Fatalf("recorded: %q", got)
	}
	if i, err := ReadInfo(p); err != nil || i.NodeName != "worker-7" {
		t.Fatalf("ReadInfo: %+v, %v", i, err)
	}
	os.WriteFile(InfoFile(p), []byte("{"), 0o600)
	if _, err := ReadInfo(p); err == nil || !strings.Contains(err.Error(), InfoFile(p)) {
		t.Fatalf("broken record: error %v should name the file", err)
	}
	if got := NodeName(p); got != "n2" {
		t.Fatalf("broken record: %q, want the flags file's n2", got)
	}
}
