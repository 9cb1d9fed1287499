package nodedir

import (
	"errors"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
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

	self    informers.SharedInformerFactory
	selfInf cache.SharedIndexInformer
	nodes   corelisters.NodeLister
	dir     *ConfigMapWatcher

	mu        sync.Mutex
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
	w.self = informers.NewSharedInformerFactoryWithOptions(client, 0, byName(name))
	nodes := w.self.Core().V1().Nodes()
	w.selfInf, w.nodes = nodes.Informer(), nodes.Lister()
	if _, err := w.selfInf.AddEventHandler(changeHandler(onChange)); err != nil {
		return nil, err
	}
	dir, err := NewConfigMapWatcher(client, Namespace, Name, "the node directory", manifests.NodeDirectoryReader, onChange)
	if err != nil {
		return nil, err
	}
	w.dir = dir
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
	cm, err := w.dir.Get()
	if err != nil {
		return nil, err
	}
	if cm == nil {
		return nil, ErrNotPublished
	}
	w.mu.Lock()
	defer w.mu.Unlock()
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
