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
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	api "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install" // the core types in legacyscheme, as the kubelet has them
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/config"
	kubepod "k8s.io/kubernetes/pkg/kubelet/pod"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
	hashutil "k8s.io/kubernetes/pkg/util/hash"
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

// noObserver (the kubelet's pod-startup observer, which Read does not
// need) is in observer.go (observer_k136.go for the build against
// Kubernetes v1.36, hack/build-k136.sh).

// Hash is the config hash (and UID) that the kubelet of node nodeName gives
// the static pod in manifest once it reads it from path: the kubelet's file
// source decodes the manifest into the internal Pod type (defaults
// applied) and hashes that object, the node's name and the file's path
// (k8s.io/kubernetes/pkg/kubelet/config, applyDefaults). Computing it
// before the file is written lets a caller put the mirror pod in place
// first. TestHashAsTheKubelet checks it against the kubelet's own reading.
func Hash(manifest []byte, path, nodeName string) (string, error) {
	js, err := utilyaml.ToJSON(manifest)
	if err != nil {
		return "", fmt.Errorf("static pod manifest for %s: %w", path, err)
	}
	obj, err := runtime.Decode(legacyscheme.Codecs.UniversalDecoder(), js)
	if err != nil {
		return "", fmt.Errorf("static pod manifest for %s: %w", path, err)
	}
	pod, ok := obj.(*api.Pod)
	if !ok {
		return "", fmt.Errorf("static pod manifest for %s holds a %T, not a Pod", path, obj)
	}
	h := fnv.New128a()
	hashutil.DeepHashObject(h, pod)
	fmt.Fprintf(h, "host:%s", nodeName)
	fmt.Fprintf(h, "file:%s", path)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Pod is the static pod the kubelet of node nodeName will run once
// manifest is at path, as the kubelet's file source makes it (see Read),
// before the file is there: it reads a copy elsewhere and gives it the
// hash of path (Hash).
func Pod(ctx context.Context, manifest []byte, path, nodeName string) (*corev1.Pod, error) {
	hash, err := Hash(manifest, path, nodeName)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubeforge-staticpod-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), manifest, 0o600); err != nil {
		return nil, err
	}
	pods, err := Read(ctx, dir, nodeName)
	if err != nil {
		return nil, err
	}
	if len(pods) != 1 {
		return nil, fmt.Errorf("the kubelet would read %d pods from the static pod manifest for %s", len(pods), path)
	}
	p := pods[0]
	p.UID = types.UID(hash)
	p.Annotations[ConfigHashAnnotation] = hash
	return p, nil
}
