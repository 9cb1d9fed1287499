package etcdsnapshot

import (
	"errors"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// LocalClientURL is where the node's etcd member listens on loopback.
var LocalClientURL = manifests.EtcdLocalClientURL

// Member is the node's local etcd member as its static pod manifest
// describes it.
type Member struct {
	Name          string
	DataDir       string
	PeerURL       string   // --initial-advertise-peer-urls (the first)
	ClientURLs    []string // --advertise-client-urls
	Flags         map[string]string
	ManifestPath  string // logical path
	ManifestBytes []byte
}

// ErrNoEtcd means the node runs no etcd member (a worker).
var ErrNoEtcd = errors.New("this node runs no etcd member")

// ReadMember reads the node's etcd manifest (p.Host applied to its path).
func ReadMember(p config.Paths) (Member, error) {
	path := p.Manifest(manifests.Etcd)
	data, err := os.ReadFile(p.Host(path))
	if errors.Is(err, os.ErrNotExist) {
		return Member{}, fmt.Errorf("%w (no %s): run this on a control-plane node", ErrNoEtcd, path)
	}
	if err != nil {
		return Member{}, err
	}
	return ParseMember(path, data)
}

// ParseMember reads an etcd static pod manifest's flags.
func ParseMember(path string, data []byte) (Member, error) {
	pod, err := manifests.UnmarshalPod(data)
	if err != nil {
		return Member{}, fmt.Errorf("%s: %w", path, err)
	}
	flags := manifests.PodFlags(pod)
	m := Member{Name: flags["name"], DataDir: flags["data-dir"], Flags: flags, ManifestPath: path, ManifestBytes: data}
	if m.DataDir == "" {
		m.DataDir = "/var/lib/etcd"
	}
	if v := flags["initial-advertise-peer-urls"]; v != "" {
		m.PeerURL = strings.Split(v, ",")[0]
	}
	if v := flags["advertise-client-urls"]; v != "" {
		m.ClientURLs = strings.Split(v, ",")
	}
	if m.Name == "" || m.PeerURL == "" {
		return Member{}, fmt.Errorf("%s: the etcd command has no --name or --initial-advertise-peer-urls", path)
	}
	return m, nil
}

// Endpoints are the URLs to reach the member at: loopback first.
func (m Member) Endpoints() []string { return append([]string{LocalClientURL}, m.ClientURLs...) }

// SingleMemberPod returns the member's pod rewritten for a member that is
// the only one of a new cluster: --initial-cluster names this member alone
// and --initial-cluster-state goes (etcd's default, "new"). Every other
// field stays as it was. It reports whether anything changed.
func (m Member) SingleMemberPod() (*corev1.Pod, bool, error) {
	pod, err := manifests.UnmarshalPod(m.ManifestBytes)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", m.ManifestPath, err)
	}
	want := "--initial-cluster=" + m.Name + "=" + m.PeerURL
	changed := false
	edit := func(words []string) []string {
		out := words[:0:0]
		for _, w := range words {
			switch {
			case strings.HasPrefix(w, "--initial-cluster-state="):
				changed = true
				continue
			case strings.HasPrefix(w, "--initial-cluster=") && w != want:
				w = want
				changed = true
			}
			out = append(out, w)
		}
		return out
	}
	c := &pod.Spec.Containers[0]
	c.Command, c.Args = edit(c.Command), edit(c.Args)
	return pod, changed, nil
}

// Annotate sets annotation key to value on a pod.
func Annotate(pod *corev1.Pod, key, value string) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[key] = value
}
