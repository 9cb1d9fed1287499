package phases

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/kubeletflags"
)

// FuzzKubeletFlag feeds arbitrary kubeadm-flags.env files to reset's
// kubeletFlag (which reads --hostname-override and --cgroup-root from it)
// and RegisteredNodeName. Both agree with the kubelet the node service
// starts from the same file (node.KubeletArgs): its last occurrence of the
// flag. On files in kubeadm's own format, that is the last --name= among
// the blank-separated words, as anyone reading the file would see it.
func FuzzKubeletFlag(f *testing.F) {
	for _, s := range []string{
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=n1 --node-ip=10.201.0.2 --cgroup-root=/kubeforge-n1\"\n",
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=n1  --hostname-override=n2\"",
		"KUBELET_KUBEADM_ARGS=--hostname-override=n1\n",
		"KUBELET_KUBEADM_ARGS='--hostname-override=n1'\n",
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=\\x6e1\"\n",
		"# comment\nKUBELET_KUBEADM_ARGS=\"--hostname-override=n1\"\n",
		"KUBELET_EXTRA_ARGS=\"--cgroup-root=/x\"\nKUBELET_KUBEADM_ARGS=\"--hostname-override=n1\"\n",
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=n1\"\nKUBELET_EXTRA_ARGS=\"--hostname_override n2\"\n",
		"KUBELET_KUBEADM_ARGS=\"--node-labels='a=b c' --hostname-override=n1\"\n",
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=a\\\\ b\"\n",
		"KUBELET_KUBEADM_ARGS=\"",
		"",
	} {
		f.Add(s, "hostname-override")
	}
	f.Add("KUBELET_KUBEADM_ARGS=\"--hostname-override=n1 --cgroup-root=/a\"\n", "cgroup-root")
	p := config.DefaultPaths().WithRoot(f.TempDir())
	file := p.Host(p.KubeletFlagsFile())
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data, name string) {
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		got := kubeletFlag(p, name)
		// What the node service starts the kubelet with: the same value.
		want := ""
		if args, err := node.KubeletArgs(p); err == nil {
			want, _ = kubeletflags.Last(args[2:], name) // after --config, --kubeconfig
		}
		if got != want {
			t.Fatalf("%q: reset reads --%s=%q, the kubelet gets %q", data, name, got, want)
		}
		// A file in kubeadm's format (every word --name=value), read by
		// eye: the last --name=.
		if words, ok := kubeletflags.PlainArgs(data); ok && kubeletflags.CheckName(name) == nil &&
			!slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(w, "=") }) {
			simple := ""
			for _, w := range words {
				if k, v, _ := strings.Cut(w, "="); strings.ReplaceAll(k, "_", "-") == "--"+strings.ReplaceAll(name, "_", "-") {
					simple = v
				}
			}
			if got != simple {
				t.Fatalf("%q: reset reads --%s=%q, the file says %q", data, name, got, simple)
			}
		}
		// Without a record or kubelet.conf, the node's name is the flag's.
		if name == "hostname-override" {
			if n := RegisteredNodeName(p); n != got {
				t.Fatalf("%q: RegisteredNodeName %q, kubeletFlag %q", data, n, got)
			}
		}
	})
}
