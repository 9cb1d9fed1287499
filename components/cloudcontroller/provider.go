package cloudcontroller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	cloudprovider "k8s.io/cloud-provider"
	servicehelper "k8s.io/cloud-provider/service/helpers"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/internal/lbpool"
	"github.com/kubeforge/kubeforge/manifests"
)

// ProviderName is the cloud provider's name (--cloud-provider) and the
// scheme of the provider IDs it gives nodes.
const ProviderName = "kubeforge"

// Config is the cloud config file (--cloud-config) the addon writes from
// KubeforgeConfiguration addons.cloudController.
type Config struct {
	// AddressPool: see config.CloudControllerAddon.
	AddressPool []string `json:"addressPool,omitempty"`
	// ReservedPorts are node ports a LoadBalancer Service without a pool
	// may not take (the Service's EXTERNAL-IPs are then the nodes' own
	// addresses, and kube-proxy would send the nodes' own traffic on
	// those ports to the Service).
	ReservedPorts []int32 `json:"reservedPorts,omitempty"`
}

// ParseConfig reads a cloud config file.
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	if r == nil {
		return c, nil
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return c, err
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("cloud config: %w", err)
	}
	if _, err := lbpool.Parse(c.AddressPool); err != nil {
		return c, fmt.Errorf("cloud config addressPool: %w", err)
	}
	return c, nil
}

// Cloud is the kubeforge cloud provider: LoadBalancer (addresses from the
// pool, or the nodes' own) and InstancesV2 (node addresses as the nodes
// report them). Everything else is a bare-metal "no".
type Cloud struct {
	pool     lbpool.Pool
	reserved []int32

	client   kubernetes.Interface
	services corelisters.ServiceLister

	mu sync.Mutex
	// allocated is what this process handed out and has not released: a
	// Service's status may not show it yet when the next one is ensured.
	allocated map[string]netip.Addr
}

// New returns the provider for cfg.
func New(cfg Config) (*Cloud, error) {
	p, err := lbpool.Parse(cfg.AddressPool)
	if err != nil {
		return nil, err
	}
	// The pod network's port is reserved whatever the cloud config says: a
	// cluster upgraded from a build whose config lacked it keeps that
	// config (upgrade changes the addon's image only).
	reserved := slices.Clone(cfg.ReservedPorts)
	if !slices.Contains(reserved, manifests.VXLANPort) {
		reserved = append(reserved, manifests.VXLANPort)
	}
	return &Cloud{pool: p, reserved: reserved, allocated: map[string]netip.Addr{}}, nil
}

var (
	_ cloudprovider.Interface    = (*Cloud)(nil)
	_ cloudprovider.InformerUser = (*Cloud)(nil)
	_ cloudprovider.LoadBalancer = (*Cloud)(nil)
	_ cloudprovider.InstancesV2  = (*Cloud)(nil)
)

// Initialize takes the client the provider patches Service status with.
func (c *Cloud) Initialize(b cloudprovider.ControllerClientBuilder, _ <-chan struct{}) {
	c.client = b.ClientOrDie("kubeforge-cloud-provider")
}

// SetInformers takes the Service lister from the controllers' shared
// informers (the service controller's own).
func (c *Cloud) SetInformers(f informers.SharedInformerFactory) {
	c.services = f.Core().V1().Services().Lister()
}

func (c *Cloud) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return c, true }
func (c *Cloud) Instances() (cloudprovider.Instances, bool)       { return nil, false }
func (c *Cloud) InstancesV2() (cloudprovider.InstancesV2, bool)   { return c, true }
func (c *Cloud) Zones() (cloudprovider.Zones, bool)               { return nil, false }
func (c *Cloud) Clusters() (cloudprovider.Clusters, bool)         { return nil, false }
func (c *Cloud) Routes() (cloudprovider.Routes, bool)             { return nil, false }
func (c *Cloud) ProviderName() string                             { return ProviderName }
func (c *Cloud) HasClusterID() bool                               { return true }

// GetLoadBalancer reports the Service's load balancer as its status says.
func (c *Cloud) GetLoadBalancer(_ context.Context, _ string, svc *corev1.Service) (*corev1.LoadBalancerStatus, bool, error) {
	st := svc.Status.LoadBalancer
	return &st, len(st.Ingress) > 0, nil
}

