package etcdsnapshot

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// EtcdManifestName is the static pod manifest of the node's etcd member.
const EtcdManifestName = "etcd"

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
	path := p.Manifest(EtcdManifestName)
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

// SingleMemberManifest returns the manifest rewritten for a member that is
// the only one of a new cluster: --initial-cluster names this member alone
// and --initial-cluster-state goes (etcd's default, "new"). Every other
// line stays as it was. It reports whether anything changed.
func (m Member) SingleMemberManifest() ([]byte, bool) {
	want := "--initial-cluster=" + m.Name + "=" + m.PeerURL
	lines := strings.Split(string(m.ManifestBytes), "\n")
	out := make([]string, 0, len(lines))
	changed := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "- --initial-cluster-state="):
			changed = true
			continue
		case strings.HasPrefix(t, "- --initial-cluster="):
			if t != "- "+want {
				l = l[:strings.Index(l, "- ")] + "- " + want
				changed = true
			}
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "\n")), changed
}

// Annotate sets annotation key to value in a static pod manifest as
// kubeforge renders it (metadata first, two-space indents), keeping every
// other line as it was.
func Annotate(manifest []byte, key, value string) []byte {
	line := "    " + key + ": " + strconv.Quote(value)
	lines := strings.Split(string(manifest), "\n")
	out := make([]string, 0, len(lines)+2)
	done := false
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if done {
			out = append(out, l)
			continue
		}
		switch {
		case strings.HasPrefix(l, "    "+key+":"):
			out = append(out, line)
			done = true
		case l == "  annotations:":
			out = append(out, l)
			// Replace the key within the block, or add it at its start.
			j := i + 1
			for ; j < len(lines) && strings.HasPrefix(lines[j], "    "); j++ {
				if strings.HasPrefix(lines[j], "    "+key+":") {
					break
				}
			}
			if j < len(lines) && strings.HasPrefix(lines[j], "    "+key+":") {
				out = append(out, lines[i+1:j]...)
				out = append(out, line)
				i = j
			} else {
				out = append(out, line)
			}
			done = true
		case l == "metadata:" && !strings.Contains(string(manifest), "\n  annotations:\n"):
			out = append(out, l, "  annotations:", line)
			done = true
		default:
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}
