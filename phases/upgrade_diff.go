package phases

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/kubeforge/kubeforge/manifests"
)

// Diff writes the unified diff of every file an upgrade of this node
// rewrites: the static Pod manifests and the components' configuration
// files (on a control-plane node) and the kubelet configuration. It
// returns the number of files that differ.
func (d *UpgradeData) Diff(w io.Writer) (int, error) {
	type pair struct {
		path      string
		cur, want []byte
	}
	var pairs []pair
	if d.ControlPlane {
		for _, c := range manifests.ControlPlaneComponents {
			cur, want, err := d.manifestPair(c)
			if err != nil {
				return 0, err
			}
			row, _ := manifests.Lookup(c)
			files, err := row.Files(d.Cfg)
			if err != nil {
				return 0, err
			}
			for _, f := range files {
				old, _ := os.ReadFile(d.Paths.Host(f.Path))
				pairs = append(pairs, pair{f.Path, old, f.Data})
			}
			pairs = append(pairs, pair{d.Cfg.Paths.Manifest(c), cur, want})
		}
	}
	cur, want, err := d.kubeletConfigPair()
	if err != nil {
		return 0, err
	}
	pairs = append(pairs, pair{d.Cfg.Paths.KubeletConfigFile(), cur, want})
	n := 0
	for _, p := range pairs {
		if bytes.Equal(p.cur, p.want) {
			continue
		}
		n++
		text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(string(p.cur)), B: difflib.SplitLines(string(p.want)),
			FromFile: p.path, ToFile: p.path + " (upgrade)", Context: 3,
		})
		if err != nil {
			return n, err
		}
		fmt.Fprint(w, text)
	}
	return n, nil
}
