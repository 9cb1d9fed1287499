// Package nodedir is the node directory: the ConfigMap
// kube-system/kubeforge-nodes (manifests.NodeDirectory), one data key per
// Node, each value a small JSON projection of that Node with only what the
// node-service duties need to know of the other nodes:
//
//   - the pod network agent (components/podnet): InternalIP, pod CIDRs and
//     the annotations AnnotationVTEPMAC and AnnotationBackend;
//   - the LoadBalancer speaker (components/lbspeaker): the addresses, the
//     Ready condition, whether the Node is being deleted, the annotation
//     SpeakerAnnotation and the label
//     node.kubernetes.io/exclude-from-external-load-balancers.
//
// The Node authorizer lets a node read only its own Node; without the
// directory every node would need to list and watch all Nodes in full
// (labels, images, capacity, every annotation). The controller-manager
// publishes it (Publish, in every kube-controller-manager process, with
// its own credentials); nodes read it through Watcher, with a Role that
// allows that one ConfigMap (manifests.NodeDirectoryRBAC).
//
// Size: an entry with its key is about 150 bytes for an IPv4 node and 210
// for a dual-stack one with every field set (TestSizeAt1000Nodes measures
// it), so the ConfigMap's 1 MiB limit holds about 7000 IPv4 or 4900
// dual-stack nodes. Every change sends the whole ConfigMap to each
// watching node (two watches per node: the agent and the speaker), which
// is why the publisher writes only projection changes, at most one write
// per debounce period.
package nodedir

import (
	"encoding/json"
	"errors"
	"fmt"
	"k8s.io/client-go/tools/cache"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/manifests"
)

// The Node annotations the directory carries (and no other).
const (
	// AnnotationBackend is the pod network backend of a node's agent.
	AnnotationBackend = "kubeforge.io/pod-network-backend"
	// AnnotationVTEPMAC is the MAC address of a node's VXLAN device.
	AnnotationVTEPMAC = "kubeforge.io/vxlan-mac"
	// SpeakerAnnotation says whether a node's LoadBalancer speaker runs.
	SpeakerAnnotation = "kubeforge.io/lb-speaker"
)

// Namespace and Name locate the directory.
const (
	Namespace = metav1.NamespaceSystem
	Name      = manifests.NodeDirectory
)

// Where names the directory in messages.
const Where = "ConfigMap " + Namespace + "/" + Name

// Entry is one Node's projection. Its JSON is kept short (the whole
// ConfigMap goes to every watching node at each change): field names, not
// annotation keys.
type Entry struct {
	// InternalIPs and ExternalIPs are the Node's addresses of those types.
	InternalIPs []string `json:"internalIPs,omitempty"`
	ExternalIPs []string `json:"externalIPs,omitempty"`
	PodCIDRs    []string `json:"podCIDRs,omitempty"`
	// Ready is the Node's Ready condition being True.
	Ready bool `json:"ready,omitempty"`
	// Deleting is the Node having a deletion timestamp.
	Deleting bool `json:"deleting,omitempty"`
	// Backend, VTEPMAC and Speaker are the annotations AnnotationBackend,
	// AnnotationVTEPMAC and SpeakerAnnotation ("" when absent).
	Backend string `json:"backend,omitempty"`
	VTEPMAC string `json:"vtepMAC,omitempty"`
	Speaker string `json:"speaker,omitempty"`
	// ExcludeLB is the label node.kubernetes.io/exclude-from-external-load-balancers
	// (its presence counts: nil when absent).
	ExcludeLB *string `json:"excludeLB,omitempty"`
}

// Project is the part of n the directory keeps.
func Project(n *corev1.Node) Entry {
	e := Entry{Backend: n.Annotations[AnnotationBackend], VTEPMAC: n.Annotations[AnnotationVTEPMAC], Speaker: n.Annotations[SpeakerAnnotation]}
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP:
			e.InternalIPs = append(e.InternalIPs, a.Address)
		case corev1.NodeExternalIP:
			e.ExternalIPs = append(e.ExternalIPs, a.Address)
		}
	}
	e.PodCIDRs = slices.Clone(n.Spec.PodCIDRs)
	if len(e.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
		e.PodCIDRs = []string{n.Spec.PodCIDR}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			e.Ready = c.Status == corev1.ConditionTrue
		}
	}
	e.Deleting = n.DeletionTimestamp != nil
	if v, ok := n.Labels[corev1.LabelNodeExcludeBalancers]; ok {
		e.ExcludeLB = &v
	}
	return e
}

// Encode is an entry's value in the ConfigMap (compact JSON: equal
// entries encode equally).
func Encode(e Entry) string {
	b, err := json.Marshal(e)
	if err != nil { // only strings, slices and bools: cannot fail
		panic(err)
	}
	return string(b)
}

// Data is the directory's content for nodes: node name → encoded entry.
func Data(nodes []*corev1.Node) map[string]string {
	out := make(map[string]string, len(nodes))
	for _, n := range nodes {
		out[n.Name] = Encode(Project(n))
	}
	return out
}

// Node rebuilds a minimal Node from an entry: what Project keeps and
// nothing else (the Ready condition only as True or False, a deletion
// timestamp of the zero time when it is being deleted).
func Node(name string, e Entry) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for k, v := range map[string]string{AnnotationBackend: e.Backend, AnnotationVTEPMAC: e.VTEPMAC, SpeakerAnnotation: e.Speaker} {
		if v != "" {
			if n.Annotations == nil {
				n.Annotations = map[string]string{}
			}
			n.Annotations[k] = v
		}
	}
	if e.ExcludeLB != nil {
		n.Labels = map[string]string{corev1.LabelNodeExcludeBalancers: *e.ExcludeLB}
	}
	for _, ip := range e.InternalIPs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	for _, ip := range e.ExternalIPs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: ip})
	}
	if len(e.PodCIDRs) > 0 {
		n.Spec.PodCIDR = e.PodCIDRs[0]
		n.Spec.PodCIDRs = slices.Clone(e.PodCIDRs)
	}
	ready := corev1.ConditionFalse
	if e.Ready {
		ready = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
	if e.Deleting {
		n.DeletionTimestamp = &metav1.Time{}
	}
	return n
}

// Decode rebuilds the Nodes of the directory cm, sorted by name. An entry
// that does not decode is left out and named in the error; the others are
// returned all the same.
func Decode(cm *corev1.ConfigMap) ([]*corev1.Node, error) {
	names := slices.Sorted(maps.Keys(cm.Data))
	out := make([]*corev1.Node, 0, len(names))
	var errs []error
	for _, name := range names {
		var e Entry
		if err := json.Unmarshal([]byte(cm.Data[name]), &e); err != nil {
			errs = append(errs, fmt.Errorf("entry %q of %s: %w (left out)", name, Where, err))
			continue
		}
		out = append(out, Node(name, e))
	}
	return out, errors.Join(errs...)
}

// Kick coalesces change notifications into one pending wake-up: Poke never
// blocks, C delivers at most one wake-up however many pokes came since the
// last receive, and Handler pokes on every informer event.
type Kick chan struct{}

// NewKick makes a Kick.
func NewKick() Kick { return make(Kick, 1) }

// Poke asks for a wake-up.
func (k Kick) Poke() {
	select {
	case k <- struct{}{}:
	default:
	}
}

// Handler pokes k on every add, update and delete.
func (k Kick) Handler() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.Poke() },
		UpdateFunc: func(any, any) { k.Poke() },
		DeleteFunc: func(any) { k.Poke() },
	}
}
