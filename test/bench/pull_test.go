package bench

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	kfconfig "github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/cri"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// The pulled images: pullLayers layers of pullLayerBytes random bytes
// each, on a layer of busybox (for the pods' command): ~50 MB on the wire.
// pullRuns pulls through the CRI, and as many pods.
const (
	pullLayers     = 5
	pullLayerBytes = 10_000_000
	pullRuns       = 3
)

// pullBench is part pull: a single node with default settings trusts a
// registry on the test bridge (TLS with a test CA, the node's credentials
// in /etc/kubeforge/registries.yaml, as TestRegistry); once it has
// settled, it pulls a ~50 MB image of random layers through its
// containerd's CRI (as `crictl pull`; the image removed between pulls,
// which also collects its blobs), then runs pods of other such images.
func (b *bench) pullBench(t *testing.T) {
	pr := &PullResult{PullSeconds: []float64{}, LayersFetched: []int{}, PodRunningSeconds: []float64{}, KubeletPullSeconds: []float64{}}
	defer func() {
		b.mu.Lock()
		b.res.Pull = pr
		b.mu.Unlock()
	}()
	problem := func(format string, args ...any) {
		msg := "pull: " + fmt.Sprintf(format, args...)
		pr.Errors = append(pr.Errors, msg)
		b.errorf(t, "%s", msg)
	}
	if err := testbed.RequireStaticBusybox(); err != nil {
		problem("%v", err)
		t.Fatal(err)
	}
	pr.Load = b.loadSample(t, "the pull part")
	tb := testbed.New(t, testbed.WithBinary(b.cfg.binary))
	reg := testbed.StartRegistry(t, tb.Gateway)
	n := tb.AddNode("benchpull")
	if err := reg.ConfigureNode(n, testbed.RegistryNodeUser); err != nil {
		problem("configure the node for the registry: %v", err)
		t.Fatal(err)
	}
	res, ms, _, missing := b.initWatched(t, n, "init-pull.yaml", n.InitConfigYAML())
	if res.Err != nil {
		problem("init failed: %v", res.Err)
		t.Fatal(res.Err)
	}
	if len(missing) > 0 {
		problem("not reached within 3 minutes of init: %s", strings.Join(missing, "; "))
	}
	t.Logf("init: %.2f s, every kube-system pod Ready %.2f s after its start", res.Wall, get(ms, CheckAllPodsReady))

	// The images: one for the CRI pulls, one per pod (each pod's image is
	// new to the node: the kubelet keeps a deleted pod's containers, and
	// with them its image, until its next container garbage collection).
	start := time.Now()
	ref := reg.Host + "/e2e/pull50:crictl"
	img := testbed.RandomImage(t, "bench-pull-crictl", pullLayers, pullLayerBytes)
	reg.Push(t, "e2e/pull50:crictl", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layers := map[string]bool{}
	pr.ImageBytes = m.Config.Size
	for _, l := range m.Layers {
		pr.ImageBytes += l.Size
		layers[l.Digest.String()] = true
	}
	pr.Image, pr.Layers = ref, len(m.Layers)
	for i := 1; i <= pullRuns; i++ {
		tag := fmt.Sprintf("pod-%d", i)
		reg.Push(t, "e2e/pull50:"+tag, testbed.RandomImage(t, "bench-pull-"+tag, pullLayers, pullLayerBytes))
		pr.PodImages = append(pr.PodImages, reg.Host+"/e2e/pull50:"+tag)
	}
	t.Logf("pushed %d images of %.1f MB (%d layers) in %.1f s", 1+pullRuns, float64(pr.ImageBytes)/1e6, pr.Layers, time.Since(start).Seconds())

	// CRI pulls, from the bench, through the node's containerd socket.
	sock := kfconfig.DefaultPaths().ContainerdSocket()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rt, err := cri.Dial(ctx, "unix://"+sock, n.Path(sock))
	if err != nil {
		problem("connect to the node's CRI: %v", err)
		t.Fatal(err)
	}
	defer rt.Close()
	spec := &runtimeapi.ImageSpec{Image: ref}
	for i := 1; i <= pullRuns; i++ {
		if _, err := rt.Img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec}); err != nil {
			problem("CRI RemoveImage %s: %v", ref, err)
			break
		}
		mark := reg.Mark()
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Minute)
		t0 := time.Now()
		_, err := rt.Img.PullImage(pctx, &runtimeapi.PullImageRequest{Image: spec})
		d := time.Since(t0).Seconds()
		pcancel()
		if err != nil {
			problem("CRI PullImage %s (pull %d): %v", ref, i, err)
			break
		}
		fetched := layersFetched(reg.Requests(mark), layers, n)
		pr.PullSeconds = append(pr.PullSeconds, round3(d))
		pr.LayersFetched = append(pr.LayersFetched, fetched)
		t.Logf("CRI pull %d: %.2f s (%.0f MB/s), %d of %d layers fetched from the registry", i, d, float64(pr.ImageBytes)/1e6/d, fetched, len(layers))
		if fetched < len(layers) {
			problem("pull %d fetched %d of the image's %d layers from the registry: the others were still on the node, so it is not a full pull", i, fetched, len(layers))
		}
	}
	if _, err := rt.Img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec}); err != nil {
		problem("CRI RemoveImage %s: %v", ref, err)
	}

	// Pods: created → container Running.
	kc, err := n.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := NewClient(kc, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, image := range pr.PodImages {
		name := fmt.Sprintf("bench-pull-%d", i+1)
		running, kubeletPull, err := podRunning(ctx, cs, name, image)
		if err != nil {
			problem("pod %s (%s): %v", name, image, err)
			continue
		}
		pr.PodRunningSeconds = append(pr.PodRunningSeconds, round3(running))
		if kubeletPull > 0 {
			pr.KubeletPullSeconds = append(pr.KubeletPullSeconds, round3(kubeletPull))
		}
		t.Logf("pod %d: created → Running %.2f s (the kubelet's pull %.2f s)", i+1, running, kubeletPull)
	}
}

