package kubeletflags

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// envQuote renders v as a double-quoted EnvironmentFile value.
func envQuote(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if strings.IndexByte(envSpecial, v[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzParse feeds arbitrary kubeadm-flags.env files (and
// /etc/default/kubelet-style KUBELET_EXTRA_ARGS) to Parse. Errors name
// the problem; a file in kubeadm's plain format gives its blank-separated
// words; whatever parses, written back (the variables double-quoted; the
// arguments by renderArgs, Render's writer), parses to the same variables
// and the same arguments.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`KUBELET_KUBEADM_ARGS="--hostname-override=n1 --node-ip=10.201.0.2"` + "\n",
		`KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/kubeforge/containerd/containerd.sock --pod-infra-container-image=kubeforge.local/pause:v0.1.0"`,
		"# generated\r\n\r\n; also a comment\r\n KUBELET_KUBEADM_ARGS = --v=2   \r\n",
		"KUBELET_EXTRA_ARGS='--max-pods=50'\nOTHER=\"--nope\"\nKUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.1\"\n",
		`KUBELET_KUBEADM_ARGS="--node-labels='a=b c' --register-with-taints=\"x=y:NoSchedule\""`,
		`KUBELET_KUBEADM_ARGS="--a=b\\c --d=\$e --f=\x41"`,
		"KUBELET_KUBEADM_ARGS=\"--a=1 \\\n--b=2\"\n",
		"KUBELET_KUBEADM_ARGS=a\\ b\\\nc 'd e'\"f\" \n",
		`KUBELET_KUBEADM_ARGS="--a=1" "--b=2" x'y'`,
		`KUBELET_KUBEADM_ARGS="--a=1`,
		`KUBELET_KUBEADM_ARGS="--a=1\\"`,
		"export KUBELET_KUBEADM_ARGS=--v=2\n",
		"--node-ip=1.2.3.4\n",
		"\n1BAD=x\n",
		"K=\r\r\n",
		"K=\"\xff\"",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		args, err := Parse([]byte(data))
		env, envErr := parseEnv([]byte(data))
		if envErr != nil && err == nil {
			t.Fatalf("parseEnv fails (%v) but Parse does not", envErr)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if words, ok := PlainArgs(data); ok && !slices.Equal(args, words) {
			t.Fatalf("%q: parsed %q, kubeadm's reading %q", data, args, words)
		}
		// The variables, written back, parse to the same.
		var file strings.Builder
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range env {
				if !yield(k) {
					return
				}
			}
		}) {
			fmt.Fprintf(&file, "%s=%s\n", k, envQuote(env[k]))
		}
		env2, err := parseEnv([]byte(file.String()))
		if err != nil {
			t.Fatalf("rendered variables do not parse: %v\n%s", err, file.String())
		}
		if len(env) != len(env2) || (len(env) > 0 && !reflect.DeepEqual(env, env2)) {
			t.Fatalf("variables changed: %q -> %q", env, env2)
		}
		// The arguments, written back, parse to the same.
		rendered := renderArgs(args)
		args2, err := Parse(rendered)
		if err != nil {
			t.Fatalf("rendered arguments do not parse: %v\n%s", err, rendered)
		}
		if !slices.Equal(args, args2) {
			t.Fatalf("arguments changed: %q -> %q\n%s", args, args2, rendered)
		}
	})
}

// FuzzRoundTrip renders two flags and parses them back: every flag of
// UTF-8 text comes back exactly; Last finds the second flag's value; and
// a file of plain values is byte-identical to what kubeadm writes (fmt's
// %q of the joined flags).
func FuzzRoundTrip(f *testing.F) {
	f.Add("hostname-override", "n1", "node-ip", "10.201.0.2")
	f.Add("hostname-override", "n1", "hostname-override", "n2")
	f.Add("node-labels", "a=b c", "x", `a"b`)
	f.Add("x", `C:\dir\`, "y", "\t")
	f.Add("x", "$HOME `id`", "y", "\\x41")
	f.Add("x", "'", "y", "line\nbreak\r")
	f.Add("v", "", "cgroup_root", "/kubeforge-n1")
	f.Add("a b", "#c", "-d", "=e")
	f.Fuzz(func(t *testing.T, name1, value1, name2, value2 string) {
		flags := []Flag{{name1, value1}, {name2, value2}}
		file := Render(flags)
		want := []string{flags[0].Arg(), flags[1].Arg()}
		args, err := Parse(file)
		if !utf8.ValidString(want[0]) || !utf8.ValidString(want[1]) {
			if err == nil {
				t.Fatalf("%q: text that is not UTF-8 parsed (%q); systemd ignores it", file, args)
			}
			return
		}
		if err != nil || !slices.Equal(args, want) {
			t.Fatalf("rendered %s, parsed %q (%v), want %q", file, args, err, want)
		}
		if CheckName(name2) == nil {
			if v, ok := Last(args, name2); !ok || v != value2 {
				t.Fatalf("%q: Last(%s) = %q, %v; want %q", args, name2, v, ok, value2)
			}
		}
		plain := true
		for _, f := range flags {
			if CheckName(f.Name) != nil || CheckValue(f.Value) != nil ||
				strings.ContainsFunc(f.Value, func(r rune) bool {
					return !strconv.IsPrint(r) || strings.ContainsRune(wordSpecial+envSpecial, r)
				}) {
				plain = false
			}
		}
		if kubeadm := fmt.Sprintf("%s=%q\n", KubeadmArgsVar, strings.Join(want, " ")); plain && string(file) != kubeadm {
			t.Fatalf("plain flags rendered %q, kubeadm writes %q", file, kubeadm)
		}
	})
}
