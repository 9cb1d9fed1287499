package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/proc"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/testutil"
	"github.com/kubeforge/kubeforge/internal/version"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary returns the kubeforge binary under test: $KUBEFORGE_BINARY when
// set, else one built once for this test process (a cold build takes
// minutes and gigabytes; a relink about 15 s).
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the kubeforge binary")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if b := os.Getenv("KUBEFORGE_BINARY"); b != "" {
		return b
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubeforge-it-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "kubeforge")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/kubeforge")
		cmd.Dir = testutil.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		begin := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		fmt.Fprintf(os.Stderr, "built %s in %v\n", binPath, time.Since(begin).Round(time.Second))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func run(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// Each component answers with its upstream version, through the multicall
// dispatch that runs before kubeforge's own flag parsing.
func TestComponentVersions(t *testing.T) {
	bin := binary(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"component", "kube-apiserver", "--version"}, "Kubernetes v1.37.2"},
		{[]string{"component", "kube-controller-manager", "--version"}, "Kubernetes v1.37.2"},
		{[]string{"component", "kube-scheduler", "--version"}, "Kubernetes v1.37.2"},
		{[]string{"component", "kubelet", "--version"}, "Kubernetes v1.37.2"},
		{[]string{"component", "kube-proxy", "--version"}, "Kubernetes v1.37.2"},
		{[]string{"component", "etcd", "--version"}, "etcd Version: 3.7.0"},
		{[]string{"component", "coredns", "-version"}, "CoreDNS-1.15.0"},
		{[]string{"component", "containerd", "--version"}, "2.4.2"},
		{[]string{"component", "pause", "-v"}, "pause"},
	}
	for _, tt := range tests {
		t.Run(tt.args[1], func(t *testing.T) {
			out, err := run(t, bin, tt.args...)
			if err != nil || !strings.Contains(out, tt.want) {
				t.Fatalf("%s: %v\n%s\nwant %q", strings.Join(tt.args, " "), err, out, tt.want)
			}
		})
	}
}

