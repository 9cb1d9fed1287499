package nodedir

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fullNode is a Node as a kubelet reports it, with much the directory
// must not carry.
func fullNode(name, ip, cidr string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"kubernetes.io/hostname": name, "secret-label": "x", "node-role.kubernetes.io/control-plane": ""},
			Annotations: map[string]string{AnnotationBackend: "auto", AnnotationVTEPMAC: "02:00:00:00:00:01", SpeakerAnnotation: "ready",
				"node.alpha.kubernetes.io/ttl": "0", "other.example.com/private": "do-not-copy"}},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}, ProviderID: "kubeforge://" + name,
			Taints: []corev1.Taint{{Key: "taint-key", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name + ".hostname"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"}},
			Capacity:        corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("24Gi")},
			Images:          []corev1.ContainerImage{{Names: []string{"registry.example/secret-image:v1"}, SizeBytes: 1 << 20}},
			NodeInfo:        corev1.NodeSystemInfo{KernelVersion: "6.1.0-secret", OSImage: "Debian"},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	n := fullNode("w1", "10.0.0.2", "10.244.1.0/24")
	n.Labels[corev1.LabelNodeExcludeBalancers] = "true"
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "192.0.2.7"})
	now := metav1.Now()
	n.DeletionTimestamp = &now
	cm := &corev1.ConfigMap{Data: Data([]*corev1.Node{n})}
	got, err := Decode(cm)
	if err != nil || len(got) != 1 {
		t.Fatalf("Decode: %v, %v", got, err)
	}
	g := got[0]
	want := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1",
		Annotations: map[string]string{AnnotationBackend: "auto", AnnotationVTEPMAC: "02:00:00:00:00:01", SpeakerAnnotation: "ready"},
		Labels:      map[string]string{corev1.LabelNodeExcludeBalancers: "true"}, DeletionTimestamp: &metav1.Time{}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}, {Type: corev1.NodeExternalIP, Address: "192.0.2.7"}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("decoded node:\n got %#v\nwant %#v", g, want)
	}
	// The projection of the rebuilt Node is the projection of the Node.
	if Encode(Project(g)) != Encode(Project(n)) {
		t.Errorf("projection changes on a round trip:\n%s\n%s", Encode(Project(g)), Encode(Project(n)))
	}
	// Not Ready, no pod CIDR list (only the old single field), no annotations.
	m := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "m"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.9.0/24"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}}}
	got, _ = Decode(&corev1.ConfigMap{Data: Data([]*corev1.Node{m})})
	if g := got[0]; g.Spec.PodCIDRs[0] != "10.244.9.0/24" || g.Status.Conditions[0].Status != corev1.ConditionFalse || g.DeletionTimestamp != nil || g.Annotations != nil {
		t.Errorf("decoded node: %#v", g)
	}
}

// Nothing outside the projection reaches the ConfigMap.
func TestProjectionLeavesTheRestOut(t *testing.T) {
	data := Data([]*corev1.Node{fullNode("w1", "10.0.0.2", "10.244.1.0/24")})
	s := data["w1"]
	for _, leak := range []string{"secret-label", "hostname", "control-plane", "do-not-copy", "ttl", "secret-image", "6.1.0-secret",
		"Debian", "24Gi", "taint-key", "kubeforge://", "KubeletReady", "MemoryPressure", "10250", "Hostname"} {
		if strings.Contains(s, leak) {
			t.Errorf("the entry carries %q: %s", leak, s)
		}
	}
	for _, want := range []string{"10.0.0.2", "10.244.1.0/24", `"ready":true`, "02:00:00:00:00:01", `"backend":"auto"`, `"speaker":"ready"`} {
		if !strings.Contains(s, want) {
			t.Errorf("the entry lacks %q: %s", want, s)
		}
	}
}

