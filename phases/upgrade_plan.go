package phases

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/manifests"
)

// Plan is the cluster's state against this binary: what `upgrade plan`
// prints and what `upgrade apply` checks first.
type Plan struct {
	Target        Versions      `json:"target"`
	ClusterKube   string        `json:"clusterKubernetesVersion"`
	Nodes         []NodePlan    `json:"nodes"`
	Addons        []ComponentAt `json:"addons"`
	Issues        []SkewIssue   `json:"issues,omitempty"`
	Allowed       bool          `json:"allowed"`
	AllowedForced bool          `json:"allowedWithForce"`
	UpToDate      bool          `json:"upToDate"`
	// Changes lists what `upgrade apply` on this node will change.
	Changes []string `json:"changes"`
	// Local is the node the plan was made on.
	Local string `json:"node"`
}

// Versions are the versions a kubeforge build carries.
type Versions struct {
	Kubeforge  string `json:"kubeforge"`
	Kubernetes string `json:"kubernetes"`
	Etcd       string `json:"etcd"`
	CoreDNS    string `json:"coredns"`
}

// NodePlan is one node's components.
type NodePlan struct {
	Name         string        `json:"name"`
	ControlPlane bool          `json:"controlPlane"`
	Components   []ComponentAt `json:"components"`
}

// ComponentAt is one component's running version against the target.
type ComponentAt struct {
	Name string `json:"name"`
	// Kubeforge is the kubeforge version it runs (its image tag, or for
	// the kubelet the node's annotation); "" when unknown.
	Kubeforge string `json:"kubeforge"`
	// Upstream is the upstream version where the component reports it.
	Upstream string `json:"upstream,omitempty"`
	Target   string `json:"target"`
	UpToDate bool   `json:"upToDate"`
}

// TargetVersions are this binary's.
func TargetVersions() Versions {
	return Versions{Kubeforge: version.Version, Kubernetes: version.Kubernetes, Etcd: version.Etcd, CoreDNS: version.CoreDNS}
}

// imageTag is the tag of an image reference ("" without one).
func imageTag(image string) string {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return ""
	}
	return image[i+1:]
}

