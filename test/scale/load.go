package scale

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"
)

// The labels, annotation and taint of kwok's simulated nodes (kwok's
// documentation: kwok manages the nodes that carry the annotation; the
// taint keeps real workloads off them, the pods of the run tolerate it).
const (
	KwokAnnotation = "kwok.x-k8s.io/node"
	KwokTaintKey   = "kwok.x-k8s.io/node"
	KwokNodeLabel  = "type"
	KwokNodeValue  = "kwok"
)

// KwokPodSpec is the spec of a pod meant for kwok's nodes: it selects
// them, tolerates their taint and is never pulled or run for real.
func KwokPodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		NodeSelector:                  map[string]string{KwokNodeLabel: KwokNodeValue},
		Tolerations:                   []corev1.Toleration{{Key: KwokTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		TerminationGracePeriodSeconds: new(int64),
		AutomountServiceAccountToken:  new(bool),
		Containers: []corev1.Container{{
			Name:  "app",
			Image: "registry.invalid/scale/app:1",
		}},
	}
}

// Load is a bounded read and write load on the API server: Workers
// goroutines that for Duration run cycles of configmap create, get,
// update, list and delete, pod get and patch (of the run's pods), pod
// create and delete (every 5th cycle), and the large lists (pods of a
// namespace every 10th cycle, nodes every 20th, every pod of the cluster
// every 40th), all together at most QPS requests per second.
type Load struct {
	Client kubernetes.Interface
	// Namespace holds the load's own configmaps and pods.
	Namespace string
	// PodNamespace holds the pods it reads, patches and lists.
	PodNamespace string
	// PodNames are pods in PodNamespace to get and patch.
	PodNames []string
	Workers  int
	QPS      float64
	Duration time.Duration
	Rec      *Recorder
}

// Run runs the load and returns how long it ran.
func (l *Load) Run(ctx context.Context) time.Duration {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	var limiter flowcontrol.RateLimiter
	if l.QPS > 0 {
		limiter = flowcontrol.NewTokenBucketRateLimiter(float32(l.QPS), max(1, l.Workers))
	}
	var wg sync.WaitGroup
	for w := 0; w < l.Workers; w++ {
		wg.Go(func() { l.worker(ctx, w, limiter) })
	}
	wg.Wait()
	return time.Since(start)
}

func (l *Load) worker(ctx context.Context, w int, limiter flowcontrol.RateLimiter) {
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	// timed runs one request and records it. A request started is
	// finished (not cut short by the end of the load): its latency counts.
	timed := func(op string, f func(ctx context.Context) error) {
		start := time.Now()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
		err := f(rctx)
		cancel()
		l.Rec.Observe(op, time.Since(start), err)
	}
	// do runs one request within the load's rate unless its time is up;
	// false says the time is up.
	do := func(op string, f func(ctx context.Context) error) bool {
		if limiter != nil {
			if err := limiter.Wait(ctx); err != nil {
				return false
			}
		}
		if ctx.Err() != nil {
			return false
		}
		timed(op, f)
		return ctx.Err() == nil
	}

	// cleanup runs a delete even when the time is up: the load leaves
	// nothing behind.
	cleanup := func(op string, f func(ctx context.Context) error) {
		if limiter != nil && ctx.Err() == nil {
			_ = limiter.Wait(ctx)
		}
		timed(op, f)
	}
	cms := l.Client.CoreV1().ConfigMaps(l.Namespace)
	pods := l.Client.CoreV1().Pods(l.Namespace)
	data := map[string]string{"payload": strings.Repeat("x", 1024)}
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("load-%d-%d", w, i)
		created := false
		ok := do(Op("POST", "resource", "configmaps"), func(ctx context.Context) error {
			_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{})
			created = err == nil
			return err
		})
		var cm *corev1.ConfigMap
		ok = ok && do(Op("GET", "resource", "configmaps"), func(ctx context.Context) (err error) {
			cm, err = cms.Get(ctx, name, metav1.GetOptions{})
			return err
		})
		ok = ok && cm != nil && do(Op("PUT", "resource", "configmaps"), func(ctx context.Context) error {
			c := cm.DeepCopy()
			c.Data["cycle"] = fmt.Sprint(i)
			_, err := cms.Update(ctx, c, metav1.UpdateOptions{})
			return err
		})
		if len(l.PodNames) > 0 {
			pod := l.PodNames[rng.IntN(len(l.PodNames))]
			ok = ok && do(Op("GET", "resource", "pods"), func(ctx context.Context) error {
				_, err := l.Client.CoreV1().Pods(l.PodNamespace).Get(ctx, pod, metav1.GetOptions{})
				return err
			})
			ok = ok && do(Op("PATCH", "resource", "pods"), func(ctx context.Context) error {
				patch := fmt.Sprintf(`{"metadata":{"annotations":{"scale.kubeforge.io/touched":"%d-%d"}}}`, w, i)
				_, err := l.Client.CoreV1().Pods(l.PodNamespace).Patch(ctx, pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				return err
			})
		}
		if (i+w)%5 == 0 {
			podName := "churn-" + name
			podCreated := false
			ok = ok && do(Op("POST", "resource", "pods"), func(ctx context.Context) error {
				_, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName, Labels: map[string]string{"app": "churn"}}, Spec: KwokPodSpec()}, metav1.CreateOptions{})
				podCreated = err == nil
				return err
			})
			if podCreated {
				cleanup(Op("DELETE", "resource", "pods"), func(ctx context.Context) error {
					return pods.Delete(ctx, podName, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
				})
			}
		}
		ok = ok && do(Op("LIST", "namespace", "configmaps"), func(ctx context.Context) error {
			_, err := cms.List(ctx, metav1.ListOptions{})
			return err
		})
		if (i+w)%10 == 0 && l.PodNamespace != "" {
			ok = ok && do(Op("LIST", "namespace", "pods"), func(ctx context.Context) error {
				_, err := l.Client.CoreV1().Pods(l.PodNamespace).List(ctx, metav1.ListOptions{})
				return err
			})
		}
		if (i+w)%20 == 0 {
			ok = ok && do(Op("LIST", "cluster", "nodes"), func(ctx context.Context) error {
				_, err := l.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
				return err
			})
		}
		if (i+w)%40 == 0 {
			ok = ok && do(Op("LIST", "cluster", "pods"), func(ctx context.Context) error {
				_, err := l.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
				return err
			})
		}
		if created {
			cleanup(Op("DELETE", "resource", "configmaps"), func(ctx context.Context) error {
				return cms.Delete(ctx, name, metav1.DeleteOptions{})
			})
		}
		if !ok {
			return
		}
	}
}
