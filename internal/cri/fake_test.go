package cri

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeforge/kubeforge/config"
)

// fakeRuntime is a CRI server with pods and images in memory.
type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer
	mu      sync.Mutex
	pods    map[string]map[string]string // id → labels
	stopped []string
	images  []string
	info    map[string]string
	driver  runtimeapi.CgroupDriver
	version string   // "1.6.20" when empty
	pinned  []string // images it pins (ListImages)
	// pullable are the images PullImage can fetch (others fail).
	pullable []string
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	v := f.version
	if v == "" {
		v = "1.6.20"
	}
	return &runtimeapi.VersionResponse{RuntimeName: "containerd", RuntimeVersion: v, RuntimeApiVersion: "v1"}, nil
}

func (f *fakeRuntime) ListImages(context.Context, *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListImagesResponse{}
	for _, im := range f.images {
		resp.Images = append(resp.Images, &runtimeapi.Image{Id: im, RepoTags: []string{im}, Pinned: slices.Contains(f.pinned, im)})
	}
	return resp, nil
}

func (f *fakeRuntime) PullImage(_ context.Context, r *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.pullable, r.Image.Image) {
		return nil, fmt.Errorf("failed to pull and unpack image %q: dial tcp 127.0.0.1:1: connect: connection refused", r.Image.Image)
	}
	f.images = append(f.images, r.Image.Image)
	return &runtimeapi.PullImageResponse{ImageRef: r.Image.Image}, nil
}

func (f *fakeRuntime) Status(_ context.Context, r *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	resp := &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{{Type: runtimeapi.RuntimeReady, Status: true}}}}
	if r.Verbose {
		resp.Info = f.info
	}
	return resp, nil
}

func (f *fakeRuntime) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: f.driver}}, nil
}

func (f *fakeRuntime) ListPodSandbox(context.Context, *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &runtimeapi.ListPodSandboxResponse{}
	for id, l := range f.pods {
		resp.Items = append(resp.Items, &runtimeapi.PodSandbox{Id: id, Labels: l, Metadata: &runtimeapi.PodSandboxMetadata{Name: id, Namespace: "ns"}})
	}
	return resp, nil
}

func (f *fakeRuntime) StopPodSandbox(_ context.Context, r *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, r.PodSandboxId)
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (f *fakeRuntime) RemovePodSandbox(_ context.Context, r *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, r.PodSandboxId)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (f *fakeRuntime) ImageStatus(_ context.Context, r *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if slices.Contains(f.images, r.Image.Image) {
		return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{Id: r.Image.Image}}, nil
	}
	return &runtimeapi.ImageStatusResponse{}, nil
}

func (f *fakeRuntime) RemoveImage(_ context.Context, r *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images = slices.DeleteFunc(f.images, func(s string) bool { return s == r.Image.Image })
	return &runtimeapi.RemoveImageResponse{}, nil
}

func serveFake(t *testing.T, f *fakeRuntime) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(s, f)
	runtimeapi.RegisterImageServiceServer(s, f)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return sock
}

