package phases

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
)

// kubeadmFormat reports whether data is a flags file as kubeadm and
// kubeforge write it: one KUBELET_KUBEADM_ARGS="…" line of blank-separated
// flags, valid UTF-8 with no quote, backslash, control character or other
// space inside.
func kubeadmFormat(data string) bool {
	inner, ok := strings.CutPrefix(strings.TrimSuffix(data, "\n"), `KUBELET_KUBEADM_ARGS="`)
	if !ok {
		return false
	}
	inner, ok = strings.CutSuffix(inner, `"`)
	if !ok || !utf8.ValidString(inner) {
		return false
	}
	for _, r := range inner {
		if r != ' ' && (!strconv.IsPrint(r) || unicode.IsSpace(r) || strings.ContainsRune(`"'\`, r)) {
			return false
		}
	}
	return true
}

// FuzzKubeletFlag feeds arbitrary kubeadm-flags.env files to reset's
// kubeletFlag (which reads --hostname-override and --cgroup-root from it).
// On files in kubeadm's own format it agrees with the node service's
// parser (components/node.ParseKubeletFlags), which started the kubelet.
func FuzzKubeletFlag(f *testing.F) {
	for _, s := range []string{
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=n1 --node-ip=10.201.0.2 --cgroup-root=/kubeforge-n1\"\n",
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=n1  --hostname-override=n2\"",
		"KUBELET_KUBEADM_ARGS=--hostname-override=n1\n",
		"KUBELET_KUBEADM_ARGS='--hostname-override=n1'\n",
		"KUBELET_KUBEADM_ARGS=\"--hostname-override=\\x6e1\"\n",
		"# comment\nKUBELET_KUBEADM_ARGS=\"--hostname-override=n1\"\n",
		"KUBELET_EXTRA_ARGS=\"--cgroup-root=/x\"\nKUBELET_KUBEADM_ARGS=\"--hostname-override=n1\"\n",
		"KUBELET_KUBEADM_ARGS=\"--node-labels='a=b c' --hostname-override=n1\"\n",
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
		if strings.ContainsFunc(got, unicode.IsSpace) {
			t.Fatalf("value %q has a blank", got)
		}
		if !kubeadmFormat(data) {
			return
		}
		args, err := node.ParseKubeletFlags(data)
		if err != nil {
			t.Fatalf("the node service cannot parse %q: %v", data, err)
		}
		want := ""
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				want = v
				break
			}
		}
		if got != want {
			t.Fatalf("%q: reset reads --%s=%q, the node service %q", data, name, got, want)
		}
	})
}
