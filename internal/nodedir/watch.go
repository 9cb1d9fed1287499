package nodedir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/kubeforge/kubeforge/manifests"
)

// ErrNotPublished says the directory does not exist (yet).
var ErrNotPublished = errors.New("no " + Namespace + "/" + Name + " yet: the controller-manager publishes it " +
	"(a kube-controller-manager of this kubeforge version must run; see `kubectl -n kube-system logs -l component=kube-controller-manager`)")

// Watcher follows what a node may read of the cluster's Nodes with its own
// credentials: its own Node, read directly (the Node authorizer allows a
// node its own Node, listed with fieldSelector metadata.name=NAME), and
// the other nodes from the directory.
type Watcher struct {
	name string
	log  *slog.Logger

	self, dir       informers.SharedInformerFactory
	selfInf, dirInf cache.SharedIndexInformer
	nodes           corelisters.NodeLister
	cms             corelisters.ConfigMapLister

	mu        sync.Mutex
	dirErr    error             // the directory's last list/watch error
	decodedCM *corev1.ConfigMap // the object decoded last (the informer replaces it on change)
	decoded   []*corev1.Node
}

// NewWatcher makes a Watcher for node name; onChange is called (from the
// informers' goroutines) whenever its Node or the directory changes.
func NewWatcher(client kubernetes.Interface, name string, log *slog.Logger, onChange func()) (*Watcher, error) {
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{name: name, log: log}
	byName := func(n string) informers.SharedInformerOption {
		return informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", n).String()
		})
	}
	w.self = informers.NewSharedInformerFactoryWithOptions(client, 0, byName(name))
	w.dir = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(Namespace), byName(Name))
	nodes, cms := w.self.Core().V1().Nodes(), w.dir.Core().V1().ConfigMaps()
	w.selfInf, w.dirInf = nodes.Informer(), cms.Informer()
	w.nodes, w.cms = nodes.Lister(), cms.Lister()
	if err := w.dirInf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		w.mu.Lock()
		w.dirErr = err
		w.mu.Unlock()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}); err != nil {
		return nil, err
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	}
	for _, inf := range []cache.SharedIndexInformer{w.selfInf, w.dirInf} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Start starts the informers.
func (w *Watcher) Start(stop <-chan struct{}) {
	w.self.Start(stop)
	w.dir.Start(stop)
}

// Shutdown stops them.
func (w *Watcher) Shutdown() {
	w.self.Shutdown()
	w.dir.Shutdown()
}

// SelfSynced says the node's own Node has been read (it may not exist).
func (w *Watcher) SelfSynced() bool { return w.selfInf.HasSynced() }

// Self is the node's own Node, nil while it does not exist or is not read
// yet. It is the informer's object: do not change it.
func (w *Watcher) Self() *corev1.Node {
	n, err := w.nodes.Get(w.name)
	if err != nil {
		return nil
	}
	return n
}

// Others are the other nodes, from the directory (minimal Nodes, see
// Node; shared: do not change them). The error says why they are
// unknown: the directory is not published yet (ErrNotPublished), or
// cannot be read.
func (w *Watcher) Others() ([]*corev1.Node, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirInf.HasSynced() {
		switch {
		case w.dirErr == nil:
			return nil, fmt.Errorf("the node directory (%s) is not read yet", Where)
		case apierrors.IsForbidden(w.dirErr):
			return nil, fmt.Errorf("the node's credentials may not read the node directory (%s): %w; "+
				"the Role %s/%s allows it once init has written it (right after /readyz); if this lasts, run `kubeforge upgrade apply` on a control-plane node to write it", Where, w.dirErr, Namespace, manifests.NodeDirectoryReader)
		default:
			return nil, fmt.Errorf("cannot read the node directory (%s): %w", Where, w.dirErr)
		}
	}
	cm, err := w.cms.ConfigMaps(Namespace).Get(Name)
	if apierrors.IsNotFound(err) {
		return nil, ErrNotPublished
	}
	if err != nil {
		return nil, err
	}
	if cm != w.decodedCM {
		all, err := Decode(cm)
		if err != nil {
			w.log.Error("the node directory has entries this node cannot read", "err", err)
		}
		w.decoded, w.decodedCM = all, cm
	}
	out := make([]*corev1.Node, 0, len(w.decoded))
	for _, n := range w.decoded {
		if n.Name != w.name {
			out = append(out, n)
		}
	}
	return out, nil
}
