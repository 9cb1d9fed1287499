package node

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/config"
)

func TestParseKubeletFlags(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{
			name: "kubeadm's format",
			in:   `KUBELET_KUBEADM_ARGS="--hostname-override=n1 --node-ip=10.201.0.2"` + "\n",
			want: []string{"--hostname-override=n1", "--node-ip=10.201.0.2"},
		},
		{
			name: "kubeadm 1.37 default content",
			in:   `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/kubeforge/containerd/containerd.sock --pod-infra-container-image=kubeforge.local/pause:v0.1.0"`,
			want: []string{"--container-runtime-endpoint=unix:///run/kubeforge/containerd/containerd.sock", "--pod-infra-container-image=kubeforge.local/pause:v0.1.0"},
		},
		{
			name: "empty value",
			in:   `KUBELET_KUBEADM_ARGS=""`,
			want: nil,
		},
		{
			name: "empty file",
			in:   "",
			want: nil,
		},
		{
			name: "comments, blank lines, export, CRLF, unquoted",
			in:   "# generated\r\n\r\n; also a comment\r\nexport KUBELET_KUBEADM_ARGS=--v=2   \r\n",
			want: []string{"--v=2"},
		},
		{
			name: "extra args follow kubeadm's, other variables ignored",
			in:   "KUBELET_EXTRA_ARGS='--max-pods=50'\nOTHER=\"--nope\"\nKUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.1\"\n",
			want: []string{"--node-ip=10.0.0.1", "--max-pods=50"},
		},
		{
			name: "later assignment wins",
			in:   "KUBELET_KUBEADM_ARGS=\"--v=1\"\nKUBELET_KUBEADM_ARGS=\"--v=4\"\n",
			want: []string{"--v=4"},
		},
		{
			name: "quotes inside the value group a word",
			in:   `KUBELET_KUBEADM_ARGS="--node-labels='a=b c' --register-with-taints=\"x=y:NoSchedule\""`,
			want: []string{"--node-labels=a=b c", "--register-with-taints=x=y:NoSchedule"},
		},
		{
			name: "Go %q escapes as written by the manifests package",
			in:   `KUBELET_KUBEADM_ARGS="--a=b\\c --d=\$e"`,
			want: []string{`--a=b\c`, "--d=$e"},
		},
		{
			name: "continued line",
			in:   "KUBELET_KUBEADM_ARGS=\"--a=1 \\\n--b=2\"\n",
			want: []string{"--a=1", "--b=2"},
		},
		{
			name: "tabs and multiple blanks",
			in:   "KUBELET_KUBEADM_ARGS=\"  --a=1\t\t--b=2  \"",
			want: []string{"--a=1", "--b=2"},
		},
		{
			name:    "unterminated quote",
			in:      `KUBELET_KUBEADM_ARGS="--a=1`,
			wantErr: "unterminated",
		},
		{
			name:    "not an assignment",
			in:      "--node-ip=1.2.3.4\n",
			wantErr: "line 1",
		},
		{
			name:    "bad name",
			in:      "\n1BAD=x\n",
			wantErr: "line 2: invalid variable name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKubeletFlags(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"a b  c", []string{"a", "b", "c"}},
		{`a\ b c`, []string{"a b", "c"}},
		{`"" x`, []string{"", "x"}},
		{`a\c "x\"y\z"`, []string{`a\c`, `x"y\z`}},
		{`--x="1 2"'3 4'`, []string{"--x=1 23 4"}},
	}
	for _, tt := range tests {
		got, err := SplitWords(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitWords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := SplitWords(`"open`); err == nil {
		t.Error("unterminated quote: want an error")
	}
}

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
