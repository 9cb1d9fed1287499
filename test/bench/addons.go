package bench

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	kfconfig "github.com/kubeforge/kubeforge/config"
)

// Addon is one of kubeforge's optional cluster addons as the bench sees
// it: the component its pods run (`kubeforge component NAME`, the name of
// its pod group in a MemSnapshot) and its switch, the field of
// KubeforgeConfiguration.addons.
type Addon struct {
	Component string
	Switch    string
}

// OptionalAddons are every addon KubeforgeConfiguration.addons can turn
// off (a unit test holds the list against kfconfig.Addons). Two node
// service duties come with them and live in the node service's process:
// log shipping (with the log store) and the LoadBalancer speaker (with
// the cloud controller; it runs either way and idles without a pool).
var OptionalAddons = []Addon{
	{"metrics-server", "metricsServer"},
	{"local-path-provisioner", "localPath"},
	{"dashboard", "dashboard"},
	{"log-store", "logStore"},
	{"network-policies", "networkPolicy"},
	{"cloud-controller-manager", "cloudController"},
}

// AddonsOffConfig is a KubeforgeConfiguration document (to append to an
// init config file) that turns off every addon kfconfig.Addons has a
// switch for: each field's Enabled set to false.
func AddonsOffConfig() (string, error) {
	var a kfconfig.Addons
	v := reflect.ValueOf(&a).Elem()
	off := false
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i).FieldByName("Enabled")
		if !f.IsValid() || f.Type() != reflect.TypeOf(&off) {
			return "", fmt.Errorf("kfconfig.Addons.%s has no Enabled *bool: the bench cannot turn it off", v.Type().Field(i).Name)
		}
		f.Set(reflect.ValueOf(&off))
	}
	b, err := yaml.Marshal(map[string]any{"apiVersion": kfconfig.KubeforgeAPIVersion, "kind": kfconfig.KubeforgeKind, "addons": a})
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// MilestoneKubectlTop is the single-node runs' milestone (seconds from
// init start) when the metrics API first served the node's CPU and memory
// usage: when `kubectl top nodes` answers.
const MilestoneKubectlTop = "kubectl-top"

// AddonsOffResult is the single-node run with every optional addon off
// (part addons-off): init, then the node idle as long as the single-node
// runs, then its memory.
type AddonsOffResult struct {
	Load     LoadSample `json:"load"`
	Node     string     `json:"node"`
	InitWall float64    `json:"init_wall_seconds"`
	// Milestones are seconds from init start (see Watcher checks).
	Milestones map[string]float64 `json:"milestones"`
	Memory     *MemSnapshot       `json:"memory,omitempty"`
	Errors     []string           `json:"errors,omitempty"`
}

// AddonsSection is the title of the addons-on-against-off rows.
func AddonsSection(idle float64) string {
	return fmt.Sprintf("optional addons: idle memory %.0f s after init, all on (the single-node runs) against all off (one run)", idle)
}