func TestRuntimeAgainstFake(t *testing.T) {
	f := &fakeRuntime{
		pods: map[string]map[string]string{
			"kubelet-pod": {KubeletPodLabel: "uid-1"},
			"other-pod":   {"owner": "someone-else"},
		},
		images: []string{"kubeforge.local/kubeforge:v1", "kubeforge.local/pause:v1", "registry.k8s.io/pause:3.6", "docker.io/library/busybox:1"},
		info:   map[string]string{"config": `{"sandboxImage":"registry.k8s.io/pause:3.6","containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{"runtimeType":"io.containerd.runc.v2","options":{"SystemdCgroup":false}}}}}`},
		driver: runtimeapi.CgroupDriver_SYSTEMD, // RuntimeConfig wins over the config dump
	}
	sock := serveFake(t, f)
	ctx := context.Background()
	if _, err := Dial(ctx, "unix://"+sock+".missing", ""); err == nil {
		t.Fatal("Dial of a missing socket succeeded")
	}
	rt, err := Dial(ctx, "unix://"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	info, err := rt.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.APIVersion != "v1" || !info.Ready || info.SandboxImage != "registry.k8s.io/pause:3.6" || !info.SandboxImagePresent ||
		info.CgroupDriver != Systemd || info.CgroupDriverFrom != "its CRI RuntimeConfig" {
		t.Errorf("info %+v", info)
	}

	n, err := rt.RemovePods(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RemovePods = %d, %v", n, err)
	}
	if _, ok := f.pods["other-pod"]; !ok || len(f.pods) != 1 || !slices.Equal(f.stopped, []string{"kubelet-pod"}) {
		t.Errorf("after RemovePods: pods %v, stopped %v", f.pods, f.stopped)
	}
	removed, err := rt.RemoveImages(ctx, []string{"kubeforge.local/kubeforge:v1", "kubeforge.local/pause:v1", "kubeforge.local/gone:v0"})
	if err != nil || !slices.Equal(removed, []string{"kubeforge.local/kubeforge:v1", "kubeforge.local/pause:v1"}) {
		t.Fatalf("RemoveImages = %v, %v", removed, err)
	}
	if !slices.Equal(f.images, []string{"registry.k8s.io/pause:3.6", "docker.io/library/busybox:1"}) {
		t.Errorf("images left: %v", f.images)
	}
}

func TestOwnedRecord(t *testing.T) {
	p := config.DefaultPaths().WithRoot(t.TempDir())
	if o, err := ReadOwned(p); err != nil || o.Endpoint != "" || len(o.Images) != 0 {
		t.Fatalf("empty record: %+v, %v", o, err)
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := AddOwned(p, "unix:///a.sock", "x", "y"); err != nil {
			t.Fatal(err)
		}
	}
	if err := AddOwned(p, "unix:///a.sock", "y", "z"); err != nil {
		t.Fatal(err)
	}
	o, err := ReadOwned(p)
	if err != nil || o.Endpoint != "unix:///a.sock" || !slices.Equal(o.Images, []string{"x", "y", "z"}) {
		t.Fatalf("record %+v, %v", o, err)
	}
	// Another runtime starts a new record.
	if err := AddOwned(p, "unix:///b.sock", "w"); err != nil {
		t.Fatal(err)
	}
	if o, _ := ReadOwned(p); o.Endpoint != "unix:///b.sock" || !slices.Equal(o.Images, []string{"w"}) {
		t.Errorf("record after a runtime change %+v", o)
	}
}

// TestContainerd2Sandbox: containerd 2.x does not report its sandbox image
// over the CRI. Here the runtime is this test process, which
// ContainerdConfigSandbox does not read, so the image comes from the one
// image the runtime pins; without one it stays unknown and says why.
// PullSandbox fetches a missing one, or records why it could not.
func TestContainerd2Sandbox(t *testing.T) {
	status := map[string]string{"config": `{"containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{"runtimeType":"io.containerd.runc.v2","options":{"SystemdCgroup":false}}}},"restrictOOMScoreAdj":true}`}
	ctx := context.Background()
	info := func(f *fakeRuntime) (*Runtime, Info) {
		t.Helper()
		f.driver = runtimeapi.CgroupDriver_CGROUPFS // 2.x's RuntimeConfig, from its runc options
		rt, err := Dial(ctx, "unix://"+serveFake(t, f), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close() })
		i, err := rt.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rt, i
	}
	_, i := info(&fakeRuntime{version: "v2.4.2", info: status, images: []string{"registry.k8s.io/pause:3.10.2", "x/app:1", "kubeforge.local/pause:v1"},
		pinned: []string{"registry.k8s.io/pause:3.10.2", "kubeforge.local/pause:v1"}})
	if i.SandboxImage != "registry.k8s.io/pause:3.10.2" || !i.SandboxImagePresent || !strings.Contains(i.SandboxImageFrom, "the one image it pins") ||
		!strings.Contains(i.SandboxImageFrom, "could not be read") || i.CgroupDriver != CgroupFS {
		t.Errorf("pinned sandbox image: %+v", i)
	}
	rt, i := info(&fakeRuntime{version: "v2.4.2", info: status, images: []string{"x/app:1"}})
	if i.SandboxImage != "" || !strings.Contains(PlanSandbox(i, "own/pause:1").Why, "could not be read") {
		t.Errorf("no pinned image: %+v, plan %q", i, PlanSandbox(i, "own/pause:1").Why)
	}
	i.SandboxImage, i.SandboxImageFrom = "127.0.0.1:1/p/pause:1", "pinned_images.sandbox in its config /c.toml"
	rt.PullSandbox(ctx, &i, time.Second)
	if i.SandboxImagePresent || !strings.Contains(i.SandboxPullError, "connection refused") {
		t.Errorf("failed pull: %+v", i)
	}
	p := PlanSandbox(i, "own/pause:1")
	if !p.Alias || !strings.Contains(p.Why, "127.0.0.1:1/p/pause:1 is not present and cannot be pulled") || !strings.Contains(p.Why, "/c.toml") {
		t.Errorf("plan after a failed pull: %+v", p)
	}
	rt, i = info(&fakeRuntime{version: "v2.4.2", info: status, pullable: []string{"r/pause:2"}})
	i.SandboxImage = "r/pause:2"
	rt.PullSandbox(ctx, &i, 5*time.Second)
	if p := PlanSandbox(i, "own/pause:1"); !i.SandboxPulled || p.Alias || !strings.Contains(p.Why, "which it pulled") {
		t.Errorf("pulled: %+v, plan %+v", i, p)
	}
}
