package cri

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"

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
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "containerd", RuntimeVersion: "1.6.20", RuntimeApiVersion: "v1"}, nil
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
