package cloudcontroller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

func svc(name string, created int, ports ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name),
		CreationTimestamp: metav1.NewTime(time.Unix(int64(created), 0))},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: p, Protocol: corev1.ProtocolTCP})
	}
	return s
}

func udp(s *corev1.Service) *corev1.Service {
	for i := range s.Spec.Ports {
		s.Spec.Ports[i].Protocol = corev1.ProtocolUDP
	}
	return s
}

func workers() []*corev1.Node {
	mk := func(name, ip string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}}}
	}
	return []*corev1.Node{mk("w2", "10.0.0.3"), mk("w1", "10.0.0.2")}
}

// cloud returns a provider over a fake API holding objs, its informers
// synced.
func cloud(t *testing.T, cfg Config, objs ...*corev1.Service) (*Cloud, *fake.Clientset) {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset()
	for _, o := range objs {
		if _, err := client.CoreV1().Services(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.client = client
	f := informers.NewSharedInformerFactory(client, 0)
	c.SetInformers(f)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return c, client
}

func ingress(st *corev1.LoadBalancerStatus) string {
	var s []string
	for _, in := range st.Ingress {
		s = append(s, in.IP)
	}
	return strings.Join(s, ",")
}

func TestNoPoolNodeAddresses(t *testing.T) {
	older := svc("older", 1, 80)
	withNodePort := svc("np", 1, 8000)
	withNodePort.Spec.Type = corev1.ServiceTypeNodePort
	withNodePort.Spec.Ports[0].NodePort = 30080
	// 8472 (VXLAN) is reserved even when the cloud config (an older one)
	// does not list it.
	c, _ := cloud(t, Config{ReservedPorts: []int32{6443, 10250}}, older, withNodePort)
	ctx := context.Background()
	st, err := c.EnsureLoadBalancer(ctx, "kubernetes", older, workers())
	if err != nil || ingress(st) != "10.0.0.2,10.0.0.3" {
		t.Fatalf("no pool: %v, %v; want the nodes' InternalIPs 10.0.0.2,10.0.0.3", st, err)
	}
	for _, tc := range []struct {
		s    *corev1.Service
		want string
	}{
		{svc("api", 2, 6443), "port 6443/TCP: the nodes use it themselves"},
		// The pod network's VXLAN port, whatever the protocol.
		{udp(svc("vxlan", 2, 8472)), "port 8472/UDP: the nodes use it themselves"},
		{svc("clash", 2, 8080, 80), "port 80/TCP is already taken on the nodes' addresses by LoadBalancer Service default/older"},
		{svc("nodeport", 2, 30080), "port 30080/TCP is the NodePort of Service default/np on every node"},
	} {
		if _, err := c.EnsureLoadBalancer(ctx, "kubernetes", tc.s, workers()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.s.Name, err, tc.want)
		}
	}
	withIP := svc("withip", 2, 81)
	withIP.Spec.LoadBalancerIP = "10.0.0.50"
	if _, err := c.EnsureLoadBalancer(ctx, "kubernetes", withIP, workers()); err == nil || !strings.Contains(err.Error(), "no address pool is configured") {
		t.Errorf("loadBalancerIP without a pool: %v", err)
	}
	// A node leaves: the status follows.
	if err := c.UpdateLoadBalancer(ctx, "kubernetes", withStatus(older, st), workers()[:1]); err != nil {
		t.Fatal(err)
	}
	got, err := c.client.CoreV1().Services("default").Get(ctx, "older", metav1.GetOptions{})
	if err != nil || ingress(&got.Status.LoadBalancer) != "10.0.0.3" {
		t.Errorf("after UpdateLoadBalancer with w2 only: %v, %v", got.Status.LoadBalancer, err)
	}
}

func withStatus(s *corev1.Service, st *corev1.LoadBalancerStatus) *corev1.Service {
	s = s.DeepCopy()
	s.Status.LoadBalancer = *st
	return s
}

func TestPoolAllocation(t *testing.T) {
	other := "example.com/other"
	taken := svc("taken", 1, 80)
	taken.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.0.200"}}
	classy := svc("classy", 1, 80)
	classy.Spec.LoadBalancerClass = &other
	classy.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.0.201"}}
	a, b, d := svc("a", 2, 80), svc("b", 3, 80), svc("d", 4, 80)
	c, client := cloud(t, Config{AddressPool: []string{"10.0.0.200-10.0.0.202"}}, taken, classy, a, b, d)
	ctx := context.Background()

	st, err := c.EnsureLoadBalancer(ctx, "kubernetes", a, workers())
	// .200 is taken by a Service's status; .201's holder is of another
	// class, so it counts as free for us.
	if err != nil || ingress(st) != "10.0.0.201" {
		t.Fatalf("a: %v, %v", st, err)
	}
	got, _ := client.CoreV1().Services("default").Get(ctx, "a", metav1.GetOptions{})
	if got.Annotations[AddressAnnotation] != "10.0.0.201" {
		t.Errorf("a's annotations: %v", got.Annotations)
	}
	// Ensured again (a resync), a keeps its address.
	if st2, err := c.EnsureLoadBalancer(ctx, "kubernetes", withStatus(a, st), workers()); err != nil || ingress(st2) != "10.0.0.201" {
		t.Fatalf("a again: %v, %v", st2, err)
	}
	// b gets the last; the status of a is not written yet, but the
	// allocation is remembered.
	if st, err := c.EnsureLoadBalancer(ctx, "kubernetes", b, workers()); err != nil || ingress(st) != "10.0.0.202" {
		t.Fatalf("b: %v, %v", st, err)
	}
	// d: exhausted, a clear error.
	if _, err := c.EnsureLoadBalancer(ctx, "kubernetes", d, workers()); err == nil || !strings.Contains(err.Error(), "the address pool is exhausted") {
		t.Fatalf("d: %v, want exhausted", err)
	}
	// Deleting b frees its address for d.
	if err := c.EnsureLoadBalancerDeleted(ctx, "kubernetes", b); err != nil {
		t.Fatal(err)
	}
	if st, err := c.EnsureLoadBalancer(ctx, "kubernetes", d, workers()); err != nil || ingress(st) != "10.0.0.202" {
		t.Fatalf("d after b's deletion: %v, %v", st, err)
	}
	// loadBalancerIP: outside the pool, or taken, is refused by name.
	e := svc("e", 5, 80)
	e.Spec.LoadBalancerIP = "10.0.0.9"
	if _, err := c.EnsureLoadBalancer(ctx, "kubernetes", e, workers()); err == nil || !strings.Contains(err.Error(), "spec.loadBalancerIP 10.0.0.9: not in the address pool") {
		t.Errorf("e outside: %v", err)
	}
	e.Spec.LoadBalancerIP = "10.0.0.200"
	if _, err := c.EnsureLoadBalancer(ctx, "kubernetes", e, workers()); err == nil || !strings.Contains(err.Error(), "already used by another Service (default/taken)") {
		t.Errorf("e taken: %v", err)
	}
}

func TestInstanceMetadata(t *testing.T) {
	c, _ := New(Config{})
	n := workers()[0]
	n.Annotations = map[string]string{ProvidedNodeIPAnnotation: "10.0.0.9"}
	md, err := c.InstanceMetadata(context.Background(), n)
	if err != nil || md.ProviderID != "kubeforge://w2" || len(md.NodeAddresses) != 2 ||
		md.NodeAddresses[0] != (corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "10.0.0.9"}) ||
		md.NodeAddresses[1] != (corev1.NodeAddress{Type: corev1.NodeHostName, Address: "w2"}) {
		t.Errorf("InstanceMetadata = %+v, %v", md, err)
	}
}

// The addon's ConfigMap is a cloud config this provider reads, and its
// Deployment runs this component with a provider the registry knows.
func TestAddonCloudConfig(t *testing.T) {
	cfg := config.New()
	cfg.ThisNode.API.Port = 6443
	cfg.Kubeforge.Addons.CloudController.AddressPool = []string{"10.0.0.240/30"}
	objs, err := manifests.CloudControllerObjects(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, o := range objs {
		cm, ok := o.(*corev1.ConfigMap)
		if !ok {
			continue
		}
		found = true
		got, err := ParseConfig(strings.NewReader(cm.Data["cloud.yaml"]))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got.AddressPool, ",") != "10.0.0.240/30" || len(got.ReservedPorts) == 0 {
			t.Errorf("cloud config read back: %+v", got)
		}
		cl, err := New(got)
		if err != nil || cl.pool.String() != "10.0.0.240-10.0.0.243" {
			t.Errorf("provider from the addon's config: %v, %v", cl, err)
		}
	}
	if !found {
		t.Fatal("no cloud config ConfigMap in the addon")
	}
	if _, err := ParseConfig(strings.NewReader("adressPool: [10.0.0.1]\n")); err == nil {
		t.Error("a misspelt field is accepted")
	}
}
