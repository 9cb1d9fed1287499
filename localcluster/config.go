package localcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
)

// NodeConfigs are a cluster's config documents, split by what they are for:
// the first control-plane node's `kubeforge init --config` and every other
// node's `kubeforge join --config`. They start from the user's kubeadm
// v1beta4 documents (`cluster create --config FILE`), with what each node
// needs of its own set on top.
type NodeConfigs struct {
	// source names the user's file in errors.
	source string
	// docs are the user's documents by kind, decoded.
	docs  map[string]map[string]any
	order []string
}

// nodeKinds are the kinds a cluster's config file may hold.
var nodeKinds = map[string]bool{
	"InitConfiguration": true, "ClusterConfiguration": true, "JoinConfiguration": true,
	"KubeletConfiguration": true, "KubeProxyConfiguration": true, "KubeforgeConfiguration": true,
}

// ParseNodeConfigs reads the user's documents (data may be empty). It
// refuses kinds it does not know and the fields `kubeforge cluster` sets
// itself, naming the file, the kind and the field.
func ParseNodeConfigs(source string, data []byte) (*NodeConfigs, error) {
	nc := &NodeConfigs{source: source, docs: map[string]map[string]any{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("%s: document %d: not valid YAML: %w", source, i, err)
		}
		if len(m) == 0 {
			continue
		}
		kind, _ := m["kind"].(string)
		if !nodeKinds[kind] {
			return nil, fmt.Errorf("%s: document %d: kind %q: a cluster's config holds InitConfiguration, ClusterConfiguration, JoinConfiguration, KubeletConfiguration, KubeProxyConfiguration or KubeforgeConfiguration documents", source, i, kind)
		}
		if _, dup := nc.docs[kind]; dup {
			return nil, fmt.Errorf("%s: document %d: a second %s", source, i, kind)
		}
		for _, f := range ownedFields[kind] {
			if _, set := lookup(m, f...); set {
				return nil, fmt.Errorf("%s: %s.%s: kubeforge cluster sets this for each node itself; remove it", source, kind, joinPath(f))
			}
		}
		nc.docs[kind] = m
		nc.order = append(nc.order, kind)
	}
	return nc, nil
}

// ownedFields are what `kubeforge cluster` sets per node or per cluster.
var ownedFields = map[string][][]string{
	"InitConfiguration":    {{"localAPIEndpoint", "advertiseAddress"}, {"nodeRegistration", "name"}},
	"ClusterConfiguration": {{"controlPlaneEndpoint"}},
	"JoinConfiguration":    {{"discovery"}, {"controlPlane"}, {"nodeRegistration", "name"}},
	"KubeletConfiguration": {{"cgroupRoot"}, {"resolvConf"}},
}

func joinPath(f []string) string {
	s := f[0]
	for _, p := range f[1:] {
		s += "." + p
	}
	return s
}

func lookup(m map[string]any, path ...string) (any, bool) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func set(m map[string]any, v any, path ...string) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

func (nc *NodeConfigs) doc(kind, apiVersion string) map[string]any {
	if d, ok := nc.docs[kind]; ok {
		return deepCopy(d)
	}
	return map[string]any{"apiVersion": apiVersion, "kind": kind}
}

func deepCopy(m map[string]any) map[string]any {
	b, _ := yaml.Marshal(m)
	var out map[string]any
	_ = yaml.Unmarshal(b, &out)
	return out
}

// InitFacts are what the first control-plane node's config needs.
type InitFacts struct {
	Name, IP, CgroupRoot, ResolvConf string
	// Endpoint is the control-plane endpoint (host:port).
	Endpoint string
	// Token is the bootstrap token the other nodes join with.
	Token string
}

