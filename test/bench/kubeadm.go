package bench

import (
	"fmt"
	"math"
	"strings"
)

// The kubeadm part: the real kubeadm (KubeadmVersion of test/testbed,
// built from the module graph) brings up a single node on this machine in
// the same run, measured as the single-node runs are, so that each day-1
// figure of kubeforge is a ratio to kubeadm's taken on one machine at one
// time (issue 13). Its images are made from the kubeforge executable (an
// image of it with links named like each component runs that component's
// upstream code) and imported into Debian's containerd 1.6 before init
// starts ("images pre-imported", as DESIGN.md measured kubeadm); the
// import is reported apart. See kubeadm_test.go.

// KubeadmInfo says which kubeadm the bench ran and how it was set up.
type KubeadmInfo struct {
	Path         string   `json:"path"`
	Version      string   `json:"version"`
	BuildSeconds float64  `json:"build_seconds"`
	Images       []string `json:"images"`
	// ArchiveSeconds is writing the images' archive (once per bench).
	ArchiveSeconds float64 `json:"archive_seconds"`
	ArchiveBytes   int64   `json:"archive_bytes"`
	// Runtime is the containerd the runs use; CNI the pod network.
	Runtime string `json:"runtime"`
	CNI     string `json:"cni"`
	// IgnoredPreflight are the preflight checks kubeadm is told to ignore,
	// each with why.
	IgnoredPreflight map[string]string `json:"ignored_preflight,omitempty"`
}

// KubeadmRun is one `kubeadm init` of a single node.
type KubeadmRun struct {
	Run  int        `json:"run"`
	Load LoadSample `json:"load"`
	Node string     `json:"node"`
	// ImportSeconds is importing kubeadm's images, before init (not in
	// any figure of init).
	ImportSeconds float64 `json:"images_import_seconds"`
	// InitWall is `kubeadm init`'s wall time as the bench saw it.
	InitWall float64 `json:"init_wall_seconds"`
	// Phases are the stretches of init's output under each "[tag]"
	// (KubeadmPhases).
	Phases []PhaseTime `json:"phases"`
	// Milestones are seconds from init start (see Watcher checks).
	Milestones map[string]float64 `json:"milestones"`
	Memory     *MemSnapshot       `json:"memory,omitempty"`
	// ResetWall is `kubeadm reset -f`.
	ResetWall float64  `json:"reset_wall_seconds,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}

// KubeadmPrefix starts the keys of the kubeadm part's figures: kubeadm's
// figure for kubeforge's key K is KubeadmPrefix+K.
const KubeadmPrefix = "kubeadm."

// Sources of a figure's kubeadm value.
const (
	KubeadmMeasured = "measured in this run"
	KubeadmDesign   = "DESIGN.md"
)

// setKubeadm gives f kubeadm's value and judges f against its targets.
func (f *Figure) setKubeadm(v float64, text, source string) {
	f.Kubeadm, f.KubeadmText, f.KubeadmSource = ptr(v), text, source
	f.judge()
}

// judge sets the ratio to kubeadm's value and whether the median meets
// the targets: the absolute one, and the ratio one, which needs kubeadm's
// value.
func (f *Figure) judge() {
	f.Ratio, f.MeetsTarget = nil, nil
	if f.N == 0 {
		return
	}
	if f.Kubeadm != nil && *f.Kubeadm > 0 {
		f.Ratio = ptr(math.Round(f.Median / *f.Kubeadm * 1000) / 1000)
	}
	var meets []bool
	if f.Target != nil {
		meets = append(meets, f.Median <= *f.Target)
	}
	if f.RatioTarget != nil && f.Ratio != nil {
		meets = append(meets, *f.Ratio <= *f.RatioTarget)
	}
	if len(meets) > 0 {
		ok := true
		for _, m := range meets {
			ok = ok && m
		}
		f.MeetsTarget = ptr(ok)
	}
}

// ApplyKubeadm gives each figure whose key has a measured kubeadm
// counterpart (KubeadmPrefix+key, with samples) that median as its
// kubeadm value, replacing DESIGN.md's, and judges it again.
func ApplyKubeadm(figs []Figure) []Figure {
	by := map[string]Figure{}
	for _, f := range figs {
		if strings.HasPrefix(f.Key, KubeadmPrefix) && f.N > 0 {
			by[f.Key] = f
		}
	}
	for i := range figs {
		f := &figs[i]
		if strings.HasPrefix(f.Key, KubeadmPrefix) {
			continue
		}
		k, ok := by[KubeadmPrefix+strings.TrimPrefix(f.Key, ProcessesPrefix)]
		if !ok {
			continue
		}
		text := format(k.Median, k.Unit)
		if r := rangeText(k); r != "" {
			text += " " + r
		}
		f.setKubeadm(k.Median, text, KubeadmMeasured)
	}
	return figs
}

// ratioText is a ratio as the table shows it ("0.74×").
func ratioText(r *float64) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%.2f×", *r)
}

// targetText is a figure's targets and verdict as the table shows them.
func targetText(f Figure) string {
	var parts []string
	if f.RatioTarget != nil {
		parts = append(parts, fmt.Sprintf("≤ %.2g× kubeadm", *f.RatioTarget))
		if f.Kubeadm == nil {
			parts[len(parts)-1] += " (no kubeadm figure)"
		}
	}
	if f.TargetText != "" {
		parts = append(parts, f.TargetText)
	}
	s := strings.Join(parts, ", ")
	if f.MeetsTarget != nil {
		if *f.MeetsTarget {
			s += " ok"
		} else {
			s += " MISSED"
		}
	}
	return s
}