// An entry that does not decode is left out (and named); the others stay.
func TestDecodeSkipsABadEntry(t *testing.T) {
	data := Data([]*corev1.Node{fullNode("a", "10.0.0.2", "10.244.1.0/24"), fullNode("c", "10.0.0.4", "10.244.3.0/24")})
	data["b"] = `{"addresses": [`
	data["d"] = `{"ready": true} trailing`
	got, err := Decode(&corev1.ConfigMap{Data: data})
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "c" {
		t.Errorf("decoded %d nodes, want a and c: %v", len(got), got)
	}
	if err == nil || !strings.Contains(err.Error(), `entry "b" of ConfigMap kube-system/kubeforge-nodes`) || !strings.Contains(err.Error(), `entry "d"`) {
		t.Errorf("error: %v", err)
	}
	// The Watcher logs it and serves the good entries.
	var logs bytes.Buffer
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace}, Data: data})
	w := startWatcher(t, client, "c", slog.New(slog.NewTextHandler(&logs, nil)), func() {})
	others := waitOthers(t, w, 1)
	if others[0].Name != "a" {
		t.Errorf("others: %v", others)
	}
	if !strings.Contains(logs.String(), `entry \"b\"`) {
		t.Errorf("the bad entry was not logged:\n%s", logs.String())
	}
}

// The size of the directory of 1000 nodes, with every field set as long
// as it gets (IPv4 and IPv6 addresses and pod CIDRs, all annotations).
func TestSizeAt1000Nodes(t *testing.T) {
	var nodes []*corev1.Node
	for i := range 1000 {
		n := fullNode(fmt.Sprintf("kwok-node-%04d", i), fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256), fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256))
		n.Spec.PodCIDRs = append(n.Spec.PodCIDRs, fmt.Sprintf("fd00:10:244:%x::/64", i))
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("fd00:10:0:%x::2", i)})
		n.Labels[corev1.LabelNodeExcludeBalancers] = "true"
		nodes = append(nodes, n)
	}
	size := 0
	for k, v := range Data(nodes) {
		size += len(k) + len(v)
	}
	perNode := size / 1000
	t.Logf("1000 nodes: %d bytes (%d per node); 1 MiB holds %d such nodes", size, perNode, (1<<20)/perNode)
	if perNode > 250 {
		t.Errorf("%d bytes per node: the package comment's ~4000 dual-stack nodes per 1 MiB no longer holds", perNode)
	}
}

func startWatcher(t *testing.T, client *fake.Clientset, name string, log *slog.Logger, onChange func()) *Watcher {
	t.Helper()
	w, err := NewWatcher(client, name, log, onChange)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	w.Start(stop)
	t.Cleanup(func() { close(stop); w.Shutdown() })
	return w
}

