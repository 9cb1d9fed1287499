package phases

import (
	"testing"
)

func TestCheckSkew(t *testing.T) {
	type want struct {
		rule     SkewRule
		forcible bool
	}
	tests := []struct {
		name string
		in   SkewInput
		want []want
	}{
		{"same version", SkewInput{ControlPlane: "v1.37.2", Target: "v1.37.2", Kubelets: map[string]string{"a": "v1.37.2"}}, nil},
		{"patch upgrade", SkewInput{ControlPlane: "v1.37.0", Target: "v1.37.2", Kubelets: map[string]string{"a": "v1.37.0"}}, nil},
		{"one minor up", SkewInput{ControlPlane: "v1.36.3", Target: "v1.37.2", Kubelets: map[string]string{"a": "v1.36.3", "b": "v1.34.0"}}, nil},
		{"skipped minor", SkewInput{ControlPlane: "v1.35.1", Target: "v1.37.2"}, []want{{RuleSkippedMinor, false}}},
		{"skipped minor, pre-release target", SkewInput{ControlPlane: "v1.35.1", Target: "v1.37.0-rc.1"},
			[]want{{RuleUnstable, true}, {RuleSkippedMinor, true}}},
		{"other major", SkewInput{ControlPlane: "v2.0.0", Target: "v1.37.2"}, []want{{RuleSkippedMinor, false}}},
		{"minor downgrade", SkewInput{ControlPlane: "v1.38.0", Target: "v1.37.2"}, []want{{RuleMinorDowngrade, false}}},
		{"patch downgrade", SkewInput{ControlPlane: "v1.37.3", Target: "v1.37.2"}, []want{{RulePatchDowngrade, true}}},
		{"kubelet four minors older", SkewInput{ControlPlane: "v1.36.0", Target: "v1.37.2", Kubelets: map[string]string{"old": "v1.33.9", "ok": "v1.34.0"}},
			[]want{{RuleKubeletTooOld, true}}},
		{"kubelet newer than target", SkewInput{ControlPlane: "v1.37.2", Target: "v1.37.2", Kubelets: map[string]string{"n": "v1.37.5"}},
			[]want{{RuleKubeletNewer, true}}},
		{"node upgrade before control plane", SkewInput{ControlPlane: "v1.36.3", Target: "v1.37.2", ControlPlaneFirst: true},
			[]want{{RuleKubeletNewer, true}}},
		{"node upgrade after control plane", SkewInput{ControlPlane: "v1.37.2", Target: "v1.37.2", ControlPlaneFirst: true}, nil},
		{"unparsable control plane", SkewInput{ControlPlane: "", Target: "v1.37.2"}, []want{{RuleUnknownVersion, false}}},
		{"unparsable kubelet", SkewInput{ControlPlane: "v1.37.2", Target: "v1.37.2", Kubelets: map[string]string{"x": "banana"}},
			[]want{{RuleUnknownVersion, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckSkew(tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d issues %+v, want %+v", len(got), got, tt.want)
			}
			for i, w := range tt.want {
				// Mandatory issues sort first; within a class, keep the order.
				found := false
				for _, g := range got {
					if g.Rule == w.rule && g.Forcible == w.forcible {
						found = true
					}
				}
				if !found {
					t.Errorf("issue %d: want %s (forcible %v) in %+v", i, w.rule, w.forcible, got)
				}
			}
			for _, g := range got {
				if g.Message == "" {
					t.Errorf("issue %s has no message", g.Rule)
				}
			}
		})
	}
}

func TestBlocking(t *testing.T) {
	issues := []SkewIssue{{Rule: RuleSkippedMinor, Forcible: false}, {Rule: RuleKubeletTooOld, Forcible: true}}
	if got := Blocking(issues, false); len(got) != 2 {
		t.Errorf("without --force: %d blocking, want 2", len(got))
	}
	got := Blocking(issues, true)
	if len(got) != 1 || got[0].Rule != RuleSkippedMinor {
		t.Errorf("with --force: %+v, want only the skipped minor", got)
	}
	if got := Blocking(nil, false); len(got) != 0 {
		t.Errorf("no issues: %+v", got)
	}
}
