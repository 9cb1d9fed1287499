package nodedir

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// ConfigMapWatcher follows one ConfigMap that a node may read with its own
// credentials: it lists and watches it by name (a field selector on
// metadata.name, which a Role limited by resourceNames allows) and keeps
// the last list or watch error, so that Get can say why the ConfigMap is
// unknown. The node directory is one; the LoadBalancer speakers' address
// pool another.
type ConfigMapWatcher struct {
	// what the ConfigMap is, for errors ("the node directory"); role lets
	// the nodes read it, named in the error when they may not.
	what, role      string
	namespace, name string
	f               informers.SharedInformerFactory
	inf             cache.SharedIndexInformer
	lister          corelisters.ConfigMapLister

	mu      sync.Mutex
	lastErr error
}

// NewConfigMapWatcher makes a watcher of namespace/name; onChange is
// called (from the informer's goroutine) whenever the ConfigMap changes.
func NewConfigMapWatcher(client kubernetes.Interface, namespace, name, what, role string, onChange func()) (*ConfigMapWatcher, error) {
	w := &ConfigMapWatcher{what: what, role: role, namespace: namespace, name: name}
	w.f = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace), byName(name))
	cms := w.f.Core().V1().ConfigMaps()
	w.inf, w.lister = cms.Informer(), cms.Lister()
	if err := w.inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		w.mu.Lock()
		w.lastErr = err
		w.mu.Unlock()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		return nil, err
	}
	if _, err := w.inf.AddEventHandler(changeHandler(onChange)); err != nil {
		return nil, err
	}
	return w, nil
}

// Start starts the informer; Shutdown stops it.
func (w *ConfigMapWatcher) Start(stop <-chan struct{}) { w.f.Start(stop) }
func (w *ConfigMapWatcher) Shutdown()                  { w.f.Shutdown() }

// HasSynced says the ConfigMap has been read once (it may not exist).
func (w *ConfigMapWatcher) HasSynced() bool { return w.inf.HasSynced() }

// Get is the ConfigMap (the informer's object: do not change it), nil
// without an error when it does not exist. The error says why it is not
// known yet: not read yet, the node may not read it (and which Role
// allows it), or the last list error.
func (w *ConfigMapWatcher) Get() (*corev1.ConfigMap, error) {
	where := "ConfigMap " + w.namespace + "/" + w.name
	if !w.inf.HasSynced() {
		w.mu.Lock()
		err := w.lastErr
		w.mu.Unlock()
		switch {
		case err == nil:
			return nil, fmt.Errorf("%s (%s) is not read yet", w.what, where)
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("the node's credentials may not read %s (%s): %w; the Role %s/%s allows it once init has "+
				"written it (right after /readyz); if this lasts, run `kubeforge upgrade apply` on a control-plane node to write it",
				w.what, where, err, w.namespace, w.role)
		default:
			return nil, fmt.Errorf("cannot read %s (%s): %w", w.what, where, err)
		}
	}
	cm, err := w.lister.ConfigMaps(w.namespace).Get(w.name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cm, err
}

// byName selects one object by name (metadata.name field selector).
func byName(name string) informers.SharedInformerOption {
	return informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
}

// changeHandler calls onChange on every add, update and delete.
func changeHandler(onChange func()) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
}
