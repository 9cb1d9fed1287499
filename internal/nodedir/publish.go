package nodedir

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// FieldManager names the publisher in the ConfigMap's managed fields.
const FieldManager = "kubeforge-node-directory"

// PublishOptions configure Publish.
type PublishOptions struct {
	Log *slog.Logger
	// Debounce is how long the publisher waits after a change for more
	// before it writes (default 200 ms): a burst of Node changes (a
	// thousand nodes registering) makes one write per Debounce, not one
	// per change.
	Debounce time.Duration
	// RetryDelay is the first delay after a failed write (default 500 ms,
	// doubled up to 10 s: at init the controller-manager starts before
	// its RBAC exists).
	RetryDelay time.Duration
	// OnWrite, when set, is called after each write (tests count them).
	OnWrite func()
}

// Publish keeps the directory equal to the cluster's Nodes until ctx ends.
// Every control-plane node runs one (inside kube-controller-manager, with
// its credentials): they compute the same content from their Nodes
// informers and write only when the ConfigMap differs from it, so a second
// publisher finds the content written and does nothing; a write that
// races with another publisher's gets a conflict and is compared again.
// The ConfigMap is watched too: deleted or edited, it is written again.
func Publish(ctx context.Context, client kubernetes.Interface, o PublishOptions) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 500 * time.Millisecond
	}
	// The cache keeps only the projection: a thousand full Nodes (images,
	// capacity, conditions) would cost the controller-manager megabytes.
	nf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			m := Node(n.Name, Project(n))
			m.ResourceVersion = n.ResourceVersion
			return m, nil
		}
		return obj, nil
	}))
	nodes := nf.Core().V1().Nodes()
	cf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", Name).String()
		}))
	cms := cf.Core().V1().ConfigMaps()
	kick := NewKick()
	poke, h := kick.Poke, kick.Handler()
	if _, err := nodes.Informer().AddEventHandler(h); err != nil {
		return err
	}
	if _, err := cms.Informer().AddEventHandler(h); err != nil {
		return err
	}
	nf.Start(ctx.Done())
	cf.Start(ctx.Done())
	defer nf.Shutdown()
	defer cf.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced, cms.Informer().HasSynced) {
		return nil // ctx ended
	}
	p := &publisher{client: client, log: o.Log, nodes: nodes.Lister(), cms: cms.Lister()}
	delay := o.RetryDelay
	poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
		// Gather the rest of the burst.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.Debounce):
		}
		select {
		case <-kick:
		default:
		}
		wrote, err := p.publish(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log.Error("cannot write the node directory: the nodes' pod network agents and LoadBalancer speakers do not see the latest Nodes; retrying",
				"configmap", Namespace+"/"+Name, "retry-in", delay, "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
			poke()
			continue
		}
		delay = o.RetryDelay
		if wrote && o.OnWrite != nil {
			o.OnWrite()
		}
	}
}

type publisher struct {
	client kubernetes.Interface
	log    *slog.Logger
	nodes  corelisters.NodeLister
	cms    corelisters.ConfigMapLister
}

// publish writes the directory when it differs from the Nodes: it reports
// whether it wrote.
func (p *publisher) publish(ctx context.Context) (bool, error) {
	all, err := p.nodes.List(labels.Everything())
	if err != nil {
		return false, err
	}
	want := Data(all)
	size := 0
	for k, v := range want {
		size += len(k) + len(v)
	}
	api := p.client.CoreV1().ConfigMaps(Namespace)
	cur, err := p.cms.ConfigMaps(Namespace).Get(Name)
	if apierrors.IsNotFound(err) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "kubeforge"}}, Data: want}
		_, err := api.Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager})
		if err == nil {
			p.log.Info("created the node directory", "configmap", Namespace+"/"+Name, "nodes", len(want), "bytes", size)
			return true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("create %s: %w", Where, err)
		}
		cur = nil // another publisher was first: compare with its content
	} else if err != nil {
		return false, err
	}
	wrote := false
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if cur == nil {
			var err error
			if cur, err = api.Get(ctx, Name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		if maps.Equal(cur.Data, want) {
			return nil
		}
		next := cur.DeepCopy()
		next.Data = want
		_, err := api.Update(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager})
		if err == nil {
			wrote = true
		}
		cur = nil // read it again after a conflict
		return err
	})
	if err != nil {
		if apierrors.IsRequestEntityTooLargeError(err) || apierrors.IsInvalid(err) {
			err = errors.Join(err, fmt.Errorf("%d nodes make %d bytes; a ConfigMap holds at most 1 MiB", len(want), size))
		}
		return false, fmt.Errorf("update %s: %w", Where, err)
	}
	if wrote {
		p.log.Debug("updated the node directory", "nodes", len(want), "bytes", size)
	}
	return wrote, nil
}
