package config

import (
	"strings"
	"testing"
)

// The local-path addon is on with the default root unless configured;
// a root reset must not empty, or one on /run, is refused by field.
func TestLocalPathAddon(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"
	for _, c := range []struct {
		doc, root, wantErr string
		on                 bool
	}{
		{doc: head, on: true, root: DefaultLocalPathRoot},
		{doc: head + "addons:\n  localPath:\n    enabled: false\n", on: false, root: DefaultLocalPathRoot},
		{doc: head + "addons:\n  localPath:\n    root: /srv/volumes\n", on: true, root: "/srv/volumes"},
		{doc: head + "addons:\n  localPath:\n    root: /data/k8s/volumes\n", on: true, root: "/data/k8s/volumes"},
		{doc: head + "addons:\n  localPath:\n    root: volumes\n", wantErr: "addons.localPath.root: \"volumes\" must be an absolute path"},
		{doc: head + "addons:\n  localPath:\n    root: /var/lib/../etc\n", wantErr: "addons.localPath.root"},
		{doc: head + "addons:\n  localPath:\n    root: /\n", wantErr: "addons.localPath.root: \"/\" is the root directory"},
		{doc: head + "addons:\n  localPath:\n    root: /etc\n", wantErr: "system directory"},
		{doc: head + "addons:\n  localPath:\n    root: /run/volumes\n", wantErr: "which a reboot empties"},
		{doc: head + "addons:\n  localPath:\n    root: /var/lib/kubeforge\n", wantErr: "overlaps kubeforge's state directory"},
		{doc: head + "addons:\n  localPath:\n    root: /var/lib/kubelet/volumes\n", wantErr: "overlaps the kubelet's directory"},
		{doc: head + "addons:\n  localPath:\n    root: /var/lib/etcd\n", wantErr: "overlaps etcd's data directory"},
		{doc: head + "addons:\n  localPath:\n    rooot: /x\n", wantErr: "rooot"},
	} {
		cfg, err := decodeKubeforge(c.doc)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one with %q", c.doc, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		lp := cfg.Kubeforge.Addons.LocalPath
		if lp.On() != c.on || lp.Root != c.root || lp.Enabled == nil {
			t.Errorf("%q: on %v root %q, want %v %q", c.doc, lp.On(), lp.Root, c.on, c.root)
		}
		out, err := MarshalKubeforge(cfg.Kubeforge)
		if err != nil || !strings.Contains(string(out), "localPath:\n    enabled: ") || !strings.Contains(string(out), "root: "+c.root) {
			t.Errorf("%q: effective document %v:\n%s", c.doc, err, out)
		}
	}
}
