package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// The --cri-socket tests: nodes on a container runtime that the host
// already has, which each test starts itself inside the node's namespaces
// with its own config, root, state and socket: Debian's own containerd
// package (1.6; hack/deps.sh installs it, and without systemd it does not
// start as a host service), and a containerd of the v2 line, the upstream
// containerd v2.4 that kubeforge bundles, run from the binary under test
// as a host's own would be (`kubeforge component containerd --config
// FILE`, its own config version 3 and shim).

const unpullableSandbox = testbed.UnpullableSandbox

// startExtContainerd starts Debian's containerd in n (see
// testbed.ContainerdConfig) or fails the test.
func startExtContainerd(t *testing.T, n *testbed.Node, o testbed.ContainerdOptions) *testbed.Containerd {
	t.Helper()
	c, err := n.StartContainerd(o.Name, testbed.ContainerdConfig(o))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.Ctr("version")
	t.Logf("containerd in %s at %s:\n%s", n.Name, c.Socket, out)
	return c
}

// startContainerd2 starts the containerd v2 of the binary under test in n
// (see testbed.Containerd2Config) or fails the test.
func startContainerd2(t *testing.T, n *testbed.Node, o testbed.ContainerdOptions) *testbed.Containerd {
	t.Helper()
	c, err := n.StartContainerd2(o.Name, testbed.Containerd2Config(o))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := c.Ctr("version")
	t.Logf("containerd v2 in %s at %s:\n%s", n.Name, c.Socket, out)
	return c
}

// extRuntime is a container runtime of the kind a host already has, as
// the --cri-socket tests start it in a node.
type extRuntime struct {
	name  string // for logs
	bench string // the BENCH key of init's wall time on it
	start func(t *testing.T, n *testbed.Node, o testbed.ContainerdOptions) *testbed.Containerd
	// sandboxFrom is where kubeforge reads the runtime's sandbox image, as
	// the preflight warning names it.
	sandboxFrom string
}

var (
	containerd16 = extRuntime{name: "Debian's containerd 1.6", bench: "init.external_containerd.seconds",
		start: startExtContainerd, sandboxFrom: "its CRI status"}
	containerd2 = extRuntime{name: "containerd v2 (the upstream containerd kubeforge bundles, run as the host's)", bench: "init.external_containerd2.seconds",
		start: startContainerd2, sandboxFrom: "pinned_images.sandbox in its config"}
)

