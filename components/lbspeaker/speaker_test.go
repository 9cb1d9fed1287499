package lbspeaker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/internal/lbpool"
	"github.com/kubeforge/kubeforge/internal/nodedir"
	"github.com/kubeforge/kubeforge/manifests"
)

func node(name, ip string, ready bool, speaker string) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
	if speaker != "" {
		n.Annotations[SpeakerAnnotation] = speaker
	}
	return n
}

func lbService(name string, class *string, ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: class}}
	for _, ip := range ips {
		if s.Annotations == nil {
			s.Annotations = map[string]string{AddressAnnotation: ip}
		}
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

// poolConfig is the cloud config ConfigMap with the address pool entries.
func poolConfig(entries ...string) *corev1.ConfigMap {
	var b strings.Builder
	b.WriteString("addressPool:\n")
	for _, e := range entries {
		b.WriteString("- " + e + "\n")
	}
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: manifests.CloudControllerConfigMap, Namespace: metav1.NamespaceSystem},
		Data: map[string]string{"cloud.yaml": b.String()}}
}

var testPool = lbpool.Pool{{First: netip.MustParseAddr("10.0.0.200"), Last: netip.MustParseAddr("10.0.0.210")}}

func TestDecide(t *testing.T) {
	other := "example.com/other"
	nodes := []*corev1.Node{node("n1", "10.0.0.2", true, "ready"), node("n2", "10.0.0.3", true, "ready")}
	svcs := []*corev1.Service{
		lbService("pool", nil, "10.0.0.200"),
		lbService("nodeips", nil, "10.0.0.2", "10.0.0.3"), // without a pool: nothing to announce
		lbService("classy", &other, "10.0.0.201"),         // another implementation's
		lbService("foreign", nil, "10.0.0.202"),           // set by something else: no annotation
		lbService("gateway", nil, "10.0.0.1"),             // annotated, but outside the pool
	}
	svcs[3].Annotations = nil
	p1, p2 := Decide("n1", nodes, svcs, testPool), Decide("n2", nodes, svcs, testPool)
	if p1.Total != 1 || p2.Total != 1 {
		t.Fatalf("totals %d, %d; want 1 (only the pool address)", p1.Total, p2.Total)
	}
	gw := netip.MustParseAddr("10.0.0.1")
	if p1.Refused[gw] == nil || p2.Refused[gw] == nil || p1.Mine[gw] != nil || p2.Mine[gw] != nil || len(p1.Refused) != 1 {
		t.Errorf("the address outside the pool: refused %v / %v, mine %v / %v; want refused by both, announced by none",
			p1.Refused, p2.Refused, p1.Mine, p2.Mine)
	}
	if p := Decide("n1", nodes, svcs, nil); len(p.Mine)+len(p.Orphaned) != 0 || len(p.Refused) != 2 {
		t.Errorf("without a pool: mine %v, orphaned %v, refused %v; want every address refused", p.Mine, p.Orphaned, p.Refused)
	}
	vip := netip.MustParseAddr("10.0.0.200")
	if (p1.Mine[vip] == nil) == (p2.Mine[vip] == nil) {
		t.Fatalf("exactly one node must announce %s: n1 %v, n2 %v", vip, p1.Mine, p2.Mine)
	}
	holder, rest := "n1", "n2"
	if p2.Mine[vip] != nil {
		holder, rest = "n2", "n1"
	}
	// The holder withdraws (its speaker stopped): the other takes over.
	for _, n := range nodes {
		if n.Name == holder {
			n.Annotations[SpeakerAnnotation] = "stopped"
		}
	}
	if p := Decide(rest, nodes, svcs, testPool); p.Mine[vip] == nil {
		t.Errorf("after %s stopped, %s does not announce %s", holder, rest, vip)
	}
	if p := Decide(holder, nodes, svcs, testPool); len(p.Mine) != 0 {
		t.Errorf("stopped %s still announces %v", holder, p.Mine)
	}
	// Nobody eligible: the address is orphaned, nobody announces.
	for _, n := range nodes {
		n.Status.Conditions[0].Status = corev1.ConditionFalse
	}
	if p := Decide(rest, nodes, svcs, testPool); len(p.Mine) != 0 || p.Orphaned[vip] == nil {
		t.Errorf("with no Ready node: mine %v, orphaned %v", p.Mine, p.Orphaned)
	}
}