// GetLoadBalancerName is the framework's default name.
func (c *Cloud) GetLoadBalancerName(_ context.Context, _ string, svc *corev1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// EnsureLoadBalancer gives svc its address: one of the pool's when there
// is a pool (the speaker of the node chosen for it announces it), else the
// InternalIPs of nodes. A refusal (address outside the pool or taken,
// pool exhausted, port clash) is an error: the service controller records
// it as the Service's SyncLoadBalancerFailed event and retries.
func (c *Cloud) EnsureLoadBalancer(ctx context.Context, _ string, svc *corev1.Service, nodes []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	if len(c.pool) == 0 {
		return c.nodeAddresses(svc, nodes)
	}
	key := svc.Namespace + "/" + svc.Name
	var want, have netip.Addr
	if s := svc.Spec.LoadBalancerIP; s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("spec.loadBalancerIP %q is not an IP address", s)
		}
		want = a
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil && c.pool.Contains(a) {
			have = a
			break
		}
	}
	pool := c.familyPool(svc)
	if len(pool) == 0 {
		return nil, fmt.Errorf("the address pool (%s) has no %s address for this Service", c.pool, primaryFamily(svc))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	used, err := c.usedAddresses(key)
	if err != nil {
		return nil, err
	}
	addr, err := pool.Allocate(key, want, have, used)
	if err != nil {
		return nil, err
	}
	c.allocated[key] = addr
	if err := c.markAddress(ctx, svc, addr); err != nil {
		return nil, err
	}
	vip := corev1.LoadBalancerIPModeVIP
	return &corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: addr.String(), IPMode: &vip}}}, nil
}

// AddressAnnotation on a Service names the pool address the cloud
// controller gave it: the nodes' speakers announce only such addresses
// (not those another load-balancer implementation sets).
const AddressAnnotation = "kubeforge.io/load-balancer-address"

// markAddress sets svc's AddressAnnotation to addr.
func (c *Cloud) markAddress(ctx context.Context, svc *corev1.Service, addr netip.Addr) error {
	if c.client == nil || svc.Annotations[AddressAnnotation] == addr.String() {
		return nil
	}
	patch := []byte(`{"metadata":{"annotations":{` + strconv.Quote(AddressAnnotation) + `:` + strconv.Quote(addr.String()) + `}}}`)
	if _, err := c.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotate the Service with its address %s: %w", addr, err)
	}
	return nil
}

// UpdateLoadBalancer follows a change of the nodes: without a pool the
// Service's addresses are the nodes', so its status is patched (the
// service controller only writes the status EnsureLoadBalancer returns).
func (c *Cloud) UpdateLoadBalancer(ctx context.Context, _ string, svc *corev1.Service, nodes []*corev1.Node) error {
	if len(c.pool) > 0 || c.client == nil {
		return nil
	}
	st, err := c.nodeAddresses(svc, nodes)
	if err != nil {
		return err
	}
	if servicehelper.LoadBalancerStatusEqual(&svc.Status.LoadBalancer, st) {
		return nil
	}
	updated := svc.DeepCopy()
	updated.Status.LoadBalancer = *st
	_, err = servicehelper.PatchService(c.client.CoreV1(), svc, updated)
	return err
}

// EnsureLoadBalancerDeleted frees the Service's address.
func (c *Cloud) EnsureLoadBalancerDeleted(_ context.Context, _ string, svc *corev1.Service) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.allocated, svc.Namespace+"/"+svc.Name)
	return nil
}

// usedAddresses maps each pool address another Service holds (by its
// status, or by this process's allocation) to that Service.
func (c *Cloud) usedAddresses(key string) (map[netip.Addr]string, error) {
	used := map[netip.Addr]string{}
	for k, a := range c.allocated {
		if k != key {
			used[a] = k
		}
	}
	if c.services == nil {
		return used, nil
	}
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list Services: %w", err)
	}
	for _, s := range svcs {
		k := s.Namespace + "/" + s.Name
		if k == key || !Ours(s) {
			continue
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && c.pool.Contains(a) {
				if _, taken := used[a]; !taken {
					used[a] = k
				}
			}
		}
	}
	return used, nil
}

// Ours reports whether s is a LoadBalancer Service this provider serves:
// the framework's service controller leaves any Service with a
// spec.loadBalancerClass to that class's implementation.
func Ours(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil && s.DeletionTimestamp == nil
}

func primaryFamily(svc *corev1.Service) corev1.IPFamily {
	if len(svc.Spec.IPFamilies) > 0 {
		return svc.Spec.IPFamilies[0]
	}
	if a, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && a.Is6() {
		return corev1.IPv6Protocol
	}
	return corev1.IPv4Protocol
}

// familyPool is the part of the pool of svc's primary IP family.
func (c *Cloud) familyPool(svc *corev1.Service) lbpool.Pool {
	six := primaryFamily(svc) == corev1.IPv6Protocol
	var p lbpool.Pool
	for _, r := range c.pool {
		if r.First.Is6() == six {
			p = append(p, r)
		}
	}
	return p
}