func TestComponentHelpAndFlags(t *testing.T) {
	bin := binary(t)
	// Upstream help passes through untouched.
	out, _ := run(t, bin, "component", "kube-apiserver", "--help")
	if !strings.Contains(out, "The Kubernetes API server validates and configures data") || !strings.Contains(out, "--etcd-servers") {
		t.Errorf("kube-apiserver --help is not the apiserver's:\n%.400s", out)
	}
	// The listing.
	out, err := run(t, bin, "component", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "containerd", "coredns"} {
		if !strings.Contains(out, "\n  "+name+" ") {
			t.Errorf("component --help does not list %s:\n%s", name, out)
		}
	}
	if out, err := run(t, bin, "component", "kube-nope"); err == nil || !strings.Contains(out, `unknown component "kube-nope"`) {
		t.Errorf("unknown component: %v\n%s", err, out)
	}
	// CoreDNS's flags stay CoreDNS's: kube-proxy's help has none of them.
	out, _ = run(t, bin, "component", "kube-proxy", "--help")
	for _, f := range []string{"--dns.port", "--conf ", "--plugins"} {
		if strings.Contains(out, f) {
			t.Errorf("kube-proxy --help shows CoreDNS's %s", f)
		}
	}
	out, _ = run(t, bin, "component", "coredns", "-plugins")
	for _, p := range []string{"dns.kubernetes", "dns.forward", "dns.cache", "dns.errors", "dns.health", "dns.ready", "dns.loop", "dns.reload", "dns.loadbalance", "dns.log", "dns.prometheus"} {
		if !strings.Contains(out, strings.TrimPrefix(p, "dns.")) {
			t.Errorf("coredns -plugins lacks %s:\n%s", p, out)
		}
	}
	// The components' global flags do not leak into kubeforge's CLI.
	out, _ = run(t, bin, "node", "--help")
	if strings.Contains(out, "--version version") {
		t.Errorf("kubeforge node --help shows a component's --version flag:\n%s", out)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Real etcd on loopback ports in a temporary directory, stopped by PID.
func TestEtcd(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	ports := freePorts(t, 3)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(bin, "component", "etcd",
		"--name=it", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=it="+peer,
		fmt.Sprintf("--listen-metrics-urls=http://127.0.0.1:%d", ports[2]))
	logf, _ := os.Create(filepath.Join(dir, "etcd.log"))
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()

	var health string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(client + "/health"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			health = string(b)
			if strings.Contains(health, `"health":"true"`) {
				break
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
			t.Fatalf("etcd not healthy (last %q):\n%s", health, tailOf(string(log), 3000))
		}
	}
	t.Logf("etcd healthy %v after start", time.Since(begin).Round(time.Millisecond))
	resp, err := http.Get(client + "/version")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Server string `json:"etcdserver"`
	}
	json.NewDecoder(resp.Body).Decode(&v)
	resp.Body.Close()
	if v.Server != "3.7.0" {
		t.Errorf("etcd /version says %q, want 3.7.0", v.Server)
	}
	// The data dir is etcd's, as the upstream binary lays it out.
	if _, err := os.Stat(filepath.Join(dir, "data", "member", "snap")); err != nil {
		t.Errorf("data dir: %v", err)
	}

	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("etcd stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("etcd did not stop on SIGTERM")
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(client, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("etcd's client port still answers after it stopped")
	}
}

// testPaths is a node layout under dir: nothing of the host's
// /run/kubeforge, /var/lib/kubeforge or /var/log/kubeforge is touched.
func testPaths(dir string) config.Paths {
	p := config.DefaultPaths()
	p.KubernetesDir = filepath.Join(dir, "etc")
	p.ManifestsDir = filepath.Join(dir, "etc", "manifests")
	p.CertDir = filepath.Join(dir, "etc", "pki")
	p.KubeletDir = filepath.Join(dir, "kubelet")
	p.StateDir = filepath.Join(dir, "state")
	p.RunDir = filepath.Join(dir, "run")
	p.LogDir = filepath.Join(dir, "log")
	return p
}

func nodeStatus(t *testing.T, bin string, p config.Paths) node.Status {
	t.Helper()
	out, _ := exec.Command(bin, append([]string{"node", "status", "-o", "json"}, node.PathArgs(p)...)...).Output()
	var st node.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("node status -o json: %v\n%s", err, out)
	}
	return st
}

// The node service against a temporary root: containerd comes up, the
// images get imported, the kubelet starts once its config exists and is
// restarted when it dies; a container survives a SIGKILL of the supervisor
// and the next start; `node stop` leaves nothing running.
func TestNodeService(t *testing.T) {
	bin := binary(t)
	// Short enough for unix socket paths.
	dir, err := os.MkdirTemp("", "kf-it-")
	if err != nil {
		t.Fatal(err)
	}
	p := testPaths(dir)
	pathArgs := node.PathArgs(p)
	nodeCmd := func(args ...string) (string, error) {
		return run(t, bin, append(append([]string{"node"}, args...), pathArgs...)...)
	}
	var shimPIDs []int
	t.Cleanup(func() {
		nodeCmd("stop")
		for _, pid := range shimPIDs {
			if proc.Matches(pid, nil) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("left %s for inspection", dir)
		}
	})

	// Start: returns once containerd is ready.
	begin := time.Now()
	out, err := nodeCmd("start", "--mode=daemon")
	if err != nil {
		t.Fatalf("node start: %v\n%s\n%s", err, out, readTail(p.NodeLogFile()))
	}
	startTook := time.Since(begin)
	t.Logf("node start → containerd ready: %v (%s)", startTook.Round(time.Millisecond), strings.TrimSpace(out))
	st := nodeStatus(t, bin, p)
	if !st.Running || st.ContainerdPID == 0 || !st.RuntimeReady || !st.State.Containerd.Ready {
		t.Fatalf("status after start: %+v", st)
	}
	supervisor := st.PID
	if out, err := nodeCmd("start", "--mode=daemon"); err != nil || !strings.Contains(out, "already running") {
		t.Errorf("second start: %v\n%s", err, out)
	}

	// The images.
	waitUntil(t, "images imported", 2*time.Minute, func() bool { return nodeStatus(t, bin, p).State.ImagesReady })
	t.Logf("node start → images imported: %v", time.Since(begin).Round(time.Millisecond))

	// The kubelet waits for its config; a bad config makes it exit, and it
	// is restarted with backoff, each restart logged with the reason.
	if st := nodeStatus(t, bin, p); st.KubeletPID != 0 || st.State.Phase != "waiting for the kubelet config" {
		t.Errorf("kubelet before its config: pid %d, phase %q", st.KubeletPID, st.State.Phase)
	}
	os.MkdirAll(p.KubeletDir, 0o700)
	os.WriteFile(p.KubeletFlagsFile(), []byte(`KUBELET_KUBEADM_ARGS="--node-ip=10.201.0.2 --hostname-override=it-node"`+"\n"), 0o600)
	os.WriteFile(p.KubeletConfigFile()+".tmp", []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nbogus: [\n"), 0o600)
	os.Rename(p.KubeletConfigFile()+".tmp", p.KubeletConfigFile())
	waitUntil(t, "kubelet restarts", 30*time.Second, func() bool { return nodeStatus(t, bin, p).State.Kubelet.Restarts >= 2 })
	nodeLog := readTail(p.NodeLogFile())
	for _, want := range []string{"exited; restarting", "child=kubelet", "exit status 1", "--hostname-override=it-node", "failed to load kubelet config file"} {
		if !strings.Contains(nodeLog, want) {
			t.Errorf("node log lacks %q:\n%s", want, nodeLog)
		}
	}

	// A pod (host network) with a container of the self-image, which runs
	// `kubeforge component pause` inside it.
	rs := criClient(t, p)
	ctx := context.Background()
	podID, pausePID, selfPID := runHostPod(ctx, t, rs, dir, binaryImage(t, bin))
	shimPIDs = processesWith(p.ContainerdSocket())
	t.Logf("pod %s: pause pid %d, self-image container pid %d, shims %v", podID[:12], pausePID, selfPID, shimPIDs)

	// kill -9 the supervisor: containerd and the kubelet go (Pdeathsig),
	// the containers stay.
	oldContainerd := nodeStatus(t, bin, p).ContainerdPID
	syscall.Kill(supervisor, syscall.SIGKILL)
	waitUntil(t, "containerd to exit after its supervisor", 30*time.Second, func() bool {
		return !proc.Matches(oldContainerd, node.ContainerdIdentity)
	})
	if !proc.Matches(pausePID, nil) || !proc.Matches(selfPID, nil) {
		t.Fatalf("containers died with the node service: pause %v, self %v", proc.Matches(pausePID, nil), proc.Matches(selfPID, nil))
	}
	begin = time.Now()
	if out, err := nodeCmd("start", "--mode=daemon"); err != nil {
		t.Fatalf("node start after kill -9: %v\n%s\n%s", err, out, readTail(p.NodeLogFile()))
	}
	t.Logf("restart after kill -9 → containerd ready: %v", time.Since(begin).Round(time.Millisecond))
	rs = criClient(t, p)
	ps, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil || ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after restart: %v %v", err, ps.GetStatus().GetState())
	}
	if pid := sandboxPID(t, ps); pid != pausePID {
		t.Errorf("sandbox pid %d after restart, want the same %d (not restarted)", pid, pausePID)
	}
	cs, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: podID}})
	if err != nil || len(cs.Containers) != 1 || cs.Containers[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("containers after restart: %v %+v", err, cs.GetContainers())
	}
	if !proc.Matches(selfPID, nil) {
		t.Error("the self-image container's process is gone")
	}

	// What reset does first: stop the kubelet only; containerd keeps
	// serving, and the kubelet is not restarted.
	before := nodeStatus(t, bin, p)
	if out, err := nodeCmd("stop", "--kubelet-only"); err != nil {
		t.Fatalf("node stop --kubelet-only: %v\n%s", err, out)
	}
	time.Sleep(time.Second)
	held := nodeStatus(t, bin, p)
	if !held.State.KubeletHeld || held.KubeletPID != 0 || held.State.Kubelet.Restarts > before.State.Kubelet.Restarts+1 {
		t.Errorf("kubelet after stop --kubelet-only: held %v pid %d restarts %d → %d",
			held.State.KubeletHeld, held.KubeletPID, before.State.Kubelet.Restarts, held.State.Kubelet.Restarts)
	}
	if !held.Running || !held.RuntimeReady || held.ContainerdPID != before.ContainerdPID {
		t.Errorf("containerd after stop --kubelet-only: %+v", held)
	}

	// Clean up the pod, then stop: nothing of the node service is left.
	rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
	if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
	st = nodeStatus(t, bin, p)
	begin = time.Now()
	if out, err := nodeCmd("stop"); err != nil {
		t.Fatalf("node stop: %v\n%s", err, out)
	}
	t.Logf("node stop: %v", time.Since(begin).Round(time.Millisecond))
	for name, pid := range map[string]int{"supervisor": st.PID, "containerd": st.ContainerdPID} {
		if pid != 0 && proc.Matches(pid, nil) {
			t.Errorf("%s (pid %d) still running after node stop", name, pid)
		}
	}
	// The pod's shim exits once the pod is removed.
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWith(dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := processesWith(dir); len(left) > 0 {
		t.Errorf("processes still using %s: %v", dir, left)
	}
	if _, ok := node.Running(p); ok {
		t.Error("node.Running after stop")
	}
	for _, f := range []string{p.NodePIDFile(), node.StateFile(p), node.ContainerdPIDFile(p), node.KubeletPIDFile(p)} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left after stop", f)
		}
	}
	if out, err := nodeCmd("stop"); err != nil || !strings.Contains(out, "not running") {
		t.Errorf("second stop: %v\n%s", err, out)
	}
}