// nodeVersion is the kubeforge version a node's node service runs: its
// annotation (written by upgrade), else the one kubeforge self-image the
// node has (a node service imports only its own).
func nodeVersion(n *corev1.Node) string {
	if v := n.Annotations[NodeVersionAnnotation]; v != "" {
		return v
	}
	var tags []string
	for _, img := range n.Status.Images {
		for _, name := range img.Names {
			if strings.HasPrefix(name, version.ImageRepository+"/kubeforge:") {
				tags = append(tags, imageTag(name))
			}
		}
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	if len(tags) == 1 {
		return tags[0]
	}
	return ""
}

func isControlPlaneNode(n *corev1.Node) bool {
	_, ok := n.Labels["node-role.kubernetes.io/control-plane"]
	return ok
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// GatherPlan reads the cluster's versions through the API (and etcd's
// through etcd) and compares them with this binary's.
func (d *UpgradeData) GatherPlan(ctx context.Context) (*Plan, error) {
	t := TargetVersions()
	p := &Plan{Target: t, Local: d.Cfg.NodeName()}
	sv, err := d.Client.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("ask the API server its version: %w", err)
	}
	p.ClusterKube = sv.GitVersion
	nodes, err := d.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the nodes: %w", err)
	}
	pods, err := d.Client.CoreV1().Pods(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the kube-system pods: %w", err)
	}
	podsOn := map[string][]corev1.Pod{}
	for _, pod := range pods.Items {
		podsOn[pod.Spec.NodeName] = append(podsOn[pod.Spec.NodeName], pod)
	}
	etcdVersions := d.etcdVersions(ctx, pods.Items)
	kubelets := map[string]string{}
	slices.SortFunc(nodes.Items, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	p.UpToDate = true
	for i := range nodes.Items {
		n := &nodes.Items[i]
		kubelets[n.Name] = n.Status.NodeInfo.KubeletVersion
		np := NodePlan{Name: n.Name, ControlPlane: isControlPlaneNode(n)}
		for _, c := range manifests.ControlPlaneComponents {
			for _, pod := range podsOn[n.Name] {
				if pod.Name != c+"-"+n.Name {
					continue
				}
				np.ControlPlane = true
				at := ComponentAt{Name: c, Kubeforge: imageTag(pod.Spec.Containers[0].Image), Target: t.Kubeforge}
				switch c {
				case manifests.Etcd:
					at.Upstream = etcdVersions[n.Name]
				case manifests.KubeAPIServer:
					at.Upstream = p.ClusterKube
				}
				np.Components = append(np.Components, at)
			}
		}
		np.Components = append(np.Components, ComponentAt{Name: "kubelet", Kubeforge: nodeVersion(n),
			Upstream: n.Status.NodeInfo.KubeletVersion, Target: t.Kubeforge})
		for _, pod := range podsOn[n.Name] {
			if pod.Labels["k8s-app"] == manifests.KubeProxyName {
				np.Components = append(np.Components, ComponentAt{Name: manifests.KubeProxyName,
					Kubeforge: imageTag(pod.Spec.Containers[0].Image), Target: t.Kubeforge})
			}
		}
		for i := range np.Components {
			c := &np.Components[i]
			c.UpToDate = c.Kubeforge == c.Target
			p.UpToDate = p.UpToDate && c.UpToDate
		}
		p.Nodes = append(p.Nodes, np)
	}
	if dep, err := d.Client.AppsV1().Deployments(metav1.NamespaceSystem).Get(ctx, manifests.CoreDNSName, metav1.GetOptions{}); err == nil {
		at := ComponentAt{Name: "coredns", Kubeforge: imageTag(dep.Spec.Template.Spec.Containers[0].Image),
			Upstream: dep.Annotations[coreDNSVersionAnnotation], Target: t.Kubeforge}
		at.UpToDate = at.Kubeforge == at.Target
		p.UpToDate = p.UpToDate && at.UpToDate
		p.Addons = append(p.Addons, at)
	}
	if ds, err := d.Client.AppsV1().DaemonSets(metav1.NamespaceSystem).Get(ctx, manifests.KubeProxyName, metav1.GetOptions{}); err == nil {
		at := ComponentAt{Name: manifests.KubeProxyName, Kubeforge: imageTag(ds.Spec.Template.Spec.Containers[0].Image), Target: t.Kubeforge}
		at.UpToDate = at.Kubeforge == at.Target
		p.UpToDate = p.UpToDate && at.UpToDate
		p.Addons = append(p.Addons, at)
	}
	in := SkewInput{ControlPlane: p.ClusterKube, Target: t.Kubernetes, Kubelets: kubelets}
	if d.Workflow == "node" {
		in.ControlPlaneFirst = true
		in.Kubelets = map[string]string{}
	}
	p.Issues = CheckSkew(in)
	p.Allowed = len(Blocking(p.Issues, false)) == 0
	p.AllowedForced = len(Blocking(p.Issues, true)) == 0
	p.Changes = d.localChanges()
	if len(p.Changes) > 0 {
		p.UpToDate = false
	}
	if p.UpToDate {
		p.Changes = nil
	}
	return p, nil
}

// etcdVersions asks each etcd member its version, by node name.
func (d *UpgradeData) etcdVersions(ctx context.Context, pods []corev1.Pod) map[string]string {
	out := map[string]string{}
	if !d.ControlPlane {
		return out
	}
	for _, pod := range pods {
		u := pod.Annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"]
		if pod.Labels["component"] != manifests.Etcd || u == "" {
			continue
		}
		ep := strings.Split(u, ",")[0]
		c, err := etcdmember.Client(d.Cfg.Paths, []string{ep})
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if st, err := c.Status(sctx, ep); err == nil {
			out[pod.Spec.NodeName] = "v" + st.Version
		}
		cancel()
		c.Close()
	}
	return out
}

// localChanges lists what an upgrade of this node would write: the
// manifests and the kubelet configuration that differ, and the node
// service when it runs another binary.
func (d *UpgradeData) localChanges() []string {
	var out []string
	if d.ControlPlane {
		for _, c := range manifests.ControlPlaneComponents {
			cur, want, err := d.manifestPair(c)
			if err != nil {
				out = append(out, fmt.Sprintf("%s: %v", c, err))
				continue
			}
			if !bytes.Equal(cur, want) {
				out = append(out, fmt.Sprintf("replace the %s static Pod (%s → %s)", c, manifestImageTag(cur), version.Version))
			}
			out = append(out, d.componentFileChanges(c)...)
		}
	}
	if cur, want, err := d.kubeletConfigPair(); err == nil && !bytes.Equal(cur, want) {
		out = append(out, "rewrite "+d.Cfg.Paths.KubeletConfigFile())
	}
	if same, err := d.nodeServiceRunsThisBinary(); err == nil && !same {
		out = append(out, "restart the node service (containerd, kubelet) on "+d.executable())
	} else if err != nil {
		out = append(out, "start the node service: "+err.Error())
	}
	return out
}

// componentFileChanges lists a component's configuration files that are
// missing or differ on disk (a manifest names its file by content, so a
// changed file changes the manifest too; a deleted one does not).
func (d *UpgradeData) componentFileChanges(component string) []string {
	files, err := componentFiles(d.Cfg, component)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", component, err)}
	}
	var out []string
	for _, f := range files {
		if cur, err := os.ReadFile(d.Paths.Host(f.Path)); err != nil || !bytes.Equal(cur, f.Data) {
			out = append(out, "write "+f.Path+" ("+f.What+")")
		}
	}
	return out
}