// AddonFigures compares the idle memory of single nodes with every
// optional addon on (on: one snapshot per single-node run, nil where a run
// has none) with that of one node with all of them off (off; nil when not
// measured). Rows: the whole node off, on and the difference; each
// addon's pod (its containers and pause, and its shim when it has one of
// its own; a pod group of the on runs); the addons' pods together; and what the difference holds besides
// them, per pod group or component (the API server and etcd holding the
// addons' objects, the node service's duties, ...).
func AddonFigures(on []*MemSnapshot, off *MemSnapshot, idle float64, offNote string) []Figure {
	s := AddonsSection(idle)
	var out []Figure
	add := func(key, name, unit string, values []float64, note string) {
		out = append(out, NewFigure(s, key, name, unit, values, note))
	}
	perOn := func(f func(MemSnapshot) float64) []float64 {
		var v []float64
		for _, m := range on {
			if m == nil {
				v = append(v, math.NaN())
				continue
			}
			v = append(v, f(*m))
		}
		if len(v) == 0 {
			v = []float64{math.NaN()}
		}
		return v
	}
	offVal := func(f func(MemSnapshot) float64) float64 {
		if off == nil {
			return math.NaN()
		}
		return f(*off)
	}
	group := func(m MemSnapshot, g string) CompMem { return m.Groups[g] }
	addonPods := func(m MemSnapshot, f func(CompMem) float64) float64 {
		sum := 0.0
		for _, a := range OptionalAddons {
			sum += f(group(m, a.Component))
		}
		return sum
	}
	pss := func(c CompMem) float64 { return c.PSSMiB }
	rss := func(c CompMem) float64 { return c.RSSMiB }

	add("addons.off.pss", "whole node PSS, every optional addon off", "MiB", []float64{offVal(func(m MemSnapshot) float64 { return m.Total.PSSMiB })}, offNote)
	add("addons.off.rss", "whole node RSS, every optional addon off", "MiB", []float64{offVal(func(m MemSnapshot) float64 { return m.Total.RSSMiB })}, offNote)
	add("addons.off.processes", "whole node processes, every optional addon off", "", []float64{offVal(func(m MemSnapshot) float64 { return float64(m.Total.Processes) })}, offNote)
	add("addons.on.pss", "whole node PSS, every optional addon on", "MiB", perOn(func(m MemSnapshot) float64 { return m.Total.PSSMiB }), "no single-node run")
	add("addons.on.rss", "whole node RSS, every optional addon on", "MiB", perOn(func(m MemSnapshot) float64 { return m.Total.RSSMiB }), "no single-node run")
	add("addons.added.pss", "added by the addons: PSS on − off", "MiB", perOn(func(m MemSnapshot) float64 {
		return m.Total.PSSMiB - offVal(func(o MemSnapshot) float64 { return o.Total.PSSMiB })
	}), "needs both runs")
	add("addons.added.rss", "added by the addons: RSS on − off (counts the shared executable once per process)", "MiB", perOn(func(m MemSnapshot) float64 {
		return m.Total.RSSMiB - offVal(func(o MemSnapshot) float64 { return o.Total.RSSMiB })
	}), "needs both runs")
	for _, a := range OptionalAddons {
		c := a.Component
		note := fmt.Sprintf("no %s pod process in the on runs", c)
		have := func(m MemSnapshot) bool { return group(m, c).Processes > 0 }
		val := func(f func(CompMem) float64) func(MemSnapshot) float64 {
			return func(m MemSnapshot) float64 {
				if !have(m) {
					return math.NaN()
				}
				return f(group(m, c))
			}
		}
		add("addons."+c+".pss", fmt.Sprintf("%s (addons.%s): its pod's PSS", c, a.Switch), "MiB", perOn(val(pss)), note)
		add("addons."+c+".rss", fmt.Sprintf("%s: its pod's RSS", c), "MiB", perOn(val(rss)), note)
		add("addons."+c+".processes", fmt.Sprintf("%s: its pod's processes (containers, pause)", c), "", perOn(val(func(cm CompMem) float64 { return float64(cm.Processes) })), note)
	}
	add("addons.pods.pss", "the addons' pods together: PSS", "MiB", perOn(func(m MemSnapshot) float64 { return addonPods(m, pss) }), "no single-node run")
	add("addons.pods.rss", "the addons' pods together: RSS", "MiB", perOn(func(m MemSnapshot) float64 { return addonPods(m, rss) }), "no single-node run")
	add("addons.elsewhere.pss", "added outside the addons' pods (PSS on − off − the pods)", "MiB", perOn(func(m MemSnapshot) float64 {
		return m.Total.PSSMiB - offVal(func(o MemSnapshot) float64 { return o.Total.PSSMiB }) - addonPods(m, pss)
	}), "needs both runs")
	if off == nil {
		return out
	}
	// Where the rest went: every other pod group or component, on − off.
	var groups []string
	seen := map[string]bool{}
	for _, a := range OptionalAddons {
		seen[a.Component] = true
	}
	for _, m := range append(slices.Clone(on), off) {
		if m == nil {
			continue
		}
		for g := range m.Groups {
			if !seen[g] {
				seen[g] = true
				groups = append(groups, g)
			}
		}
	}
	groups = orderGroups(groups)
	for _, g := range groups {
		add("addons.delta."+g+".pss", "  of which "+g+" (on − off)", "MiB", perOn(func(m MemSnapshot) float64 {
			return group(m, g).PSSMiB - group(*off, g).PSSMiB
		}), "")
	}
	return out
}

// orderGroups orders pod groups and components as Components does, the
// others (pods of several components, unknown processes) after them.
func orderGroups(gs []string) []string {
	var out, rest []string
	for _, c := range Components {
		if slices.Contains(gs, c) {
			out = append(out, c)
		}
	}
	for _, g := range gs {
		if !slices.Contains(out, g) {
			rest = append(rest, g)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// MissingAddons lists the optional addons with no pod process in m (all of
// them run on a default single node; a missing one is either not running
// or not attributed: see AssignPods), and the processes the bench could
// not name ("other: ...").
func MissingAddons(m *MemSnapshot) (missing, unnamed []string) {
	if m == nil {
		return nil, nil
	}
	for _, a := range OptionalAddons {
		if m.Groups[a.Component].Processes == 0 {
			missing = append(missing, a.Component)
		}
	}
	for _, p := range m.Processes {
		if strings.HasPrefix(p.Component, "other: ") {
			unnamed = append(unnamed, fmt.Sprintf("pid %d %s", p.PID, p.Cmdline))
		}
	}
	return missing, unnamed
}
