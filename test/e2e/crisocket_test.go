package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// The --cri-socket tests: nodes on a container runtime that the host
// already has, here Debian's own containerd package (1.6), which each test
// starts itself inside the node's namespaces with its own config, root,
// state and socket (hack/deps.sh installs the package; without systemd it
// does not start as a host service).

// unpullableSandbox is the sandbox image the test's containerd is
// configured with: nothing listens on 127.0.0.1:1 in the node, so a pull
// fails at once and no packet leaves the node.
const unpullableSandbox = "127.0.0.1:1/kftb/pause:3.6"

// extContainerd is a containerd the test runs in a node.
type extContainerd struct {
	n      *testbed.Node
	dir    string // root, state and socket live below /run/<dir> and /var/lib/<dir>
	Socket string
	cmd    *exec.Cmd
}

// extContainerdConfig is containerd 1.6's config for a node here: CRI on,
// restrict_oom_score_adj (root lacks CAP_SYS_RESOURCE), an unpullable
// sandbox image, kubeforge's CNI plugin directory, and the given cgroup
// driver.
func extContainerdConfig(dir string, systemdCgroup, restrictOOM bool) string {
	return fmt.Sprintf(`version = 2
root = "/var/lib/%[1]s"
state = "/run/%[1]s"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "/run/%[1]s/containerd.sock"
[ttrpc]
  address = "/run/%[1]s/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[2]q
  restrict_oom_score_adj = %[4]t
  enable_tls_streaming = false
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = %[3]t
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/var/lib/kubeforge/cni-bin"
    conf_dir = "/etc/cni/net.d"
`, dir, unpullableSandbox, systemdCgroup, restrictOOM)
}

// startExtContainerd starts Debian's containerd in n with cfg and waits
// for its socket. The testbed kills it with the node's other processes;
// stop ends it earlier.
func startExtContainerd(t *testing.T, n *testbed.Node, dir, cfg string) *extContainerd {
	t.Helper()
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Fatalf("Debian's containerd is not installed (hack/deps.sh installs it: apt-get install containerd): %v", err)
	}
	c := &extContainerd{n: n, dir: dir, Socket: "/run/" + dir + "/containerd.sock"}
	cfgPath := n.WriteConfigFile(dir+".toml", cfg)
	logPath := filepath.Join(n.Dir, dir+".log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = n.Command(context.Background(), "containerd", "--config", cfgPath, "--log-level", "info")
	c.cmd.Stdout, c.cmd.Stderr = log, log
	if err := c.cmd.Start(); err != nil {
		log.Close()
		t.Fatal(err)
	}
	// No cleanup of its own: the testbed's reset of the node must find it
	// running, and the testbed then kills it with the node's processes.
	go func() { _ = c.cmd.Wait(); log.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.ctr("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("containerd in %s did not answer at %s within 30s; its log:\n%s", n.Name, c.Socket, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, _ := c.ctr("version")
	t.Logf("containerd in %s at %s:\n%s", n.Name, c.Socket, out)
	return c
}

func (c *extContainerd) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
	}
}

// ctr runs Debian's ctr against this containerd.
func (c *extContainerd) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return c.n.Run(ctx, "ctr", append([]string{"--address", c.Socket}, args...)...)
}