func waitOthers(t *testing.T, w *Watcher, n int) []*corev1.Node {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		others, err := w.Others()
		if err == nil && len(others) == n {
			return others
		}
		if time.Now().After(deadline) {
			var names []string
			for _, o := range others {
				names = append(names, o.Name)
			}
			t.Fatalf("others after 10 s: %d %v, %v; want %d", len(others), names, err, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The publisher writes the directory once per burst, not again when only
// fields outside the projection change, and again when it is deleted or
// edited; a Watcher sees the other nodes, and its own Node in full.
func TestPublishAndWatch(t *testing.T) {
	client := fake.NewClientset(fullNode("cp1", "10.0.0.1", "10.244.0.0/24"))
	var writes atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Publish(ctx, client, PublishOptions{Log: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)),
			Debounce: 100 * time.Millisecond, RetryDelay: 50 * time.Millisecond, OnWrite: func() { writes.Add(1) }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	cms := client.CoreV1().ConfigMaps(Namespace)
	waitData := func(what string, ok func(map[string]string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cm, err := cms.Get(ctx, Name, metav1.GetOptions{})
			if err == nil && ok(cm.Data) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v %v", what, cm, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitData("created", func(d map[string]string) bool { return len(d) == 1 })

	var changed atomic.Int32
	w := startWatcher(t, client, "w7", nil, func() { changed.Add(1) })

	// A burst of 200 nodes registering: a write per debounce period at most.
	before := writes.Load()
	burst := time.Now()
	for i := range 200 {
		if _, err := client.CoreV1().Nodes().Create(ctx, fullNode(fmt.Sprintf("w%d", i), fmt.Sprintf("10.0.1.%d", i), fmt.Sprintf("10.244.%d.0/24", i+1)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(burst)
	waitData("200 more nodes", func(d map[string]string) bool { return len(d) == 201 })
	time.Sleep(300 * time.Millisecond)
	n := writes.Load() - before
	if limit := int32(took/(100*time.Millisecond)) + 2; n > limit {
		t.Errorf("%d writes for a burst of 200 node registrations in %v, want at most %d", n, took, limit)
	}
	t.Logf("%d write(s) for a burst of 200 node registrations in %v", n, took.Round(time.Millisecond))

	// The watcher: its own Node in full, the 200 others from the directory.
	others := waitOthers(t, w, 200)
	for _, o := range others {
		if o.Name == "w7" {
			t.Errorf("the node itself is among the others")
		}
		if o.Labels["secret-label"] != "" || len(o.Status.Images) > 0 {
			t.Errorf("a directory node carries more than the projection: %v", o)
		}
	}
	if self := w.Self(); self == nil || self.Status.NodeInfo.KernelVersion != "6.1.0-secret" {
		t.Errorf("the node's own Node: %v", self)
	}

	// A change outside the projection (a heartbeat, a label): no write.
	before = writes.Load()
	node, _ := client.CoreV1().Nodes().Get(ctx, "w3", metav1.GetOptions{})
	node.Labels["another"] = "label"
	node.Status.Conditions[1].LastHeartbeatTime = metav1.Now()
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if n := writes.Load() - before; n != 0 {
		t.Errorf("%d writes after a change outside the projection", n)
	}
	// A change inside it: written.
	node, _ = client.CoreV1().Nodes().Get(ctx, "w3", metav1.GetOptions{})
	node.Annotations[SpeakerAnnotation] = "stopped"
	if _, err := client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitData("speaker stopped", func(d map[string]string) bool { return strings.Contains(d["w3"], `"stopped"`) })
	// A node leaves.
	if err := client.CoreV1().Nodes().Delete(ctx, "w4", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitData("w4 gone", func(d map[string]string) bool { _, ok := d["w4"]; return !ok && len(d) == 200 })
	// Edited by hand: put back.
	cm, _ := cms.Get(ctx, Name, metav1.GetOptions{})
	cm.Data["w5"] = "garbage"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitData("edit undone", func(d map[string]string) bool { return strings.HasPrefix(d["w5"], "{") })
	// Deleted: created again; the watcher says it is missing meanwhile.
	if err := cms.Delete(ctx, Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitData("created again", func(d map[string]string) bool { return len(d) == 200 })
	waitOthers(t, w, 199)
	if changed.Load() == 0 {
		t.Errorf("the watcher never reported a change")
	}
}

// A Watcher before the directory exists says so, in words for `node status`.
func TestWatcherBeforeThePublisher(t *testing.T) {
	client := fake.NewClientset(fullNode("w1", "10.0.0.2", "10.244.1.0/24"))
	w := startWatcher(t, client, "w1", nil, func() {})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := w.Others()
		if err == ErrNotPublished {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Others: %v, want ErrNotPublished", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(ErrNotPublished.Error(), "no kube-system/kubeforge-nodes yet: the controller-manager publishes it") {
		t.Errorf("message: %v", ErrNotPublished)
	}
	if !w.SelfSynced() || w.Self() == nil {
		t.Errorf("the node's own Node is not read")
	}
}

// A write refused (the RBAC not there yet, as during init) is retried and
// logged, and the directory comes as soon as it is allowed.
func TestPublishRetriesWhenRefused(t *testing.T) {
	client := fake.NewClientset(fullNode("cp1", "10.0.0.1", "10.244.0.0/24"))
	var refusals atomic.Int32
	client.PrependReactor("create", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if refusals.Add(1) <= 3 {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, Name, fmt.Errorf("RBAC: not yet"))
		}
		return false, nil, nil
	})
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Publish(ctx, client, PublishOptions{Log: slog.New(slog.NewTextHandler(&logs, nil)), Debounce: 10 * time.Millisecond, RetryDelay: 20 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if cm, err := client.CoreV1().ConfigMaps(Namespace).Get(ctx, Name, metav1.GetOptions{}); err == nil && len(cm.Data) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no directory after 10 s; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "cannot write the node directory") || !strings.Contains(logs.String(), "RBAC: not yet") {
		t.Errorf("the refusals were not logged:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A node that may not read the directory (a cluster without its Role) is
// told which Role and what to run.
func TestWatcherRefused(t *testing.T) {
	client := fake.NewClientset(fullNode("w1", "10.0.0.2", "10.244.1.0/24"))
	client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "", fmt.Errorf("RBAC: no"))
	})
	w := startWatcher(t, client, "w1", slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := w.Others()
		if err != nil && strings.Contains(err.Error(), "may not read the node directory") {
			if !strings.Contains(err.Error(), "kube-system/kubeforge:node-directory-reader") || !strings.Contains(err.Error(), "kubeforge upgrade apply") {
				t.Errorf("message: %v", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Others: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
