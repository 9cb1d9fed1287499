package containerd_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/image"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/version"
)

// roleEnv makes the test binary run as the containerd daemon; it also
// serves as the runc shim (containerd.IsShim), so this test binary is a
// small kubeforge: daemon, shim and self-image in one executable.
const roleEnv = "KUBEFORGE_TEST_ROLE"

func TestMain(m *testing.M) {
	if containerd.IsShim(os.Args) {
		os.Exit(containerd.ShimMain(os.Args))
	}
	if os.Getenv(roleEnv) == "containerd" {
		os.Exit(containerd.Main(append([]string{"containerd"}, os.Args[1:]...)))
	}
	os.Exit(m.Run())
}

// TestNode runs the bundled containerd in a temporary root, loads the
// self-image, the pause image and busybox archives, and runs a pod with a
// CNI network, a busybox container and a container of the self-image
// through the CRI.
func TestNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, bin := range []string{"runc", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("no %s (apt-get install runc)", bin)
		}
	}
	busybox := "/bin/busybox"
	if !isStatic(busybox) {
		t.Skip("no static /bin/busybox (apt-get install busybox-static)")
	}
	cniBin := ""
	for _, d := range containerd.DefaultCNIBinDirs {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			cniBin = d
		}
	}
	if cniBin == "" {
		t.Skip("no CNI plugins (apt-get install containernetworking-plugins)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if testing.Verbose() {
		prev := slog.Default()
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
		defer slog.SetDefault(prev)
	}

	// A short root: containerd's shim socket dir must stay under 42 bytes.
	root, err := os.MkdirTemp("/tmp", "kfct")
	if err != nil {
		t.Fatal(err)
	}
	suffix := randHex(3)
	bridge := "kfct" + suffix
	p := config.Paths{
		StateDir:   root + "/state",
		RunDir:     root + "/run",
		LogDir:     root + "/log",
		CNIConfDir: root + "/cni",
	}
	socket := p.ContainerdSocket()
	t.Cleanup(func() { cleanupRoot(t, root, socket, bridge) })

	shim, err := containerd.EnsureShimLink(p)
	if err != nil {
		t.Fatal(err)
	}
	o := containerd.DefaultOptions(p)
	if o.ShimPath != shim {
		t.Errorf("DefaultOptions shim %s, EnsureShimLink %s", o.ShimPath, shim)
	}
	writeCNIConfig(t, p, bridge, root)
	cfgPath, err := containerd.WriteConfig(p, o)
	if err != nil {
		t.Fatal(err)
	}

	// Start containerd: this test binary, or with KUBEFORGE_BINARY set, a
	// built kubeforge (`kubeforge component containerd`, and its shim).
	self, _ := os.Executable()
	logFile, err := os.Create(filepath.Join(root, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	daemon := exec.Command(self, "--config", p.Host(cfgPath), "--log-level", "info")
	daemon.Env = append(os.Environ(), roleEnv+"=containerd")
	if kf := os.Getenv("KUBEFORGE_BINARY"); kf != "" {
		daemon = exec.Command(kf, "component", "containerd", "--config", p.Host(cfgPath), "--log-level", "info")
		daemon.Env = os.Environ()
		if err := os.Remove(p.Host(shim)); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(kf, p.Host(shim)); err != nil {
			t.Fatal(err)
		}
		t.Logf("containerd and shim: %s", kf)
	}
	daemon.Env = append(daemon.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	daemon.Stdout, daemon.Stderr = logFile, logFile
	start := time.Now()
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait(); logFile.Close() }()
	t.Cleanup(func() { stopDaemon(t, daemon, exited, root) })

	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	err = containerd.WaitReady(readyCtx, socket)
	readyCancel()
	if err != nil {
		t.Fatalf("%v\n%s", err, tail(filepath.Join(root, "containerd.log")))
	}
	t.Logf("containerd ready after %v", time.Since(start).Round(time.Millisecond))

	// The self-image and the pause image: a first run loads them, a second
	// finds them.
	t0 := time.Now()
	if err := image.EnsureImages(ctx, p, socket); err != nil {
		t.Fatalf("EnsureImages: %v\n%s", err, tail(filepath.Join(root, "containerd.log")))
	}
	first := time.Since(t0)
	// The self-image goes straight into containerd's content store (no
	// archive); its state file remembers the layer digest.
	selfState := image.StateFile(p)
	st1, err := os.Stat(selfState)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	if err := image.EnsureImages(ctx, p, socket); err != nil {
		t.Fatalf("second EnsureImages: %v", err)
	}
	second := time.Since(t0)
	st2, _ := os.Stat(selfState)
	if !st2.ModTime().Equal(st1.ModTime()) {
		t.Error("second EnsureImages loaded the self-image again")
	}
	if second > time.Second {
		t.Errorf("second EnsureImages took %v", second)
	}
	exe, _ := os.Stat(self)
	t.Logf("EnsureImages: first %v (self-image of a %d MB executable), second %v",
		first.Round(time.Millisecond), exe.Size()>>20, second.Round(time.Millisecond))
	if _, err := os.Stat(image.StateFile(p)); err != nil {
		t.Errorf("no self-image state file: %v", err)
	}

	// User images: a gzipped docker-archive and an OCI archive whose
	// ref.name is only a tag.
	dockerTar := filepath.Join(root, "busybox-docker.tar.gz")
	ociTar := filepath.Join(root, "busybox.oci.tar")
	writeBusyboxArchives(t, busybox, dockerTar, ociTar)
	var out bytes.Buffer
	t0 = time.Now()
	if err := image.Import(ctx, socket, []string{dockerTar, ociTar}, &out); err != nil {
		t.Fatalf("Import: %v", err)
	}
	t.Logf("Import of two busybox archives took %v:\n%s", time.Since(t0).Round(time.Millisecond), out.String())
	for _, want := range []string{"imported kfct.local/busybox:docker (sha256:", "imported docker.io/library/busybox:oci (sha256:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Import output lacks %q", want)
		}
	}
	if lines := strings.Count(out.String(), "\n"); lines != 2 {
		t.Errorf("Import printed %d lines, want one per image", lines)
	}
	if err := image.Import(ctx, socket, []string{filepath.Join(root, "containerd.log")}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "not a tarball") {
		t.Errorf("Import of a log file: %v", err)
	}
	if err := image.Import(ctx, socket, []string{filepath.Join(root, "missing.tar")}, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "file not found") {
		t.Errorf("Import of a missing file: %v", err)
	}
	if err := image.List(ctx, root+"/nothing.sock", io.Discard); !errors.Is(err, image.ErrNotRunning) {
		t.Errorf("List on a dead socket: %v, want ErrNotRunning", err)
	}

	out.Reset()
	if err := image.List(ctx, socket, &out); err != nil {
		t.Fatal(err)
	}
	t.Logf("List:\n%s", out.String())
	for _, ref := range []string{version.Image(), version.PauseImage(), "kfct.local/busybox:docker", "docker.io/library/busybox:oci"} {
		if !strings.Contains(out.String(), ref) {
			t.Errorf("List lacks %s", ref)
		}
	}

	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rs := runtimeapi.NewRuntimeServiceClient(conn)
	is := runtimeapi.NewImageServiceClient(conn)

	checkCRIConfig(ctx, t, rs, p, shim)

	for _, ref := range []string{version.Image(), version.PauseImage()} {
		st, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil || st.Image == nil {
			t.Fatalf("CRI ImageStatus %s: %v %v", ref, st, err)
		}
		if !st.Image.Pinned {
			t.Errorf("CRI says %s is not pinned", ref)
		}
	}

	// Pulls go nowhere: the registry hosts point at a dead loopback port.
	for _, ref := range []string{"kubeforge.local/nothing:1", "busybox:nothing"} {
		t0 = time.Now()
		_, err = is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("pull of %s: %v, want a refused connection to 127.0.0.1:1", ref, err)
		}
		t.Logf("blocked pull of %s failed after %v", ref, time.Since(t0).Round(time.Millisecond))
	}

	runPod(ctx, t, rs, p, root, self)
	t.Logf("containerd %d: RSS %s, %s", daemon.Process.Pid, procField(daemon.Process.Pid, "VmRSS"), pss(daemon.Process.Pid))

	// Nothing of the pod is left: no shim, no pod network namespace.
	deadline := time.Now().Add(10 * time.Second)
	for len(processesWith(socket)) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if pids := processesWith(socket); len(pids) > 0 {
		t.Errorf("shims left after the pod was removed: %v", pids)
	}
}