// nodeAddresses is the status of a Service without a pool: the nodes'
// InternalIPs of the Service's families (as k3s's ServiceLB), refused when
// one of its ports is a node's own or another such Service's.
func (c *Cloud) nodeAddresses(svc *corev1.Service, nodes []*corev1.Node) (*corev1.LoadBalancerStatus, error) {
	if err := c.portClash(svc); err != nil {
		return nil, err
	}
	if svc.Spec.LoadBalancerIP != "" {
		return nil, fmt.Errorf("spec.loadBalancerIP %s: no address pool is configured (KubeforgeConfiguration addons.cloudController.addressPool), so a Service's addresses are the nodes' own: leave the field empty or configure a pool", svc.Spec.LoadBalancerIP)
	}
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{primaryFamily(svc)}
	}
	var ips []netip.Addr
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			fam := corev1.IPv4Protocol
			if ip.Is6() {
				fam = corev1.IPv6Protocol
			}
			if slices.Contains(families, fam) && !slices.Contains(ips, ip) {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) == 0 {
		return nil, errors.New("no node can take the Service: every node is excluded (node.kubernetes.io/exclude-from-external-load-balancers) or has no InternalIP of its IP family")
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	vip := corev1.LoadBalancerIPModeVIP
	st := &corev1.LoadBalancerStatus{}
	for _, ip := range ips {
		st.Ingress = append(st.Ingress, corev1.LoadBalancerIngress{IP: ip.String(), IPMode: &vip})
	}
	return st, nil
}

// portClash refuses a port of svc that the nodes use themselves, or that
// an older Service on the nodes' addresses already has (the older one
// keeps it).
func (c *Cloud) portClash(svc *corev1.Service) error {
	for _, p := range svc.Spec.Ports {
		if slices.Contains(c.reserved, p.Port) {
			return fmt.Errorf("port %d/%s: the nodes use it themselves (%s), and without an address pool a LoadBalancer Service listens on the nodes' addresses: use another port, or configure addons.cloudController.addressPool", p.Port, p.Protocol, portList(c.reserved))
		}
	}
	if c.services == nil {
		return nil
	}
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list Services: %w", err)
	}
	for _, o := range svcs {
		if o.UID == svc.UID {
			continue
		}
		// Any Service's NodePort is open on every node's address: a
		// LoadBalancer port there would take its traffic.
		for _, p := range svc.Spec.Ports {
			for _, q := range o.Spec.Ports {
				if q.NodePort != 0 && p.Port == q.NodePort && p.Protocol == q.Protocol {
					return fmt.Errorf("port %d/%s is the NodePort of Service %s/%s on every node, and without an address pool a LoadBalancer Service listens on the nodes' addresses: use another port, or configure addons.cloudController.addressPool", p.Port, p.Protocol, o.Namespace, o.Name)
				}
			}
		}
		if !Ours(o) || !older(o, svc) {
			continue
		}
		for _, p := range svc.Spec.Ports {
			for _, q := range o.Spec.Ports {
				if p.Port == q.Port && p.Protocol == q.Protocol {
					return fmt.Errorf("port %d/%s is already taken on the nodes' addresses by LoadBalancer Service %s/%s: use another port, or configure addons.cloudController.addressPool so that each Service gets its own address", p.Port, p.Protocol, o.Namespace, o.Name)
				}
			}
		}
	}
	return nil
}

func older(a, b *corev1.Service) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

func portList(ps []int32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ", ")
}

// ProvidedNodeIPAnnotation is where a kubelet run with
// --cloud-provider=external records its --node-ip.
const ProvidedNodeIPAnnotation = "alpha.kubernetes.io/provided-node-ip"

// InstanceExists: a bare-metal node exists while its Node does.
func (c *Cloud) InstanceExists(context.Context, *corev1.Node) (bool, error) { return true, nil }

// InstanceShutdown: kubeforge cannot tell a powered-off machine from an
// unreachable one; the node lifecycle controller handles both.
func (c *Cloud) InstanceShutdown(context.Context, *corev1.Node) (bool, error) { return false, nil }

// InstanceMetadata gives a node its provider ID (kubeforge://NAME) and
// its addresses: the IPs its kubelet was told (--node-ip), else those it
// reports, and its hostname.
func (c *Cloud) InstanceMetadata(_ context.Context, n *corev1.Node) (*cloudprovider.InstanceMetadata, error) {
	var addrs []corev1.NodeAddress
	if v := n.Annotations[ProvidedNodeIPAnnotation]; v != "" {
		for _, s := range strings.Split(v, ",") {
			if ip, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil && !ip.IsUnspecified() {
				addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip.String()})
			}
		}
	}
	if len(addrs) == 0 {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				addrs = append(addrs, a)
			}
		}
	}
	host := n.Name
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeHostName {
			host = a.Address
		}
	}
	addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: host})
	id := n.Spec.ProviderID
	if id == "" {
		id = ProviderName + "://" + n.Name
	}
	return &cloudprovider.InstanceMetadata{ProviderID: id, NodeAddresses: addrs}, nil
}
