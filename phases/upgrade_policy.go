package phases

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/version"
)

// The version-skew policy of `kubeforge upgrade`, kubeadm's rules
// (cmd/kubeadm/app/phases/upgrade/policy.go) restated for a tool whose
// target is always the Kubernetes version compiled into it.
const (
	// maxUpgradeMinorSkew: the control plane moves at most one minor
	// version at a time.
	maxUpgradeMinorSkew = 1
	// maxKubeletMinorSkew: kubelets may be at most three minor versions
	// older than the control plane.
	maxKubeletMinorSkew = 3
)

// SkewRule names one rule of the policy.
type SkewRule string

// The rules. Which of them --force overrides follows kubeadm: the skipped
// minor and the minor downgrade only for pre-release targets; old or new
// kubelets, a patch downgrade and unstable targets always.
const (
	RuleUnknownVersion SkewRule = "unknown-version"
	RuleSkippedMinor   SkewRule = "skipped-minor"
	RuleMinorDowngrade SkewRule = "minor-downgrade"
	RulePatchDowngrade SkewRule = "patch-downgrade"
	RuleKubeletTooOld  SkewRule = "kubelet-too-old"
	RuleKubeletNewer   SkewRule = "kubelet-newer-than-control-plane"
	RuleUnstable       SkewRule = "unstable-version"
)

// SkewIssue is one broken rule.
type SkewIssue struct {
	Rule    SkewRule `json:"rule"`
	Message string   `json:"message"`
	// Forcible issues are overridden by --force; the others never are.
	Forcible bool `json:"forcible"`
}

// SkewInput is what the policy looks at: Kubernetes versions ("v1.37.2").
type SkewInput struct {
	// ControlPlane is the version the cluster's API servers run now.
	ControlPlane string
	// Target is the version the upgrade installs (this binary's).
	Target string
	// Kubelets maps node names to their kubelets' versions, as they will
	// be when the control plane has been upgraded (for `upgrade node`, the
	// node being upgraded counts at Target).
	Kubelets map[string]string
	// ControlPlaneFirst: the check is for a node upgrade, so the control
	// plane must already run Target (or newer) before a kubelet moves to it.
	ControlPlaneFirst bool
}

// CheckSkew applies the policy. It is pure: no I/O.
func CheckSkew(in SkewInput) []SkewIssue {
	var out []SkewIssue
	add := func(r SkewRule, forcible bool, format string, a ...any) {
		out = append(out, SkewIssue{Rule: r, Forcible: forcible, Message: fmt.Sprintf(format, a...)})
	}
	target, err := version.ParseSemantic(in.Target)
	if err != nil {
		add(RuleUnknownVersion, false, "the target version %q is not a semantic version: %v", in.Target, err)
		return out
	}
	cp, err := version.ParseSemantic(in.ControlPlane)
	if err != nil {
		add(RuleUnknownVersion, false, "cannot tell the control plane's version (%q): %v; is the API server up?", in.ControlPlane, err)
		return out
	}
	unstable := target.PreRelease() != ""
	if unstable {
		add(RuleUnstable, true, "the target %s is a pre-release: pass --force to upgrade to it", in.Target)
	}
	switch {
	case target.Major() != cp.Major():
		add(RuleSkippedMinor, false, "the target %s has another major version than the control plane (%s)", in.Target, in.ControlPlane)
	case target.Minor() > cp.Minor()+maxUpgradeMinorSkew:
		add(RuleSkippedMinor, unstable, "the target %s skips a minor version: the control plane runs %s and can move only %d minor version at a time; upgrade to v%d.%d first with that kubeforge release",
			in.Target, in.ControlPlane, maxUpgradeMinorSkew, cp.Major(), cp.Minor()+1)
	case target.Minor() < cp.Minor():
		add(RuleMinorDowngrade, unstable, "the target %s is an older minor version than the control plane (%s): downgrading a minor version is not supported (restore an etcd snapshot of the old cluster instead)",
			in.Target, in.ControlPlane)
	case target.LessThan(cp):
		add(RulePatchDowngrade, true, "the target %s is older than the control plane (%s): pass --force to downgrade a patch release", in.Target, in.ControlPlane)
	}
	if in.ControlPlaneFirst && cp.LessThan(target) {
		add(RuleKubeletNewer, true, "the control plane runs %s, older than this node's kubelet would be (%s): run `kubeforge upgrade apply` on a control-plane node first", in.ControlPlane, in.Target)
	}
	var tooOld, newer []string
	for _, name := range slices.Sorted(maps.Keys(in.Kubelets)) {
		v := in.Kubelets[name]
		kv, err := version.ParseSemantic(v)
		if err != nil {
			add(RuleUnknownVersion, true, "node %s reports kubelet version %q, which is not a semantic version", name, v)
			continue
		}
		if target.Major() == kv.Major() && target.Minor() > kv.Minor()+maxKubeletMinorSkew {
			tooOld = append(tooOld, name+" ("+v+")")
		}
		if target.LessThan(kv) {
			newer = append(newer, name+" ("+v+")")
		}
	}
	if len(tooOld) > 0 {
		add(RuleKubeletTooOld, true, "kubelets more than %d minor versions older than %s: %s; upgrade those nodes first", maxKubeletMinorSkew, in.Target, strings.Join(tooOld, ", "))
	}
	if len(newer) > 0 {
		add(RuleKubeletNewer, true, "kubelets newer than the control plane would be (%s): %s", in.Target, strings.Join(newer, ", "))
	}
	sort.SliceStable(out, func(i, j int) bool { return !out[i].Forcible && out[j].Forcible })
	return out
}

// Blocking returns the issues that stop an upgrade: all of them, or with
// force only those --force cannot override.
func Blocking(issues []SkewIssue, force bool) []SkewIssue {
	var out []SkewIssue
	for _, i := range issues {
		if !force || !i.Forcible {
			out = append(out, i)
		}
	}
	return out
}
