package kubeletflags

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
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
			name: "kubeadm 1.37 default content, no final line break",
			in:   `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/kubeforge/containerd/containerd.sock --pod-infra-container-image=kubeforge.local/pause:v0.1.0"`,
			want: []string{"--container-runtime-endpoint=unix:///run/kubeforge/containerd/containerd.sock", "--pod-infra-container-image=kubeforge.local/pause:v0.1.0"},
		},
		{name: "empty value", in: `KUBELET_KUBEADM_ARGS=""`, want: nil},
		{name: "empty file", in: "", want: nil},
		{name: "no value at all", in: "KUBELET_KUBEADM_ARGS=\n", want: nil},
		{
			name: "comments, blank lines, CRLF, blanks around key and value",
			in:   "# generated\r\n\r\n; also a comment\r\n  KUBELET_KUBEADM_ARGS =  --v=2   \r\n",
			want: []string{"--v=2"},
		},
		{
			name: "a # inside a value is no comment",
			in:   "KUBELET_KUBEADM_ARGS=--a=1#2 ;x\n",
			want: []string{"--a=1#2", ";x"},
		},
		{
			name: "KUBELET_EXTRA_ARGS follows kubeadm's, other variables ignored",
			in:   "KUBELET_EXTRA_ARGS='--max-pods=50'\nOTHER=\"--nope\"\nKUBELET_KUBEADM_ARGS=\"--node-ip=10.0.0.1\"\n",
			want: []string{"--node-ip=10.0.0.1", "--max-pods=50"},
		},
		{
			name: "a later assignment wins",
			in:   "KUBELET_KUBEADM_ARGS=\"--v=1\"\nKUBELET_KUBEADM_ARGS=\"--v=4\"\n",
			want: []string{"--v=4"},
		},
		{
			name: "duplicate flags are all passed on (the kubelet takes the last)",
			in:   `KUBELET_KUBEADM_ARGS="--hostname-override=n1 --hostname-override=n2"`,
			want: []string{"--hostname-override=n1", "--hostname-override=n2"},
		},
		{
			name: "quotes inside the value group a word, as systemd splits $VAR",
			in:   `KUBELET_KUBEADM_ARGS="--node-labels='a=b c' --register-with-taints=\"x=y:NoSchedule\""`,
			want: []string{"--node-labels=a=b c", "--register-with-taints=x=y:NoSchedule"},
		},
		{
			name: "escapes: \\\\ and \\$ in the file, then a backslash escaping a blank in the word",
			in:   `KUBELET_KUBEADM_ARGS="--a=b\\c --d=\$e --f=g\\ h"`,
			want: []string{`--a=bc`, "--d=$e", "--f=g h"},
		},
		{
			name: "Go escapes are no escapes: \\x41 reaches the kubelet as x41",
			in:   `KUBELET_KUBEADM_ARGS="--hostname-override=\x6e1 --t=\t"`,
			want: []string{"--hostname-override=x6e1", "--t=t"},
		},
		{
			name: "single quotes in the file are literal",
			in:   `KUBELET_KUBEADM_ARGS='--a=\"b\" --c=$d'`,
			want: []string{`--a="b"`, "--c=$d"},
		},
		{
			name: "quotes mid-value are literal in the file, then unquoted in the word",
			in:   `KUBELET_KUBEADM_ARGS=--a="b c"` + "\n",
			want: []string{"--a=b c"},
		},
		{
			name: "quoted and unquoted parts join, blanks between them dropped",
			in:   `KUBELET_KUBEADM_ARGS="--a=1" "--b=2"` + "\n",
			want: []string{"--a=1--b=2"},
		},
		{
			name: "continued lines",
			in:   "KUBELET_KUBEADM_ARGS=\"--a=1 \\\n--b=2\"\nKUBELET_EXTRA_ARGS=--c=3 \\\n--d=4\n",
			want: []string{"--a=1", "--b=2", "--c=3", "--d=4"},
		},
		{
			name: "tabs, line breaks and runs of blanks separate",
			in:   "KUBELET_KUBEADM_ARGS=\"  --a=1\t\t--b=2 \n --c=3 \"",
			want: []string{"--a=1", "--b=2", "--c=3"},
		},
		{
			name: "an empty quoted word is an argument",
			in:   `KUBELET_KUBEADM_ARGS="--a ''"`,
			want: []string{"--a", ""},
		},
		{name: "unterminated quote", in: `KUBELET_KUBEADM_ARGS="--a=1`, wantErr: "line 1: KUBELET_KUBEADM_ARGS: unterminated quote"},
		{name: "unterminated quote in the value", in: `KUBELET_KUBEADM_ARGS="--a='1"`, wantErr: "KUBELET_KUBEADM_ARGS: unterminated ' quote"},
		{name: "trailing lone backslash in the value", in: `KUBELET_EXTRA_ARGS="--a=1\\"`, wantErr: "KUBELET_EXTRA_ARGS: \"--a=1\\\\\" ends in a lone backslash"},
		{name: "a flag where a variable belongs", in: "--node-ip=1.2.3.4\n", wantErr: `line 1: invalid variable name "--node-ip"`},
		{name: "not an assignment", in: "# x\n--node-ip 1.2.3.4\n", wantErr: `line 2: "--node-ip 1.2.3.4" is not KEY=VALUE`},
		{name: "not an assignment at the end", in: "A=1\nB", wantErr: "line 2: \"B\" is not KEY=VALUE"},
		{name: "bad name", in: "\n1BAD=x\n", wantErr: "line 2: invalid variable name \"1BAD\""},
		{name: "export is no shell here", in: "export KUBELET_KUBEADM_ARGS=--v=2\n", wantErr: `invalid variable name "export KUBELET_KUBEADM_ARGS"`},
		{name: "not UTF-8", in: "KUBELET_KUBEADM_ARGS=\"--a=\xff\"\n", wantErr: "line 1: KUBELET_KUBEADM_ARGS: the value is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
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

func TestRenderKubeadmBytes(t *testing.T) {
	// Byte for byte what kubeadm writes (fmt's %q of the joined flags) for
	// values without special characters: golden files and kubeadm's own
	// reader depend on it.
	got := string(Render([]Flag{{"hostname-override", "n1"}, {"node-ip", "10.201.0.2"}, {"node-labels", "a=b,c.d/e=f"}}))
	want := `KUBELET_KUBEADM_ARGS="--hostname-override=n1 --node-ip=10.201.0.2 --node-labels=a=b,c.d/e=f"` + "\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := string(Render(nil)); got != "KUBELET_KUBEADM_ARGS=\"\"\n" {
		t.Fatalf("no flags: %q", got)
	}
}

func TestRenderEscapes(t *testing.T) {
	for value, want := range map[string]string{
		"a b":   `--x=a\\ b`,
		`a"b`:   `--x=a\\\"b`,
		`a'b`:   `--x=a\\'b`,
		`C:\d`:  `--x=C:\\\\d`,
		"$HOME": `--x=\$HOME`,
		"`id`":  "--x=\\`id\\`",
		"é☃":    "--x=é☃",
		"":      "--x=",
	} {
		got := string(Render([]Flag{{"x", value}}))
		if got != `KUBELET_KUBEADM_ARGS="`+want+"\"\n" {
			t.Errorf("%q: rendered %s, want the inner text %s", value, got, want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	flags := []Flag{
		{"hostname-override", "n1"},
		{"node-labels", "a=b c"},
		{"x", `a"b`},
		{"x", `a'b`},
		{"x", `C:\dir\`},
		{"x", "$HOME `id` ${X}"},
		{"x", "\t"},
		{"x", "line\nbreak\r\n"},
		{"x", `\x41 \t \"`},
		{"x", "# not a comment; nor this"},
		{"x", ""},
		{"x", " "},
		{"x", "é ☃"},
		{"x", "\x00\x01\x7f"},
		{"cgroup_root", "/a b"},
	}
	args, err := Parse(Render(flags))
	if err != nil {
		t.Fatalf("%v\n%s", err, Render(flags))
	}
	var want []string
	for _, f := range flags {
		want = append(want, f.Arg())
	}
	if !reflect.DeepEqual(args, want) {
		t.Fatalf("got  %q\nwant %q\nfile %s", args, want, Render(flags))
	}
}

func TestLast(t *testing.T) {
	args := []string{"--hostname-override=n1", "--node-ip=10.0.0.1", "--hostname_override=n2", "--cgroup-root", "/a", "--v=2", "--hostname-override"}
	for _, tt := range []struct {
		name, want string
		ok         bool
	}{
		{"hostname-override", "n2", true}, // the trailing one has no value
		{"cgroup-root", "/a", true},
		{"cgroup_root", "/a", true},
		{"node-ip", "10.0.0.1", true},
		{"v", "2", true},
		{"max-pods", "", false},
	} {
		if got, ok := Last(args, tt.name); got != tt.want || ok != tt.ok {
			t.Errorf("Last(%s) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	if got, ok := Last([]string{"--a=1", "--", "--a=2"}, "a"); got != "1" || !ok {
		t.Errorf("after --: %q, %v", got, ok)
	}
	if got, ok := Last([]string{"--a="}, "a"); got != "" || !ok {
		t.Errorf("empty value: %q, %v", got, ok)
	}
}

func TestCheck(t *testing.T) {
	for _, n := range []string{"v", "node-ip", "cgroup_root", "log.level", "X1"} {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q): %v", n, err)
		}
	}
	for n, want := range map[string]string{"": "empty", "--v": "without dashes", "a=b": "not a kubelet flag name", "a b": "not a kubelet flag name", "é": "not a kubelet flag name"} {
		if err := CheckName(n); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckName(%q) = %v, want %q", n, err, want)
		}
	}
	for _, v := range []string{"", "a b", `a"b'c\d`, "$x`y`", "é☃"} {
		if err := CheckValue(v); err != nil {
			t.Errorf("CheckValue(%q): %v", v, err)
		}
	}
	for v, want := range map[string]string{"a\tb": "control character (U+0009)", "a\nb": "U+000A", "\x7f": "U+007F", "\xff": "not valid UTF-8"} {
		if err := CheckValue(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckValue(%q) = %v, want %q", v, err, want)
		}
	}
}