// checkCRIConfig reads the running CRI's configuration.
func checkCRIConfig(ctx context.Context, t *testing.T, rs runtimeapi.RuntimeServiceClient, p config.Paths, shim string) {
	t.Helper()
	st, err := rs.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Containerd struct {
			Runtimes map[string]struct {
				Type string `json:"runtimeType"`
				Path string `json:"runtimePath"`
			} `json:"runtimes"`
		} `json:"containerd"`
		CNI struct {
			BinDirs []string `json:"binDirs"`
			ConfDir string   `json:"confDir"`
		} `json:"cni"`
		RestrictOOMScoreAdj      bool `json:"restrictOOMScoreAdj"`
		NetNSMountsUnderStateDir bool `json:"netnsMountsUnderStateDir"`
	}
	if err := json.Unmarshal([]byte(st.Info["config"]), &cfg); err != nil {
		t.Fatalf("CRI config %q: %v", st.Info["config"], err)
	}
	runc := cfg.Containerd.Runtimes["runc"]
	if runc.Type != "io.containerd.runc.v2" || runc.Path != shim {
		t.Errorf("CRI runc runtime %+v, want io.containerd.runc.v2 at %s", runc, shim)
	}
	if !cfg.RestrictOOMScoreAdj || !cfg.NetNSMountsUnderStateDir {
		t.Errorf("CRI restrict_oom_score_adj %v netns_mounts_under_state_dir %v",
			cfg.RestrictOOMScoreAdj, cfg.NetNSMountsUnderStateDir)
	}
	if cfg.CNI.ConfDir != p.CNIConfDir || !slices.Equal(cfg.CNI.BinDirs, containerd.DefaultCNIBinDirs) {
		t.Errorf("CRI CNI %+v", cfg.CNI)
	}
}