type fakeAnnouncer struct {
	mu   sync.Mutex
	cur  []netip.Addr
	done bool
}

func (f *fakeAnnouncer) Set(a []netip.Addr) map[netip.Addr]error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur = slices.Clone(a)
	return nil
}
func (f *fakeAnnouncer) Close() { f.mu.Lock(); f.done = true; f.cur = nil; f.mu.Unlock() }
func (f *fakeAnnouncer) get() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cur)
}

type nopHealth struct{}

func (nopHealth) OK(string, ...any)   {}
func (nopHealth) Warn(string, ...any) {}

// Two speakers on a fake API: exactly one announces the address; when its
// speaker stops, the other takes the address over.
func TestSpeakersFailover(t *testing.T) {
	client := fake.NewClientset(node("n1", "10.0.0.2", true, ""), node("n2", "10.0.0.3", true, ""),
		lbService("web", nil, "10.0.0.200"), poolConfig("10.0.0.200/29"))
	vip := netip.MustParseAddr("10.0.0.200")
	ann := map[string]*fakeAnnouncer{"n1": {}, "n2": {}}
	publish(t, client)
	cancels := map[string]context.CancelFunc{}
	done := map[string]chan error{}
	for _, name := range []string{"n1", "n2"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[name], done[name] = cancel, make(chan error, 1)
		go func() {
			done[name] <- Run(ctx, Options{Client: client, NodeName: name, Health: nopHealth{}, Announce: ann[name], Resync: 50 * time.Millisecond})
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	holders := func() []string {
		var h []string
		for _, name := range []string{"n1", "n2"} {
			if slices.Contains(ann[name].get(), vip) {
				h = append(h, name)
			}
		}
		return h
	}
	waitFor := func(what string, ok func([]string) bool) []string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			h := holders()
			if ok(h) {
				return h
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: holders %v", what, h)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	h := waitFor("one holder", func(h []string) bool { return len(h) == 1 })
	// Stable: still exactly that one a little later.
	time.Sleep(200 * time.Millisecond)
	if h2 := holders(); fmt.Sprint(h2) != fmt.Sprint(h) {
		t.Fatalf("holders changed from %v to %v without a cause", h, h2)
	}
	old := h[0]
	cancels[old]()
	if err := <-done[old]; err != nil {
		t.Fatalf("speaker %s: %v", old, err)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), old, metav1.GetOptions{})
	if err != nil || n.Annotations[SpeakerAnnotation] != "stopped" {
		t.Fatalf("stopped speaker's node annotation: %v, %v", n.Annotations, err)
	}
	waitFor("takeover", func(h []string) bool { return len(h) == 1 && h[0] != old })
}

type recHealth struct {
	mu   sync.Mutex
	warn string
}

func (r *recHealth) OK(string, ...any) {}
func (r *recHealth) Warn(f string, a ...any) {
	r.mu.Lock()
	r.warn = fmt.Sprintf(f, a...)
	r.mu.Unlock()
}
func (r *recHealth) get() string { r.mu.Lock(); defer r.mu.Unlock(); return r.warn }

// A speaker whose Node does not exist (or cannot be annotated) says so in
// its health, and keeps trying until its Node appears.
func TestSpeakerWaitsForItsNode(t *testing.T) {
	client := fake.NewClientset()
	h := &recHealth{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Client: client, NodeName: "late", Health: h, Announce: &fakeAnnouncer{}, Resync: 50 * time.Millisecond})
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(h.get(), "cannot mark Node late") {
		if time.Now().After(deadline) {
			t.Fatalf("health after 15 s: %q", h.get())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := client.CoreV1().Nodes().Create(ctx, node("late", "10.0.0.9", true, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		n, err := client.CoreV1().Nodes().Get(ctx, "late", metav1.GetOptions{})
		if err == nil && n.Annotations[SpeakerAnnotation] == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the speaker did not mark its Node once it appeared: %v, %v", n, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// publish runs the node directory's publisher on client until the test ends.
func publish(t *testing.T, client *fake.Clientset) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- nodedir.Publish(ctx, client, nodedir.PublishOptions{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Debounce: 20 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// runSpeaker runs a speaker for node name on client; stop ends it and
// checks that Run returned no error.
func runSpeaker(t *testing.T, client *fake.Clientset, name string) (h *recHealth, ann *fakeAnnouncer, stop func()) {
	h, ann = &recHealth{}, &fakeAnnouncer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Client: client, NodeName: name, Health: h, Announce: ann, Resync: 50 * time.Millisecond})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return h, ann, stop
}

// eventually polls cond every 20 ms and fails the test with msg() once
// deadline has passed.
func eventually(t *testing.T, deadline time.Time, cond func() bool, msg func() string) {
	t.Helper()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Until the node directory is there, a speaker announces nothing and says
// why; then it announces.
func TestSpeakerWithoutTheDirectory(t *testing.T) {
	client := fake.NewClientset(node("n1", "10.0.0.2", true, ""), lbService("web", nil, "10.0.0.200"), poolConfig("10.0.0.200-10.0.0.201"))
	h, ann, stop := runSpeaker(t, client, "n1")
	deadline := time.Now().Add(10 * time.Second)
	eventually(t, deadline, func() bool {
		return strings.Contains(h.get(), "no kube-system/kubeforge-nodes yet: the controller-manager publishes it")
	}, func() string { return fmt.Sprintf("health after 10 s: %q", h.get()) })
	if got := ann.get(); len(got) != 0 {
		t.Errorf("announcing %v without knowing the other nodes", got)
	}
	publish(t, client)
	vip := netip.MustParseAddr("10.0.0.200")
	eventually(t, deadline, func() bool { return slices.Contains(ann.get(), vip) }, func() string {
		return fmt.Sprintf("not announcing %s once the directory is there: %v (health %q)", vip, ann.get(), h.get())
	})
	stop()
}

// A speaker announces an annotated address only while it is in the pool:
// outside it (a pool changed, or a Service's status written by hand with
// the annotation), it says so and announces nothing; once the pool holds
// the address, it announces it.
func TestSpeakerOnlyAnnouncesThePool(t *testing.T) {
	client := fake.NewClientset(node("n1", "10.0.0.2", true, ""), lbService("web", nil, "10.0.0.1"), poolConfig("10.0.0.200/29"))
	publish(t, client)
	h, ann, stop := runSpeaker(t, client, "n1")
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	eventually(t, deadline, func() bool {
		return strings.Contains(h.get(), "not announcing 10.0.0.1 (default/web): not in the address pool (10.0.0.200-10.0.0.207, from kube-system/kubeforge-cloud-config)")
	}, func() string { return fmt.Sprintf("health after 10 s: %q", h.get()) })
	if got := ann.get(); len(got) != 0 {
		t.Errorf("announcing %v, outside the pool", got)
	}
	var evs *corev1.EventList
	var err error
	eventually(t, deadline, func() bool {
		evs, err = client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		return err != nil || len(evs.Items) > 0
	}, func() string { return "no event on the Service" })
	if err != nil || evs.Items[0].Reason != ReasonNotInPool {
		t.Errorf("no %s event on the Service: %v, %v", ReasonNotInPool, evs, err)
	}
	if _, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Update(ctx, poolConfig("10.0.0.1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("10.0.0.1")
	eventually(t, deadline, func() bool { return slices.Contains(ann.get(), vip) }, func() string {
		return fmt.Sprintf("not announcing %s once the pool holds it: %v (health %q)", vip, ann.get(), h.get())
	})
	// The pool loses it again (the ConfigMap is deleted: no cloud controller): withdrawn.
	if err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Delete(ctx, manifests.CloudControllerConfigMap, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, deadline, func() bool { return len(ann.get()) == 0 }, func() string {
		return fmt.Sprintf("still announcing %v after the pool went away (health %q)", ann.get(), h.get())
	})
	if !strings.Contains(h.get(), "there is none") {
		t.Errorf("health without a pool: %q", h.get())
	}
	stop()
}
