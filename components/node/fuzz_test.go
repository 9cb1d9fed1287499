package node

import (
	"os"
	"slices"
	"testing"
	"unicode/utf8"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/kubeletflags"
	"github.com/kubeforge/kubeforge/manifests"
)

// FuzzKubeletFlagsRoundTrip renders kubeadm-flags.env as init and join do
// (manifests.KubeletFlags: node name, node IP, a kubeletExtraArg) and
// reads it back as the node service does when it starts the kubelet
// (KubeletArgs) and when it looks up the node's name without a record
// (NodeName): every flag of UTF-8 text comes back exactly, a
// kubeletExtraArg replaces kubeforge's flag of the same name as in
// kubeadm, and the name found is the one the kubelet takes. (The file
// format itself is fuzzed in internal/kubeletflags.)
func FuzzKubeletFlagsRoundTrip(f *testing.F) {
	f.Add("n1", "10.201.0.2", "cgroup-root", "/kubeforge-n1")
	f.Add("n1", "fd00::2", "node-labels", "a=b,c=d")
	f.Add("n1", "10.201.0.2", "register-with-taints", "x=y:NoSchedule")
	f.Add("n1", "10.201.0.2", "v", "")
	f.Add("n1", "10.201.0.2", "node-labels", "a=b c")
	f.Add("n1", "10.201.0.2", "x", `a"b`)
	f.Add("n1", "10.201.0.2", "x", `C:\dir`)
	f.Add("n1", "10.201.0.2", "x", "\t")
	f.Add("n1", "10.201.0.2", "hostname-override", "other")
	f.Add("n1", "10.201.0.2", "hostname_override", "n1")
	f.Add("n 1", "10.201.0.2", "node-ip", "10.0.0.9")
	p := config.DefaultPaths().WithRoot(f.TempDir())
	file := p.Host(p.KubeletFlagsFile())
	if err := os.MkdirAll(p.Host(p.KubeletDir), 0o700); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, nodeName, nodeIP, name, value string) {
		c := config.New()
		c.ThisNode.Name = nodeName
		c.ThisNode.KubeletExtraArgs = []v1beta4.Arg{{Name: name, Value: value}}
		data := manifests.KubeletFlags(c, nodeIP)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, base := range []kubeletflags.Flag{{Name: "hostname-override", Value: nodeName}, {Name: "node-ip", Value: nodeIP}} {
			if kubeletflags.Normalize(base.Name) != kubeletflags.Normalize(name) {
				want = append(want, base.Arg())
			}
		}
		want = append(want, "--"+name+"="+value)
		args, err := FlagsFileArgs(p)
		if slices.ContainsFunc(want, func(a string) bool { return !utf8.ValidString(a) }) {
			if err == nil {
				t.Fatalf("rendered %q: text that is not UTF-8 parsed", data)
			}
			return
		}
		if err != nil || !slices.Equal(args, want) {
			t.Fatalf("rendered %s, parsed %q (%v), want %q", data, args, err, want)
		}
		full, err := KubeletArgs(p)
		if err != nil || !slices.Equal(full[len(full)-len(want):], want) {
			t.Fatalf("KubeletArgs: %q (%v), want it to end with %q", full, err, want)
		}
		if kubeletflags.CheckName(name) == nil {
			wantName, _ := kubeletflags.Last(want, "hostname-override")
			if got := NodeName(p); got != wantName {
				t.Fatalf("rendered %s: node name %q, the kubelet registers %q", data, got, wantName)
			}
		}
	})
}
