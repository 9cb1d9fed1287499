// Package staticpod reads static Pod manifests the way the kubelet does and
// replaces a static pod's mirror pod the way the kubelet would, with the
// kubelet's own code (k8s.io/kubernetes/pkg/kubelet/config and .../pod).
//
// `kubeforge upgrade apply` uses it to put the new mirror pod in place while
// the API server still works. Left to itself, the kubelet replaces the
// mirror pod only when it starts the new static pod, and it does that before
// it starts the pod's containers: on a single control-plane node, where the
// API server needs the very etcd being replaced, that call hangs until the
// API server's request timeout, and etcd stays down meanwhile.
package staticpod

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/config"
	kubepod "k8s.io/kubernetes/pkg/kubelet/pod"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
)

// ConfigHashAnnotation is where a static pod and its mirror pod carry the
// hash that the kubelet computes from the manifest (its UID).
const ConfigHashAnnotation = kubetypes.ConfigHashAnnotationKey

// Read returns the static pods the kubelet of node nodeName reads from the
// manifest directory dir, as the kubelet's file source makes them (name
// suffixed with the node's, UID and config hash computed from the file
// and its path). dir must be the path the kubelet itself reads: the hash
// covers the file's path.
//
// The kubelet's file source has no stop: its list and watch goroutines
// stay until the process exits. Call it in short-lived commands only.
func Read(ctx context.Context, dir, nodeName string) ([]*corev1.Pod, error) {
	pc := kubeletconfig.NewPodConfig(&record.FakeRecorder{}, noObserver{})
	kubeletconfig.NewSourceFile(klog.Background(), dir, types.NodeName(nodeName), time.Hour,
		pc.Channel(ctx, kubetypes.FileSource))
	select {
	case u := <-pc.Updates():
		return u.Pods, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("read the static pod manifests in %s as the kubelet does: %w", dir, ctx.Err())
	}
}

// Find returns the pod of the component named name (the manifest's pod
// name, before the kubelet adds the node's name) among pods.
func Find(pods []*corev1.Pod, name, nodeName string) *corev1.Pod {
	for _, p := range pods {
		if p.Name == name+"-"+nodeName {
			return p
		}
	}
	return nil
}

// ReplaceMirror makes static's mirror pod current: it deletes the mirror
// pod with UID old (if it is still there) and creates the one the kubelet
// would create for static (same content, the mirror annotation, the Node
// as owner). The kubelet then finds its mirror pod up to date and starts
// the new static pod without calling the API server first.
func ReplaceMirror(ctx context.Context, client kubernetes.Interface, nodeName string, static *corev1.Pod, old types.UID) error {
	if old != "" {
		// As the kubelet deletes a mirror pod: at once, only that one.
		var now int64
		err := client.CoreV1().Pods(static.Namespace).Delete(ctx, static.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &now, Preconditions: &metav1.Preconditions{UID: &old}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete the old mirror pod %s/%s: %w", static.Namespace, static.Name, err)
		}
	}
	mc := kubepod.NewBasicMirrorClient(client, nodeName, nodeGetter{ctx, client})
	if err := mc.CreateMirrorPod(ctx, static); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the mirror pod %s/%s: %w", static.Namespace, static.Name, err)
	}
	return nil
}

type nodeGetter struct {
	ctx    context.Context
	client kubernetes.Interface
}

func (g nodeGetter) Get(name string) (*corev1.Node, error) {
	return g.client.CoreV1().Nodes().Get(g.ctx, name, metav1.GetOptions{})
}

type noObserver struct{}

func (noObserver) ObservedPodOnWatch(klog.Logger, *corev1.Pod, time.Time) {}
