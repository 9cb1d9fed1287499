package testbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestKubeletArgs(t *testing.T) {
	env := []byte("# written by kubeadm\nKUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/c/containerd.sock --hostname-override=n1  --node-ip=10.0.0.2\"\n")
	got, err := KubeletArgs(env, "--v=2")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf", "--kubeconfig=/etc/kubernetes/kubelet.conf",
		"--config=/var/lib/kubelet/config.yaml", "--container-runtime-endpoint=unix:///run/c/containerd.sock", "--hostname-override=n1",
		"--node-ip=10.0.0.2", "--v=2"}
	if !slices.Equal(got, want) {
		t.Errorf("KubeletArgs:\n got %q\nwant %q", got, want)
	}
	if _, err := KubeletArgs([]byte("OTHER=1\n"), ""); err == nil {
		t.Error("KubeletArgs accepted a file without KUBELET_KUBEADM_ARGS")
	}
}

// The systemctl shim starts the kubelet with exactly KubeletArgs, reports
// its state as systemctl does, stops it, and refuses other units.
func TestSystemctlShim(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "kubelet")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" >"+argsFile+".tmp\nmv "+argsFile+".tmp "+argsFile+"\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	flags := []byte(`KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/c/containerd.sock --pod-infra-container-image=* --node-ip=10.0.0.2"` + "\n")
	writeFile(t, filepath.Join(dir, "kubeadm-flags.env"), flags)
	writeFile(t, filepath.Join(dir, "defaults"), []byte(`KUBELET_EXTRA_ARGS="--v=2"`+"\n"))
	s := SystemctlShim{Kubelet: fake, PIDFile: filepath.Join(dir, "kubelet.pid"), Log: filepath.Join(dir, "kubelet.log"),
		FlagsEnv: filepath.Join(dir, "kubeadm-flags.env"), Defaults: filepath.Join(dir, "defaults")}
	shim := filepath.Join(dir, "systemctl")
	writeFile(t, shim, []byte(s.Script()))
	systemctl := func(args ...string) (string, int) {
		out, err := exec.Command("/bin/sh", append([]string{shim}, args...)...).Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out)), code
	}
	pid := func() int {
		b, _ := os.ReadFile(s.PIDFile)
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return p
	}
	t.Cleanup(func() {
		if p := pid(); p > 0 {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})

	if out, code := systemctl("is-active", "kubelet"); out != "inactive" || code != 3 {
		t.Errorf("is-active before start: %q, exit %d", out, code)
	}
	if _, code := systemctl("daemon-reload"); code != 0 {
		t.Errorf("daemon-reload: exit %d", code)
	}
	if out, code := systemctl("status", "kubelet"); !strings.Contains(out, "Loaded: loaded") || code != 3 {
		t.Errorf("status of a stopped kubelet: %q, exit %d", out, code)
	}
	if _, code := systemctl("restart", "kubelet"); code != 0 {
		t.Fatalf("restart: exit %d", code)
	}
	var got []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(argsFile); err == nil {
			got = b
			break
		}
	}
	want, err := KubeletArgs(flags, "--v=2")
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.Split(strings.TrimSpace(string(got)), "\n"); !slices.Equal(g, want) {
		t.Errorf("the kubelet ran with\n %q\nwant (KubeletArgs)\n %q", g, want)
	}
	first := pid()
	if out, code := systemctl("is-active", "kubelet.service"); out != "active" || code != 0 {
		t.Errorf("is-active after start: %q, exit %d", out, code)
	}
	if _, code := systemctl("start", "kubelet"); code != 0 || pid() != first {
		t.Errorf("start of a running kubelet: exit %d, pid %d → %d (want unchanged)", code, first, pid())
	}
	if out, code := systemctl("is-enabled", "kubelet"); out != "enabled" || code != 0 {
		t.Errorf("is-enabled: %q, exit %d", out, code)
	}
	if _, code := systemctl("stop", "kubelet"); code != 0 {
		t.Errorf("stop: exit %d", code)
	}
	if syscall.Kill(first, 0) == nil {
		t.Errorf("the kubelet (pid %d) still runs after stop", first)
	}
	if out, code := systemctl("status", "containerd"); code != 4 || !strings.Contains(out, "could not be found") {
		t.Errorf("status of another unit: %q, exit %d (kubeadm's ServiceExists looks for \"could not be found\")", out, code)
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// kubeadm's images: one archive naming each image kubeadm asks for; an
// image the bed cannot make is refused by name.
func TestWriteKubeadmImages(t *testing.T) {
	if _, err := exec.LookPath("xtables-nft-multi"); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubeforge")
	writeFile(t, bin, []byte("not really kubeforge"))
	refs := []string{"registry.k8s.io/kube-apiserver:v1.37.2", "registry.k8s.io/kube-proxy:v1.37.2",
		"registry.k8s.io/coredns/coredns:v1.14.6", "registry.k8s.io/pause:3.10.2", "registry.k8s.io/etcd:3.7.0-0"}
	archive := filepath.Join(dir, "images.tar")
	if err := WriteKubeadmImages(archive, bin, refs); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tar", "-xOf", archive, "index.json").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refs {
		if !strings.Contains(string(out), `"`+r+`"`) {
			t.Errorf("index.json does not name %s:\n%s", r, out)
		}
	}
	err = WriteKubeadmImages(filepath.Join(dir, "other.tar"), bin, []string{"registry.k8s.io/kube-other:v1"})
	if err == nil || !strings.Contains(err.Error(), "registry.k8s.io/kube-other:v1") {
		t.Errorf("an unknown image: %v", err)
	}
}