func criClient(t *testing.T, p config.Paths) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+p.ContainerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// runHostPod runs a host-network pod (no CNI needed) with one container of
// the self-image running `kubeforge component pause`.
// binaryImage is the self-image of the binary under test: its version (a
// git describe of the build) need not be this test process's.
func binaryImage(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	var v struct {
		Kubeforge string `json:"kubeforge"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.Kubeforge == "" {
		t.Fatalf("%s version -o json: %v\n%s", bin, err, out)
	}
	return version.ImageRepository + "/kubeforge:" + v.Kubeforge
}

func runHostPod(ctx context.Context, t *testing.T, rs runtimeapi.RuntimeServiceClient, dir, image string) (podID string, pausePID, selfPID int) {
	t.Helper()
	cgroupParent := "/kubeforge-it-" + filepath.Base(dir)
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "kf-it", Namespace: "default", Uid: "kf-it-" + filepath.Base(dir)},
		LogDirectory: filepath.Join(dir, "pods"),
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: cgroupParent,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
			},
		},
	}
	pod, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	podID = pod.PodSandboxId
	t.Cleanup(func() {
		ctx := context.Background()
		rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
		rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		for _, ctrl := range []string{"cpu", "memory", "pids", "cpuset", "blkio", "devices", "freezer", "hugetlb", "net_cls", "perf_event", "systemd", "unified"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", ctrl, cgroupParent))
		}
	})
	ps, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	pausePID = sandboxPID(t, ps)

	c, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: podID, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "self"},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Args:     []string{"component", "pause"},
			LogPath:  "self.log",
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	cst, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	json.Unmarshal([]byte(cst.Info["info"]), &info)
	selfPID = info.Pid
	if selfPID == 0 {
		t.Fatalf("no pid for the self-image container: %v", cst.Info)
	}
	// It runs kubeforge's pause component (and not, say, a usage error).
	time.Sleep(200 * time.Millisecond)
	if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", selfPID)); !bytes.Contains(cmdline, []byte("component\x00pause")) {
		t.Errorf("self-image container runs %q", cmdline)
	}
	if cst.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("self-image container state %v", cst.Status.State)
	}
	return podID, pausePID, selfPID
}

func sandboxPID(t *testing.T, ps *runtimeapi.PodSandboxStatusResponse) int {
	t.Helper()
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(ps.Info["info"]), &info); err != nil || info.Pid == 0 {
		t.Fatalf("sandbox info: %v %v", err, ps.Info)
	}
	return info.Pid
}

// processesWith lists pids whose command line mentions s.
func processesWith(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return tailOf(string(b), 6000)
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