// layersFetched counts the image's layers (digests in layers) that the
// registry served node n with a GET in reqs.
func layersFetched(reqs []testbed.RegistryRequest, layers map[string]bool, n *testbed.Node) int {
	got := map[string]bool{}
	for _, q := range reqs {
		i := strings.LastIndex(q.Path, "/blobs/")
		if i < 0 || q.Method != "GET" || q.Status != 200 || q.From != n.IP {
			continue
		}
		if d := q.Path[i+len("/blobs/"):]; layers[d] {
			got[d] = true
		}
	}
	return len(got)
}

// kubeletPulled matches the kubelet's Pulled event: `Successfully pulled
// image "X" in 1.234s (1.234s including waiting). Image size: N bytes.`
var kubeletPulled = regexp.MustCompile(`[Ss]uccessfully pulled image "[^"]*" in ([0-9.]+[a-zµ]+(?:[0-9.]+[a-zµ]+)*)`)

// podRunning creates a pod of image in default and returns the seconds
// from its creation to its container Running (a watch), and the pull's
// duration as the kubelet's Pulled event says (0 if none was read). It
// deletes the pod and waits until it is gone.
func podRunning(ctx context.Context, cs *kubernetes.Clientset, name, image string) (running, kubeletPull float64, err error) {
	zero := int64(0)
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"kubeforge-bench": "pull"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  &no,
			Containers: []corev1.Container{{Name: "main", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/bin/busybox", "sleep", "3600"}}},
		},
	}
	pods := cs.CoreV1().Pods("default")
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = pods.Delete(dctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		for dctx.Err() == nil {
			if _, err := pods.Get(dctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	t0 := time.Now()
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return 0, 0, fmt.Errorf("create: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	w, err := pods.Watch(wctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
		ResourceVersion: created.ResourceVersion})
	if err != nil {
		return 0, 0, fmt.Errorf("watch: %w", err)
	}
	defer w.Stop()
	last := "created"
	for running == 0 {
		select {
		case <-wctx.Done():
			return 0, 0, fmt.Errorf("not Running within 3 minutes: %s", last)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, 0, fmt.Errorf("the watch ended; last: %s", last)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				continue
			}
			for _, c := range p.Status.ContainerStatuses {
				switch {
				case c.State.Running != nil:
					running = time.Since(t0).Seconds()
				case c.State.Waiting != nil:
					last = c.State.Waiting.Reason + ": " + c.State.Waiting.Message
				case c.State.Terminated != nil:
					return 0, 0, fmt.Errorf("container terminated: %s %s", c.State.Terminated.Reason, c.State.Terminated.Message)
				}
			}
		}
	}
	// The kubelet's Pulled event (it may come a moment after Running).
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + name + ",reason=Pulled"})
		if err != nil {
			continue
		}
		for _, e := range evs.Items {
			if m := kubeletPulled.FindStringSubmatch(e.Message); m != nil {
				if d, err := time.ParseDuration(m[1]); err == nil {
					return running, d.Seconds(), nil
				}
			}
		}
	}
	return running, 0, nil
}
