package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// DefaultLocalPathRoot is where the local-path provisioner keeps each
// claim's directory on the node that runs its pod.
const DefaultLocalPathRoot = "/var/lib/kubeforge/storage"

// LocalPathAddon is the local-path storage addon
// (KubeforgeConfiguration.addons.localPath): the default StorageClass
// local-path and its dynamic provisioner, which gives each claim a
// directory under Root on the node that runs the claim's pod.
type LocalPathAddon struct {
	// Enabled says whether init installs the addon; defaulted to true.
	Enabled *bool `json:"enabled,omitempty"`
	// Root is the directory on every node that holds the volumes, one
	// directory per claim. `kubeforge reset` deletes it. Defaulted to
	// DefaultLocalPathRoot. Give joining nodes the same value in their
	// KubeforgeConfiguration so that their reset finds it.
	Root string `json:"root,omitempty"`
}

// On reports whether the addon is enabled (an unset switch is on).
func (l LocalPathAddon) On() bool { return l.Enabled == nil || *l.Enabled }

// defaultLocalPath fills in l's unset fields.
func defaultLocalPath(l *LocalPathAddon) {
	if l.Enabled == nil {
		on := true
		l.Enabled = &on
	}
	if l.Root == "" {
		l.Root = DefaultLocalPathRoot
	}
}

// validateLocalPath checks the volume root: reset empties it, so it must
// be a directory of its own (CheckOwnedDir), on disk (not /run, a tmpfs
// that a reboot empties) and not one of kubeforge's other directories.
func validateLocalPath(l *LocalPathAddon) []error {
	const where = KubeforgeKind + ".addons.localPath.root"
	if l.Root == "" {
		return nil // defaulted
	}
	if err := CheckOwnedDir(l.Root, DefaultLocalPathRoot); err != nil {
		return []error{fmt.Errorf("%s: %w", where, err)}
	}
	clean := filepath.Clean(l.Root)
	if clean == "/run" || strings.HasPrefix(clean, "/run/") || strings.HasPrefix(clean, "/var/run/") {
		return []error{fmt.Errorf("%s: %q is on /run, which a reboot empties: give a directory on disk, such as %s", where, l.Root, DefaultLocalPathRoot)}
	}
	d := DefaultPaths()
	for _, own := range []struct{ what, dir string }{
		{"kubeforge's state directory", d.StateDir}, {"the kubelet's directory", d.KubeletDir},
		{"etcd's data directory", d.EtcdDataDir}, {"the Kubernetes directory", d.KubernetesDir},
		{"kubeforge's log directory", d.LogDir}, {"the pod log directory", d.PodLogDir},
	} {
		if clean == own.dir || strings.HasPrefix(own.dir, clean+"/") || (own.dir != d.StateDir && strings.HasPrefix(clean, own.dir+"/")) {
			return []error{fmt.Errorf("%s: %q overlaps %s (%s): give a directory of its own, such as %s", where, l.Root, own.what, own.dir, DefaultLocalPathRoot)}
		}
	}
	return nil
}
