package k8srun

import "testing"

func TestFlagValue(t *testing.T) {
	args := []string{"--kubeconfig=/a.conf", "-v", "3", "--root-ca-file", "/ca.crt", "config", "--x"}
	for name, want := range map[string]string{"kubeconfig": "/a.conf", "v": "3", "root-ca-file": "/ca.crt", "config": "", "x": "", "missing": ""} {
		if got := FlagValue(args, name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}
