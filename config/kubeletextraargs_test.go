package config

import (
	"strings"
	"testing"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
)

// kubeletExtraArgs are checked for what the kubelet flags file carries to
// the kubelet unchanged (internal/kubeletflags), at init and at join,
// naming the field and the value.
func TestKubeletExtraArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []v1beta4.Arg
		want []string // "" entries: accepted
	}{
		{"blanks, quotes, backslashes and $ are quoted in the file", []v1beta4.Arg{
			{Name: "node-labels", Value: "a=b"}, {Name: "root-dir", Value: `/var/lib/my "kubelet"\ $x`}, {Name: "v", Value: ""}}, nil},
		{"the node's own name as hostname-override", []v1beta4.Arg{{Name: "hostname-override", Value: "node1"}}, nil},
		{"dashes", []v1beta4.Arg{{Name: "--v", Value: "2"}}, []string{"kubeletExtraArgs[0].name", `"--v": give the flag name without dashes`}},
		{"not a flag name", []v1beta4.Arg{{Name: "a b", Value: "2"}}, []string{"kubeletExtraArgs[0].name", `"a b" is not a kubelet flag name`}},
		{"tab", []v1beta4.Arg{{Name: "v", Value: "2"}, {Name: "node-labels", Value: "a=b\tc"}},
			[]string{"kubeletExtraArgs[1].value", `node-labels: "a=b\tc" has a control character (U+0009)`}},
		{"line break", []v1beta4.Arg{{Name: "node-labels", Value: "a=b\n--c=d"}}, []string{"kubeletExtraArgs[0].value", "U+000A"}},
		{"not UTF-8", []v1beta4.Arg{{Name: "node-labels", Value: "\xff"}}, []string{"kubeletExtraArgs[0].value", "not valid UTF-8"}},
		{"another node name", []v1beta4.Arg{{Name: "hostname_override", Value: "other"}},
			[]string{"kubeletExtraArgs[0].value", `hostname-override "other" is not the node's name "node1"`, "nodeRegistration.name (or --node-name)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, join := range []bool{false, true} {
				c := New()
				var err error
				prefix := "InitConfiguration.nodeRegistration."
				if join {
					prefix = "JoinConfiguration.nodeRegistration."
					c.Join.NodeRegistration.KubeletExtraArgs = tc.args
					err = c.CompleteJoin(testHost(), "10.0.0.9")
				} else {
					c.Init.NodeRegistration.KubeletExtraArgs = tc.args
					err = c.Complete(testHost())
				}
				if len(tc.want) == 0 {
					if err != nil {
						t.Fatalf("join=%v: %v", join, err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("join=%v: accepted", join)
				}
				for _, w := range append([]string{prefix + tc.want[0]}, tc.want[1:]...) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("join=%v: error %q lacks %q", join, err, w)
					}
				}
			}
		})
	}
}
