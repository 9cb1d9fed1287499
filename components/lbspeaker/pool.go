package lbspeaker

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeforge/kubeforge/internal/lbpool"
	"github.com/kubeforge/kubeforge/manifests"
)

// poolWhere names the ConfigMap that holds the address pool.
var poolWhere = metav1.NamespaceSystem + "/" + manifests.CloudControllerConfigMap

// poolWatcher follows the cloud controller's address pool, in its cloud
// config ConfigMap (the nodes may read that one: manifests.LBPoolReader).
// A speaker announces only addresses of the pool: whoever may write a
// Service's status and annotations must not make a node answer ARP for
// any address of the node network (a gateway, another host).
type poolWatcher struct {
	f   informers.SharedInformerFactory
	inf cache.SharedIndexInformer
	cms corelisters.ConfigMapLister

	mu  sync.Mutex
	err error // the last list/watch error
}

func newPoolWatcher(client kubernetes.Interface, onChange func()) (*poolWatcher, error) {
	w := &poolWatcher{}
	w.f = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(metav1.NamespaceSystem),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", manifests.CloudControllerConfigMap).String()
		}))
	cms := w.f.Core().V1().ConfigMaps()
	w.inf, w.cms = cms.Informer(), cms.Lister()
	if err := w.inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		return nil, err
	}
	if _, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}); err != nil {
		return nil, err
	}
	return w, nil
}

// Pool is the address pool: empty when the cloud config does not exist
// (the cloud controller is off: it gives no pool addresses). The error
// says why the pool is unknown.
func (w *poolWatcher) Pool() (lbpool.Pool, error) {
	if !w.inf.HasSynced() {
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		switch {
		case err == nil:
			return nil, fmt.Errorf("the address pool (%s) is not read yet", poolWhere)
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("the node's credentials may not read the address pool (%s): %w; the Role %s/%s allows it once init "+
				"has written it; if this lasts, run `kubeforge upgrade apply` on a control-plane node to write it",
				poolWhere, err, metav1.NamespaceSystem, manifests.LBPoolReader)
		default:
			return nil, fmt.Errorf("cannot read the address pool (%s): %w", poolWhere, err)
		}
	}
	cm, err := w.cms.ConfigMaps(metav1.NamespaceSystem).Get(manifests.CloudControllerConfigMap)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return manifests.CloudConfigPool(cm)
}