// Init renders the first control-plane node's `kubeforge init --config`.
func (nc *NodeConfigs) Init(f InitFacts) ([]byte, error) {
	in := nc.doc("InitConfiguration", "kubeadm.k8s.io/v1beta4")
	set(in, f.IP, "localAPIEndpoint", "advertiseAddress")
	set(in, f.Name, "nodeRegistration", "name")
	tokens, _ := in["bootstrapTokens"].([]any)
	in["bootstrapTokens"] = append(tokens, map[string]any{
		"token": f.Token, "description": "kubeforge cluster: the nodes' joins", "ttl": "24h0m0s",
		"groups": []any{"system:bootstrappers:kubeadm:default-node-token"}, "usages": []any{"signing", "authentication"},
	})
	cl := nc.doc("ClusterConfiguration", "kubeadm.k8s.io/v1beta4")
	set(cl, f.Endpoint, "controlPlaneEndpoint")
	kl := nc.doc("KubeletConfiguration", "kubelet.config.k8s.io/v1beta1")
	set(kl, f.CgroupRoot, "cgroupRoot")
	set(kl, f.ResolvConf, "resolvConf")
	if _, ok := lookup(kl, "evictionHard"); !ok { // the user's, when the config has one
		ev := map[string]any{}
		for k, v := range noDiskEviction {
			ev[k] = v
		}
		set(kl, ev, "evictionHard")
	}
	docs := []map[string]any{in, cl, kl}
	for _, kind := range nc.order {
		if kind == "KubeProxyConfiguration" || kind == "KubeforgeConfiguration" {
			docs = append(docs, nc.docs[kind])
		}
	}
	return marshalDocs(docs)
}

// JoinFacts are what a joining node's config needs (discovery is given on
// the command line).
type JoinFacts struct {
	Name, CgroupRoot string
}

// Join renders a joining node's `kubeforge join --config`: the user's
// JoinConfiguration, the node's name and its kubelet cgroup root (as
// kubeletExtraArgs: the KubeletConfiguration comes from the cluster).
func (nc *NodeConfigs) Join(f JoinFacts) ([]byte, error) {
	j := nc.doc("JoinConfiguration", "kubeadm.k8s.io/v1beta4")
	set(j, f.Name, "nodeRegistration", "name")
	args, _ := lookup(j, "nodeRegistration", "kubeletExtraArgs")
	list, _ := args.([]any)
	for _, a := range list {
		if am, ok := a.(map[string]any); ok && am["name"] == "cgroup-root" {
			return nil, fmt.Errorf("%s: JoinConfiguration.nodeRegistration.kubeletExtraArgs: cgroup-root is set by kubeforge cluster for each node; remove it", nc.source)
		}
	}
	set(j, append(list, map[string]any{"name": "cgroup-root", "value": f.CgroupRoot}), "nodeRegistration", "kubeletExtraArgs")
	return marshalDocs([]map[string]any{j})
}

func marshalDocs(docs []map[string]any) ([]byte, error) {
	var b bytes.Buffer
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		y, err := yaml.Marshal(d)
		if err != nil {
			return nil, err
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// Check renders the init config with placeholder facts and loads it the
// way `kubeforge init` will, so that a bad config fails before anything is
// made. It returns the loaded config (for the DNS domain and Service
// network).
func (nc *NodeConfigs) Check(dir string) (*config.Config, error) {
	b, err := nc.Init(InitFacts{Name: "check", IP: "10.200.0.2", CgroupRoot: "/kfc-check", ResolvConf: "/dev/null",
		Endpoint: "10.200.0.2:6443", Token: "abcdef.0123456789abcdef"})
	if err != nil {
		return nil, err
	}
	if _, err := nc.Join(JoinFacts{Name: "check", CgroupRoot: "/kfc-check"}); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "kubeforge-cluster-*.yaml")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	c, err := config.Load(f.Name())
	h := config.HostDefaults()
	if err == nil {
		err = c.Complete(h)
	}
	if err == nil {
		err = c.Validate(h)
	}
	if err != nil {
		return nil, fmt.Errorf("the config from %s (with the nodes' own settings added): %w", filepath.Base(nc.source), err)
	}
	return c, nil
}