func mustCtr(t *testing.T, c *testbed.Containerd, args ...string) string {
	t.Helper()
	out, err := c.Ctr(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func ctrImages(t *testing.T, c *testbed.Containerd, ns string) []string {
	t.Helper()
	imgs, err := c.Images(ns)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

// otherWorkload puts an image and a running container into namespace
// "other" of c (not the CRI's), as another user of the same containerd
// would; the container runs in the node's cgroup root so that the testbed
// removes it with the node.
func otherWorkload(t *testing.T, n *testbed.Node, c *testbed.Containerd, tarball, ref string) {
	t.Helper()
	mustCtr(t, c, "-n", "other", "images", "import", tarball)
	mustCtr(t, c, "-n", "other", "run", "-d", "--net-host", "--cgroup", n.CgroupRoot+"/other-keep", ref, "keep", "busybox", "sleep", "3600")
}

func checkOtherWorkload(t *testing.T, n *testbed.Node, c *testbed.Containerd, ref string) {
	t.Helper()
	if imgs := ctrImages(t, c, "other"); !containsStr(imgs, ref) {
		t.Errorf("%s: the image %s in namespace other is gone: %v", n.Name, ref, imgs)
	}
	if out := mustCtr(t, c, "-n", "other", "tasks", "ls"); !strings.Contains(out, "keep") || !strings.Contains(out, "RUNNING") {
		t.Errorf("%s: the container keep in namespace other is not running any more:\n%s", n.Name, out)
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

// TestCRISocketContainerd2: a control-plane node and a worker, each on its
// own containerd v2 whose sandbox image cannot be pulled (no registry) and
// whose CRI status does not report it (kubeforge reads it from the config
// file of the process serving the socket): init and join succeed offline,
// pods run, reset removes exactly what kubeforge made there
// (testExternalRuntime).
func TestCRISocketContainerd2(t *testing.T) { testExternalRuntime(t, containerd2) }

// TestCRISocketExistingContainerd: the same on Debian's containerd 1.6.
func TestCRISocketExistingContainerd(t *testing.T) { testExternalRuntime(t, containerd16) }

// testExternalRuntime: a control-plane node and a worker, each on its own
// runtime rt whose sandbox image cannot be pulled (no registry): init and
// join succeed offline, pods run, reset removes exactly what kubeforge
// made there and leaves the runtime's other containers and images alone.
func testExternalRuntime(t *testing.T, rt extRuntime) {
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
	ctrds := map[*testbed.Node]*testbed.Containerd{}
	for _, n := range []*testbed.Node{cp, w1} {
		c := rt.start(t, n, testbed.ContainerdOptions{Name: "ext-containerd"})
		otherWorkload(t, n, c, otherTar, otherRef)
		ctrds[n] = c
	}
	endpoint := "unix://" + ctrds[cp].Socket

	var workerJoin []string
	step("init", func(t *testing.T) {
		start := time.Now()
		out := kf(t, cp, 5*time.Minute, "init", "--config", cp.InitConfigFile(), "--advertise-address", cp.IP.String(),
			"--node-name", cp.Name, "--cri-socket", endpoint)
		took := time.Since(start)
		t.Logf("kubeforge init on %s took %v:\n%s", rt.name, took.Round(10*time.Millisecond), out)
		bench(t, rt.bench, took)
		workerJoin, _ = joinCommands(t, out)
		// Preflight said which sandbox image and why.
		if !strings.Contains(out, "[CRI]") || !strings.Contains(out, unpullableSandbox+" is not present and cannot be pulled") || !strings.Contains(out, rt.sandboxFrom) {
			t.Errorf("init did not warn that the runtime's sandbox image %s (read from %s) is missing and cannot be pulled, and what it does instead:\n%s",
				unpullableSandbox, rt.sandboxFrom, out)
		}
		for _, p := range cp.Processes() {
			if hasWords(p.Cmdline, "component", "containerd") && !slices.Contains(p.Cmdline, ctrds[cp].Config) { // not the runtime under test
				t.Errorf("the bundled containerd runs although --cri-socket was given: %v", p)
			}
		}
		imgs := ctrImages(t, ctrds[cp], "k8s.io")
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
			out, err := kubectlTry(cp, "", "get", "pod", "hello", "-o", "jsonpath={.status.phase} {.status.reason} {.status.message}")
			if err != nil {
				return err.Error()
			}
			if strings.TrimSpace(out) != "Running" {
				return "phase " + out
			}
			return ""
		})
		if imgs := ctrImages(t, ctrds[w1], "k8s.io"); !containsStr(imgs, unpullableSandbox) {
			t.Errorf("the worker's runtime lacks the sandbox image %s: %v", unpullableSandbox, imgs)
		}
	})

	step("reset", func(t *testing.T) {
		for _, n := range []*testbed.Node{w1, cp} {
			c := ctrds[n]
			out := kf(t, n, 2*time.Minute, "reset", "--force")
			t.Logf("reset of %s:\n%s", n.Name, out)
			imgs := ctrImages(t, c, "k8s.io")
			for _, img := range imgs {
				if img == unpullableSandbox || strings.HasPrefix(img, "kubeforge.local/") {
					t.Errorf("%s: reset left kubeforge's image %s in the runtime", n.Name, img)
				}
			}
			if n == w1 && !containsStr(imgs, busyboxRef) {
				t.Errorf("%s: reset removed the user's image %s: %v", n.Name, busyboxRef, imgs)
			}
			if ids := strings.Fields(mustCtr(t, c, "-n", "k8s.io", "containers", "ls", "-q")); len(ids) > 0 {
				t.Errorf("%s: reset left %d containers in the CRI's namespace: %v", n.Name, len(ids), ids)
			}
			checkOtherWorkload(t, n, c, otherRef)
		}
	})
}

// TestCRISocketPreflight: init refuses, before it writes anything, a
// runtime that is down, one with the systemd cgroup driver (the kubelet
// uses cgroupfs here; containerd 1.6 and v2), and one that would fail
// every sandbox for want of restrict_oom_score_adj; with that check ignored, wait-control-plane
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
		for i, rt := range []extRuntime{containerd16, containerd2} {
			c := rt.start(t, n, testbed.ContainerdOptions{Name: fmt.Sprintf("sd-containerd%d", i), SystemdCgroup: true})
			out, err := initWith(t, time.Minute, c.Socket)
			c.Stop()
			if err == nil {
				t.Fatalf("init succeeded on %s with the systemd cgroup driver:\n%s", rt.name, out)
			}
			if !strings.Contains(err.Error(), "systemd cgroup driver") || !strings.Contains(err.Error(), "SystemdCgroup = false") {
				t.Errorf("init's refusal on %s does not say the cgroup drivers differ and the fix:\n%v", rt.name, err)
			}
			nothingWritten(t)
		}
	})

	step("oom-score-adj", func(t *testing.T) {
		c := startExtContainerd(t, n, testbed.ContainerdOptions{Name: "oom-containerd", OOMScoreAdjAllowed: true})
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
		c.Stop()
	})
}