func (c *extContainerd) mustCtr(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.ctr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// images lists the image names in namespace ns.
func (c *extContainerd) images(t *testing.T, ns string) []string {
	t.Helper()
	return strings.Fields(c.mustCtr(t, "-n", ns, "images", "ls", "-q"))
}

// otherWorkload puts an image and a running container into namespace
// "other" of c (not the CRI's), as another user of the same containerd
// would; the container runs in the node's cgroup root so that the testbed
// removes it with the node.
func (c *extContainerd) otherWorkload(t *testing.T, tarball, ref string) {
	t.Helper()
	c.mustCtr(t, "-n", "other", "images", "import", tarball)
	c.mustCtr(t, "-n", "other", "run", "-d", "--net-host", "--cgroup", c.n.CgroupRoot+"/other-keep", ref, "keep", "busybox", "sleep", "3600")
}

func (c *extContainerd) checkOtherWorkload(t *testing.T, ref string) {
	t.Helper()
	if imgs := c.images(t, "other"); !containsStr(imgs, ref) {
		t.Errorf("%s: the image %s in namespace other is gone: %v", c.n.Name, ref, imgs)
	}
	if out := c.mustCtr(t, "-n", "other", "tasks", "ls"); !strings.Contains(out, "keep") || !strings.Contains(out, "RUNNING") {
		t.Errorf("%s: the container keep in namespace other is not running any more:\n%s", c.n.Name, out)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestCRISocketExistingContainerd: a control-plane node and a worker, each
// on its own Debian containerd 1.6 whose sandbox image cannot be pulled
// (no registry): init and join succeed offline, pods run, reset removes
// exactly what kubeforge made there.
func TestCRISocketExistingContainerd(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	cp := tb.AddNode("cp1")
	w1 := tb.AddNode("w1")
	step := stepper(t)

	tarball := filepath.Join(tb.Dir, "busybox.tar")
	if _, err := testbed.WriteBusyboxImage(tarball, busyboxRef); err != nil {
		t.Fatal(err)
	}
	const otherRef = "kftb.local/other:keep"
	otherTar := filepath.Join(tb.Dir, "other.tar")
	if _, err := testbed.WriteBusyboxImage(otherTar, otherRef); err != nil {
		t.Fatal(err)
	}
	ctrds := map[*testbed.Node]*extContainerd{}
	for _, n := range []*testbed.Node{cp, w1} {
		c := startExtContainerd(t, n, "ext-containerd", extContainerdConfig("ext-containerd", false, true))
		c.otherWorkload(t, otherTar, otherRef)
		ctrds[n] = c
	}
	endpoint := "unix://" + ctrds[cp].Socket

	var workerJoin []string
	step("init", func(t *testing.T) {
		start := time.Now()
		out := kf(t, cp, 4*time.Minute, "init", "--config", cp.InitConfigFile(), "--advertise-address", cp.IP.String(),
			"--node-name", cp.Name, "--cri-socket", endpoint)
		took := time.Since(start)
		t.Logf("kubeforge init on containerd 1.6 took %v:\n%s", took.Round(10*time.Millisecond), out)
		bench(t, "init.external_containerd.seconds", took)
		workerJoin, _ = joinCommands(t, out)
		// Preflight said which sandbox image and why.
		if !strings.Contains(out, "[CRI]") || !strings.Contains(out, unpullableSandbox) || !strings.Contains(out, "is not present") {
			t.Errorf("init did not warn that the runtime's sandbox image %s is missing and what it does instead:\n%s", unpullableSandbox, out)
		}
		for _, p := range cp.Processes() {
			if hasWords(p.Cmdline, "component", "containerd") {
				t.Errorf("the bundled containerd runs although --cri-socket was given: %v", p)
			}
		}
		imgs := ctrds[cp].images(t, "k8s.io")
		for _, want := range []string{unpullableSandbox} {
			if !containsStr(imgs, want) {
				t.Errorf("the runtime lacks %s after init: %v", want, imgs)
			}
		}
		if !strings.Contains(strings.Join(imgs, " "), "kubeforge.local/kubeforge:") || !strings.Contains(strings.Join(imgs, " "), "kubeforge.local/pause:") {
			t.Errorf("kubeforge's images are not in the runtime: %v", imgs)
		}
	})

	step("pods-run", func(t *testing.T) {
		c := &cluster{t: t, n: cp}
		poll(t, 3*time.Minute, "every kube-system pod Ready", c.systemReady)
		if cfg, err := cp.ReadFile("/var/lib/kubelet/config.yaml"); err != nil || !strings.Contains(string(cfg), "containerRuntimeEndpoint: "+endpoint) {
			t.Errorf("the kubelet does not use %s (%v):\n%s", endpoint, err, cfg)
		}
		status := kf(t, cp, time.Minute, "node", "status")
		if !strings.Contains(status, ctrds[cp].Socket) {
			t.Errorf("node status does not name the runtime's socket %s:\n%s", ctrds[cp].Socket, status)
		}
	})

	step("join-worker", func(t *testing.T) {
		kf(t, w1, time.Minute, "images", "import", "--cri-socket", "unix://"+ctrds[w1].Socket, tarball)
		start := time.Now()
		out := kf(t, w1, 3*time.Minute, append(workerJoin, "--config", w1.JoinConfigFile(), "--cri-socket", "unix://"+ctrds[w1].Socket)...)
		t.Logf("join of %s took %v:\n%s", w1.Name, time.Since(start).Round(10*time.Millisecond), out)
		api := apiClient(t, cp, "")
		poll(t, 2*time.Minute, "two nodes Ready", func() string { return nodesReady(api, cp.Name, w1.Name) })
		kubectlOn(t, cp, "", "apply", "-f", cp.WriteConfigFile("hello.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: default}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: hello
    image: %s
    imagePullPolicy: Never
    command: ["busybox", "sh", "-c", "echo hello-from-ext; exec sleep 3600"]
`, w1.Name, busyboxRef)))
		poll(t, 2*time.Minute, "pod hello Running on "+w1.Name, func() string {
			out, err := kubectlTry(cp, "", "get", "pod", "hello", "-o", "jsonpath={.status.phase}")
			if err != nil {
				return err.Error()
			}
			if out != "Running" {
				return "phase " + out
			}
			return ""
		})
		if imgs := ctrds[w1].images(t, "k8s.io"); !containsStr(imgs, unpullableSandbox) {
			t.Errorf("the worker's runtime lacks the sandbox image %s: %v", unpullableSandbox, imgs)
		}
	})

	step("reset", func(t *testing.T) {
		for _, n := range []*testbed.Node{w1, cp} {
			c := ctrds[n]
			out := kf(t, n, 2*time.Minute, "reset", "--force")
			t.Logf("reset of %s:\n%s", n.Name, out)
			imgs := c.images(t, "k8s.io")
			for _, img := range imgs {
				if img == unpullableSandbox || strings.HasPrefix(img, "kubeforge.local/") {
					t.Errorf("%s: reset left kubeforge's image %s in the runtime", n.Name, img)
				}
			}
			if n == w1 && !containsStr(imgs, busyboxRef) {
				t.Errorf("%s: reset removed the user's image %s: %v", n.Name, busyboxRef, imgs)
			}
			if ids := strings.Fields(c.mustCtr(t, "-n", "k8s.io", "containers", "ls", "-q")); len(ids) > 0 {
				t.Errorf("%s: reset left %d containers in the CRI's namespace: %v", n.Name, len(ids), ids)
			}
			c.checkOtherWorkload(t, otherRef)
		}
	})
}

// TestCRISocketPreflight: init refuses, before it writes anything, a
// runtime that is down, one with the systemd cgroup driver (the kubelet
// uses cgroupfs here), and one that would fail every sandbox for want of
// restrict_oom_score_adj; with that check ignored, wait-control-plane
// stops within seconds with the runtime's own message instead of waiting
// out its timeout.
func TestCRISocketPreflight(t *testing.T) {
	testbed.RequireHost(t)
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	n := tb.AddNode("cri")
	step := stepper(t)

	initWith := func(t *testing.T, timeout time.Duration, socket string, extra ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		args := append([]string{"init", "--config", n.InitConfigFile(), "--advertise-address", n.IP.String(), "--node-name", n.Name,
			"--cri-socket", "unix://" + socket}, extra...)
		return n.Kubeforge(ctx, args...)
	}
	nothingWritten := func(t *testing.T) {
		t.Helper()
		for _, p := range []string{"/etc/kubernetes/manifests/kube-apiserver.yaml", "/etc/kubernetes/pki/ca.crt", "/var/lib/kubelet/config.yaml", "/etc/kubernetes/admin.conf"} {
			if exists(n.Path(p)) {
				t.Errorf("preflight refused, yet %s was written", p)
			}
		}
	}

	step("runtime-down", func(t *testing.T) {
		out, err := initWith(t, time.Minute, "/run/no-such-runtime/containerd.sock")
		if err == nil {
			t.Fatalf("init succeeded without a runtime:\n%s", out)
		}
		if !strings.Contains(err.Error(), "[ERROR CRI]") || !strings.Contains(err.Error(), "start the runtime") {
			t.Errorf("init's refusal does not name the CRI check and the fix:\n%v", err)
		}
		nothingWritten(t)
	})

	step("systemd-cgroup-driver", func(t *testing.T) {
		c := startExtContainerd(t, n, "sd-containerd", extContainerdConfig("sd-containerd", true, true))
		defer c.stop()
		out, err := initWith(t, time.Minute, c.Socket)
		if err == nil {
			t.Fatalf("init succeeded on a runtime with the systemd cgroup driver:\n%s", out)
		}
		if !strings.Contains(err.Error(), "systemd cgroup driver") || !strings.Contains(err.Error(), "SystemdCgroup = false") {
			t.Errorf("init's refusal does not say the cgroup drivers differ and the fix:\n%v", err)
		}
		nothingWritten(t)
	})

	step("oom-score-adj", func(t *testing.T) {
		c := startExtContainerd(t, n, "oom-containerd", extContainerdConfig("oom-containerd", false, false))
		out, err := initWith(t, time.Minute, c.Socket)
		if err == nil || !strings.Contains(err.Error(), "restrict_oom_score_adj = true") {
			t.Fatalf("init did not refuse a runtime without restrict_oom_score_adj: %v\n%s", err, out)
		}
		nothingWritten(t)
		// Past preflight, wait-control-plane reads the runtime's errors.
		start := time.Now()
		out, err = initWith(t, 3*time.Minute, c.Socket, "--ignore-preflight-errors=CRI")
		took := time.Since(start)
		t.Logf("init with the CRI check ignored failed after %v: %v", took.Round(100*time.Millisecond), err)
		if err == nil {
			t.Fatalf("init succeeded on a runtime that fails every sandbox:\n%s", out)
		}
		if !strings.Contains(err.Error(), "keeps failing") || !strings.Contains(err.Error(), "restrict_oom_score_adj = true") {
			t.Errorf("wait-control-plane did not report the runtime's error and the fix:\n%v", err)
		}
		if took > 90*time.Second {
			t.Errorf("init took %v to give up; the runtime's errors should stop it within seconds of the kubelet's start", took)
		}
		kf(t, n, 2*time.Minute, "reset", "--force")
		c.stop()
	})
}