// manifestImageTag is the image tag of a static pod manifest's container
// ("?" when the manifest does not decode).
func manifestImageTag(b []byte) string {
	pod, err := manifests.UnmarshalPod(b)
	if err != nil {
		return "?"
	}
	return imageTag(manifests.PodImage(pod))
}

// manifestPair is a component's manifest on disk and as this binary renders it.
func (d *UpgradeData) manifestPair(component string) (cur, want []byte, err error) {
	pod, err := d.renderStaticPod(component)
	if err != nil {
		return nil, nil, err
	}
	if want, err = manifests.MarshalPod(pod); err != nil {
		return nil, nil, fmt.Errorf("render %s manifest: %w", component, err)
	}
	cur, _ = os.ReadFile(d.Paths.Host(d.Cfg.Paths.Manifest(component)))
	return cur, want, nil
}

func (d *UpgradeData) kubeletConfigPair() (cur, want []byte, err error) {
	if want, err = manifests.KubeletConfig(d.Cfg); err != nil {
		return nil, nil, err
	}
	cur, _ = os.ReadFile(d.Paths.Host(d.Cfg.Paths.KubeletConfigFile()))
	return cur, want, nil
}

// PrintPlan writes the plan as a table (or JSON).
func PrintPlan(w io.Writer, p *Plan, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	fmt.Fprintf(w, "Cluster version (API server): %s\n", p.ClusterKube)
	fmt.Fprintf(w, "Target: kubeforge %s (Kubernetes %s, etcd %s, CoreDNS %s)\n\n", p.Target.Kubeforge, p.Target.Kubernetes, p.Target.Etcd, p.Target.CoreDNS)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCOMPONENT\tCURRENT\tUPSTREAM\tTARGET\t")
	row := func(node string, c ComponentAt) {
		cur := c.Kubeforge
		if cur == "" {
			cur = "unknown"
		}
		mark := ""
		if !c.UpToDate {
			mark = "upgrade"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", node, c.Name, cur, c.Upstream, c.Target, mark)
	}
	for _, n := range p.Nodes {
		for _, c := range n.Components {
			row(n.Name, c)
		}
	}
	for _, c := range p.Addons {
		row("(cluster)", c)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, i := range p.Issues {
		kind := "not allowed"
		if i.Forcible {
			kind = "needs --force"
		}
		fmt.Fprintf(w, "[%s] %s: %s\n", kind, i.Rule, i.Message)
	}
	switch {
	case p.UpToDate:
		fmt.Fprintf(w, "The cluster is up to date: every component runs kubeforge %s.\n", p.Target.Kubeforge)
		return nil
	case p.Allowed:
		fmt.Fprintln(w, "The upgrade is allowed by the version-skew policy.")
	case p.AllowedForced:
		fmt.Fprintln(w, "The upgrade is allowed only with --force.")
	default:
		fmt.Fprintln(w, "The upgrade is not allowed by the version-skew policy.")
	}
	if len(p.Changes) > 0 {
		fmt.Fprintln(w, "\n`kubeforge upgrade apply` on this node will:")
		for _, c := range p.Changes {
			fmt.Fprintf(w, "  - %s\n", c)
		}
	}
	var lagging []string
	for _, n := range p.Nodes {
		for _, c := range n.Components {
			if c.Name == "kubelet" && !c.UpToDate && n.Name != p.Local {
				lagging = append(lagging, n.Name)
			}
		}
	}
	if len(lagging) > 0 {
		fmt.Fprintf(w, "Then run `kubeforge upgrade node` with this binary on: %s; and `kubeforge upgrade apply` once more to upgrade the addons when every node runs %s.\n",
			strings.Join(lagging, ", "), p.Target.Kubeforge)
	}
	return nil
}