// runPod runs a pod on the CNI bridge with a busybox container and a
// container of the self-image, then removes it.
func runPod(ctx context.Context, t *testing.T, rs runtimeapi.RuntimeServiceClient, p config.Paths, root, self string) {
	logDir := filepath.Join(root, "pods", "kfct")
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "kfct", Namespace: "default", Uid: "kfct-" + randHex(4)},
		Hostname:     "kfct",
		LogDirectory: logDir,
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	t0 := time.Now()
	pod, err := rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, tail(filepath.Join(root, "containerd.log")))
	}
	t.Logf("pod sandbox up in %v", time.Since(t0).Round(time.Millisecond))
	podID := pod.PodSandboxId
	defer func() {
		if _, err := rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
		if _, err := rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	}()

	pst, err := rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	podIP := pst.Status.GetNetwork().GetIp()
	if !strings.HasPrefix(podIP, "10.250.") {
		t.Errorf("pod IP %q, want one from the test bridge 10.250.0.0/16", podIP)
	}
	var info struct {
		Pid         int    `json:"pid"`
		Image       string `json:"image"`
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string } `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(pst.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	if info.Image != version.PauseImage() {
		t.Errorf("sandbox image %s", info.Image)
	}
	for _, ns := range info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && !strings.HasPrefix(ns.Path, p.ContainerdState()+"/") {
			t.Errorf("pod network namespace %s is not under %s", ns.Path, p.ContainerdState())
		}
	}
	// The sandbox process is the tiny pause program (once runc's init,
	// which may still be finishing its exec, is done).
	if pauseELF, ok := image.PauseELF(runtime.GOARCH); ok {
		var exe []byte
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if exe, err = os.ReadFile(fmt.Sprintf("/proc/%d/exe", info.Pid)); err != nil || bytes.Equal(exe, pauseELF) {
				break
			}
		}
		if !bytes.Equal(exe, pauseELF) {
			t.Errorf("sandbox process %d is not the pause program (%d bytes, %v)", info.Pid, len(exe), err)
		}
	}
	t.Logf("pause process %d: %s, IP %s", info.Pid, procField(info.Pid, "VmRSS"), podIP)

	// busybox, from the docker archive.
	bb := createStart(ctx, t, rs, podID, podCfg, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "busybox"},
		Image:    &runtimeapi.ImageSpec{Image: "kfct.local/busybox:docker"},
		Command:  []string{"/bin/sh", "-c", "echo hello-from-busybox; exec sleep 3600"},
		LogPath:  "busybox.log",
	})
	ex, err := rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: bb, Cmd: []string{"/bin/ip", "-4", "addr", "show", "eth0"}, Timeout: 10})
	if err != nil || ex.ExitCode != 0 || !strings.Contains(string(ex.Stdout), podIP+"/") {
		t.Errorf("exec ip addr in busybox: %v, exit %d, %s%s", err, ex.GetExitCode(), ex.GetStdout(), ex.GetStderr())
	}
	waitLog(t, filepath.Join(logDir, "busybox.log"), "hello-from-busybox")
	// One shim serves the whole pod (the runc v2 shim groups by sandbox).
	shims := processesWith(p.ContainerdSocket())
	if len(shims) != 1 {
		t.Errorf("%d shim processes for one pod: %v", len(shims), shims)
	}
	for _, pid := range shims {
		t.Logf("shim %d: RSS %s, %s", pid, procField(pid, "VmRSS"), pss(pid))
	}

	// The self-image runs its executable in an otherwise empty image; here
	// that is this test binary, asked to run no test.
	if isStatic(self) {
		sc := createStart(ctx, t, rs, podID, podCfg, &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "self"},
			Image:    &runtimeapi.ImageSpec{Image: version.Image()},
			Args:     []string{"-test.run=^$"},
			LogPath:  "self.log",
		})
		code := waitExit(ctx, t, rs, sc)
		if code != 0 {
			t.Errorf("self-image container exited %d:\n%s", code, readFile(filepath.Join(logDir, "self.log")))
		}
		waitLog(t, filepath.Join(logDir, "self.log"), "PASS")
	} else {
		t.Log("test binary is not static (build with CGO_ENABLED=0): self-image container skipped")
	}
}

func createStart(ctx context.Context, t *testing.T, rs runtimeapi.RuntimeServiceClient, podID string,
	podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	c, err := rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer %s: %v", cfg.Metadata.Name, err)
	}
	id := c.ContainerId
	t.Cleanup(func() {
		ctx := context.Background()
		rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
		rs.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	})
	if _, err := rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer %s: %v", cfg.Metadata.Name, err)
	}
	return id
}

func waitExit(ctx context.Context, t *testing.T, rs runtimeapi.RuntimeServiceClient, id string) int32 {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st.Status.ExitCode
		}
	}
	t.Fatalf("container %s did not exit", id)
	return -1
}

func waitLog(t *testing.T, path, want string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(readFile(path), want) {
			return
		}
	}
	t.Errorf("%s never said %q:\n%s", path, want, readFile(path))
}

// writeCNIConfig puts the pod network on a bridge of its own, with no
// gateway, no masquerading and no routes: nothing can leave the host.
func writeCNIConfig(t *testing.T, p config.Paths, bridge, root string) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "kfct",
		"plugins": []any{map[string]any{
			"type":      "bridge",
			"bridge":    bridge,
			"isGateway": false,
			"ipMasq":    false,
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": filepath.Join(root, "cni-ipam"),
				"ranges":  [][]map[string]string{{{"subnet": "10.250.7.0/24"}}},
			},
		}},
	}
	b, _ := json.Marshal(conf)
	if err := os.MkdirAll(p.CNIConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.CNIConfDir, "10-kfct.conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeBusyboxArchives writes one busybox image twice: as a gzipped
// `docker save` archive and as an OCI layout tarball.
func writeBusyboxArchives(t *testing.T, busybox, dockerPath, ociPath string) {
	t.Helper()
	bin, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, d := range []string{"bin/", "etc/", "tmp/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	for _, applet := range []string{"sh", "sleep", "echo", "cat", "ip"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	tw.Close()
	layerDigest := digest.FromBytes(layer.Bytes())
	cfg, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDigest}},
	})
	cfgDigest := digest.FromBytes(cfg)

	// docker save: manifest.json, <config>.json, <layer>/layer.tar.
	var docker bytes.Buffer
	gz := gzip.NewWriter(&docker)
	dw := tar.NewWriter(gz)
	manifest, _ := json.Marshal([]map[string]any{{
		"Config":   cfgDigest.Encoded() + ".json",
		"RepoTags": []string{"kfct.local/busybox:docker"},
		"Layers":   []string{layerDigest.Encoded() + "/layer.tar"},
	}})
	addFile(dw, "manifest.json", manifest)
	addFile(dw, cfgDigest.Encoded()+".json", cfg)
	addFile(dw, layerDigest.Encoded()+"/layer.tar", layer.Bytes())
	dw.Close()
	gz.Close()
	if err := os.WriteFile(dockerPath, docker.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// OCI layout, ref.name only a tag.
	man, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfg))},
		Layers:    []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: layerDigest, Size: int64(layer.Len())}},
	})
	idx, _ := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{
			MediaType:   ocispec.MediaTypeImageManifest,
			Digest:      digest.FromBytes(man),
			Size:        int64(len(man)),
			Annotations: map[string]string{ocispec.AnnotationRefName: "oci"},
		}},
	})
	var oci bytes.Buffer
	ow := tar.NewWriter(&oci)
	addFile(ow, "oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	addFile(ow, "index.json", idx)
	for _, b := range [][]byte{cfg, man, layer.Bytes()} {
		addFile(ow, "blobs/sha256/"+digest.FromBytes(b).Encoded(), b)
	}
	ow.Close()
	if err := os.WriteFile(ociPath, oci.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func addFile(tw *tar.Writer, name string, b []byte) {
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
	tw.Write(b)
}

// stopDaemon stops containerd by its PID: SIGTERM, then SIGKILL.
func stopDaemon(t *testing.T, daemon *exec.Cmd, exited <-chan error, root string) {
	daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Errorf("containerd did not stop on SIGTERM; killing it")
		daemon.Process.Kill()
		<-exited
	}
	if t.Failed() {
		t.Logf("containerd log:\n%s", tail(filepath.Join(root, "containerd.log")))
	}
}

// cleanupRoot kills shims this test's containerd started (found by its
// socket in their command line), unmounts whatever is mounted under root,
// deletes the test bridge and root.
func cleanupRoot(t *testing.T, root, socket, bridge string) {
	for _, pid := range processesWith(socket) {
		t.Logf("killing leftover shim %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	mounts := mountsUnder(root)
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mounts[i], syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mounts[i], err)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		if out, err := exec.Command("ip", "link", "del", bridge).CombinedOutput(); err != nil {
			t.Errorf("delete bridge %s: %v %s", bridge, err, out)
		}
	}
	if err := os.RemoveAll(root); err != nil {
		t.Errorf("remove %s: %v", root, err)
	}
}

// processesWith lists the processes whose command line mentions s.
func processesWith(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func mountsUnder(root string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mounts []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && (fields[4] == root || strings.HasPrefix(fields[4], root+"/")) {
			mounts = append(mounts, fields[4])
		}
	}
	return mounts
}

func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func procField(pid int, field string) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// pss summarises a process's memory from smaps_rollup: proportional set
// size, and its anonymous (private, not shared with other processes of
// the same executable) and file-backed parts.
func pss(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	var parts []string
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && (k == "Pss" || k == "Pss_Anon" || k == "Pss_File") {
			parts = append(parts, k+" "+strings.TrimSpace(v))
		}
	}
	return strings.Join(parts, ", ")
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(path string) string {
	s := readFile(path)
	if len(s) > 6000 {
		s = "…" + s[len(s)-6000:]
	}
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
