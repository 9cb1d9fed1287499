package node

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// envQuote renders v as a double-quoted EnvironmentFile value.
func envQuote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if strings.IndexByte("\"\\$`", v[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// wordQuote renders w as one word for SplitWords.
func wordQuote(w string) string {
	if !strings.Contains(w, "'") {
		return "'" + w + "'"
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w) + `"`
}

func flagsSeeds(f *testing.F) {
	for _, s := range []string{
		`KUBELET_KUBEADM_ARGS="--hostname-override=n1 --node-ip=10.201.0.2"` + "\n",
		`KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/kubeforge/containerd/containerd.sock --pod-infra-container-image=kubeforge.local/pause:v0.1.0"`,
		"# generated\r\n\r\n; also a comment\r\nexport KUBELET_KUBEADM_ARGS=--v=2   \r\n",
		"KUBELET_EXTRA_ARGS='--max-pods=50'\nOTHER=\"--nope\"\nKUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.1\"\n",
		`KUBELET_KUBEADM_ARGS="--node-labels='a=b c' --register-with-taints=\"x=y:NoSchedule\""`,
		`KUBELET_KUBEADM_ARGS="--a=b\\c --d=\$e"`,
		"KUBELET_KUBEADM_ARGS=\"--a=1 \\\n--b=2\"\n",
		"KUBELET_KUBEADM_ARGS=a\\ b\\\nc 'd e'\"f\" \n",
		`KUBELET_KUBEADM_ARGS="--a=1`,
		"--node-ip=1.2.3.4\n",
		"\n1BAD=x\n",
		"K=\r\r\n",
		"",
	} {
		f.Add(s)
	}
}

// FuzzParseKubeletFlags feeds arbitrary kubeadm-flags.env files (and
// /etc/default/kubelet-style KUBELET_EXTRA_ARGS) to the parser the node
// service starts the kubelet with. Errors name the problem; whatever it
// parses, written back (double-quoted values, quoted words), parses to
// the same variables and the same kubelet flags.
func FuzzParseKubeletFlags(f *testing.F) {
	flagsSeeds(f)
	f.Fuzz(func(t *testing.T, data string) {
		args, err := ParseKubeletFlags(data)
		env, envErr := ParseEnvFile(data)
		if (envErr != nil) && err == nil {
			t.Fatalf("ParseEnvFile fails (%v) but ParseKubeletFlags does not", envErr)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// The variables, written back, parse to the same.
		var file strings.Builder
		var keys []string
		for k := range env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if strings.Contains(env[k], "\r\n") {
				return // not representable: the parser reads CRLF as LF everywhere
			}
			file.WriteString(k + "=" + envQuote(env[k]) + "\n")
		}
		env2, err := ParseEnvFile(file.String())
		if err != nil {
			t.Fatalf("rendered file does not parse: %v\n%s", err, file.String())
		}
		if len(env) != len(env2) || (len(env) > 0 && !reflect.DeepEqual(env, env2)) {
			t.Fatalf("variables changed: %q -> %q", env, env2)
		}
		// The kubelet flags, written back as quoted words, parse to the same.
		var quoted []string
		for _, a := range args {
			quoted = append(quoted, wordQuote(a))
		}
		flags := "KUBELET_KUBEADM_ARGS=" + envQuote(strings.Join(quoted, " ")) + "\n"
		args2, err := ParseKubeletFlags(flags)
		if err != nil {
			t.Fatalf("rendered flags do not parse: %v\n%s", err, flags)
		}
		if len(args) != len(args2) || (len(args) > 0 && !reflect.DeepEqual(args, args2)) {
			t.Fatalf("flags changed: %q -> %q\n%s", args, args2, flags)
		}
	})
}

// plain reports whether s survives manifests.KubeletFlags: printable, valid
// UTF-8 with no blank, quote or backslash (the renderer joins the flags with
// blanks and quotes the line with Go's %q, whose \x, \u and \t escapes an
// EnvironmentFile does not have).
func plain(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !strconv.IsPrint(r) || r == ' ' || strings.ContainsRune(`"'\`, r) {
			return false
		}
	}
	return true
}

// FuzzKubeletFlagsRoundTrip renders kubeadm-flags.env with
// manifests.KubeletFlags (node name, node IP, kubeletExtraArgs from a
// config file) and parses it back as the node service does: the flags come
// back exactly, whenever the renderer can represent them (see plain).
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
	f.Fuzz(func(t *testing.T, nodeName, nodeIP, name, value string) {
		c := config.New()
		c.Init.NodeRegistration.Name = nodeName
		c.Init.NodeRegistration.KubeletExtraArgs = []v1beta4.Arg{{Name: name, Value: value}}
		file := manifests.KubeletFlags(c, nodeIP)
		args, err := ParseKubeletFlags(string(file))
		want := []string{"--hostname-override=" + nodeName, "--node-ip=" + nodeIP, "--" + name + "=" + value}
		if plain(nodeName) && plain(nodeIP) && plain(name) && plain(value) {
			if err != nil || !reflect.DeepEqual(args, want) {
				t.Fatalf("rendered %q, parsed %q (%v), want %q", file, args, err, want)
			}
			return
		}
		// A value the renderer cannot represent must not change the node's
		// own flags, which come first.
		if err == nil && plain(nodeName) && plain(nodeIP) && (len(args) < 2 || !reflect.DeepEqual(args[:2], want[:2])) {
			t.Fatalf("rendered %q, parsed %q: the node's name and address changed", file, args)
		}
	})
}
