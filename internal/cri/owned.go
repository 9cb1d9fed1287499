package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// Owned is what kubeforge put into a runtime it did not start: the images
// it imported (or stored under the runtime's sandbox image name). reset
// removes exactly these, and the kubelet's pods.
type Owned struct {
	Endpoint string   `json:"endpoint"`
	Images   []string `json:"images"`
}

// OwnedFile is the logical path of the record.
func OwnedFile(p config.Paths) string { return filepath.Join(p.StateDir, "cri-owned.json") }

// ReadOwned reads the record (empty when absent).
func ReadOwned(p config.Paths) (Owned, error) {
	var o Owned
	b, err := os.ReadFile(p.Host(OwnedFile(p)))
	if errors.Is(err, os.ErrNotExist) {
		return o, nil
	} else if err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("%s: %w", OwnedFile(p), err)
	}
	return o, nil
}

// AddOwned adds images to the record for endpoint (idempotent).
func AddOwned(p config.Paths, endpoint string, images ...string) error {
	o, err := ReadOwned(p)
	if err != nil || o.Endpoint != endpoint {
		o = Owned{Endpoint: endpoint}
	}
	changed := false
	for _, img := range images {
		if img != "" && !slices.Contains(o.Images, img) {
			o.Images, changed = append(o.Images, img), true
		}
	}
	if !changed && err == nil && fsutil.Exists(p.Host(OwnedFile(p))) {
		return nil
	}
	b, _ := json.MarshalIndent(o, "", "  ")
	if _, err := fsutil.WriteFile(p.Host(OwnedFile(p)), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("record kubeforge's images in the container runtime: %w", err)
	}
	return nil
}

// KubeletPodLabel is on every pod sandbox the kubelet creates.
const KubeletPodLabel = "io.kubernetes.pod.uid"

// RemovePods stops and removes every pod sandbox the kubelet created
// (and with them their containers); it returns how many it removed.
func (r *Runtime) RemovePods(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := r.RT.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("CRI ListPodSandbox at %s: %w", r.Endpoint, err)
	}
	// A few at a time: a runtime takes seconds per pod to stop (containerd
	// 2.x about 3 s here), which one after the other adds up.
	var (
		mu   sync.Mutex
		errs []error
		n    int
		wg   sync.WaitGroup
		sem  = make(chan struct{}, 4)
	)
	for _, s := range resp.Items {
		if _, ok := s.Labels[KubeletPodLabel]; !ok {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := func() error {
				if _, err := r.RT.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
					return fmt.Errorf("stop pod %s/%s (%s): %w", s.Metadata.GetNamespace(), s.Metadata.GetName(), s.Id, err)
				}
				if _, err := r.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
					return fmt.Errorf("remove pod %s/%s (%s): %w", s.Metadata.GetNamespace(), s.Metadata.GetName(), s.Id, err)
				}
				return nil
			}()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				n++
			}
		}()
	}
	wg.Wait()
	return n, errors.Join(errs...)
}

// RemoveImages removes the images refs that the runtime has; it returns
// those it removed.
func (r *Runtime) RemoveImages(ctx context.Context, refs []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var removed []string
	var errs []error
	for _, ref := range refs {
		ok, err := r.HasImage(ctx, ref)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok {
			continue
		}
		if _, err := r.Img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			errs = append(errs, fmt.Errorf("remove image %s: %w", ref, err))
			continue
		}
		removed = append(removed, ref)
	}
	return removed, errors.Join(errs...)
}
