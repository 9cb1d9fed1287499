package scale

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// The upstream Kubernetes scalability SLOs this run is held against
// (kubernetes/community, sig-scalability/slos): the 99th percentile, per
// (resource, verb), of
//   - mutating API calls on a single object: ≤ 1 s;
//   - non-streaming read-only calls: ≤ 1 s for a single object, ≤ 5 s for a
//     namespace-scoped list, ≤ 30 s for a cluster-scoped list;
//
// and of pod startup (creation to Running and observed by a watch,
// stateless pods, no image pull): ≤ 5 s. Upstream takes them over a day
// in 5-minute windows; here they are taken over a load of a minute or two.
const (
	SLOMutating      = 1.0
	SLOGet           = 1.0
	SLOListNamespace = 5.0
	SLOListCluster   = 30.0
	SLOPodStartup    = 5.0
)

// SLOClass names the SLO an API call (VERB and scope, as the API server's
// metrics label them) falls under, with its p99 limit in seconds; "" for
// calls no latency SLO covers (WATCH, CONNECT, DELETECOLLECTION).
func SLOClass(verb, scope string) (string, float64) {
	switch verb {
	case "POST", "PUT", "PATCH", "DELETE", "APPLY":
		return "mutating", SLOMutating
	case "GET":
		if scope == "resource" {
			return "get", SLOGet
		}
	case "LIST":
		switch scope {
		case "namespace":
			return "list namespace", SLOListNamespace
		case "cluster":
			return "list cluster", SLOListCluster
		case "resource":
			return "get", SLOGet
		}
	}
	return "", 0
}

// Op names an API call the way the API server's metrics label it:
// "VERB scope resource[/subresource]".
func Op(verb, scope, resource string) string {
	return verb + " " + scope + " " + resource
}

// SplitOp is Op's inverse.
func SplitOp(op string) (verb, scope, resource string) {
	f := strings.SplitN(op, " ", 3)
	for len(f) < 3 {
		f = append(f, "")
	}
	return f[0], f[1], f[2]
}

// OpOf is the Op of a series of apiserver_request_duration_seconds; ""
// for WATCH and CONNECT, which are long-running.
func OpOf(labels map[string]string) string {
	verb := labels["verb"]
	if verb == "WATCH" || verb == "CONNECT" || verb == "WATCHLIST" {
		return ""
	}
	res := labels["resource"]
	if sub := labels["subresource"]; sub != "" {
		res += "/" + sub
	}
	if g := labels["group"]; g != "" {
		res += "." + g
	}
	return Op(verb, labels["scope"], res)
}

// VerbScopeOf groups series by "VERB scope" only.
func VerbScopeOf(labels map[string]string) string {
	op := OpOf(labels)
	if op == "" {
		return ""
	}
	v, s, _ := SplitOp(op)
	return v + " " + s
}

// SLOCheck is one SLO held against a step's measurements: the worst p99
// among the calls (or pods) it covers.
type SLOCheck struct {
	Nodes  int     `json:"nodes"`
	Class  string  `json:"class"`
	Limit  float64 `json:"limit_seconds"`
	Worst  float64 `json:"worst_p99_seconds"`
	Op     string  `json:"worst_op,omitempty"`
	Source string  `json:"source"`
	Count  int     `json:"count"`
	Met    bool    `json:"met"`
}

func (c SLOCheck) String() string {
	verdict := "met"
	if !c.Met {
		verdict = "MISSED"
	}
	what := c.Op
	if what != "" {
		what = " (" + what + ")"
	}
	return fmt.Sprintf("%s p99 ≤ %g s: worst %s%s, %s", c.Class, c.Limit, seconds(c.Worst), what, verdict)
}

// CheckSLOs holds a set of per-operation latencies against the API call
// SLOs: for each class, the operation with the highest p99. Operations
// with fewer than minCount requests are left out (their p99 is one or two
// samples).
func CheckSLOs(nodes int, lat map[string]Latency, minCount int) []SLOCheck {
	byClass := map[string]*SLOCheck{}
	ops := make([]string, 0, len(lat))
	for op := range lat {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		l := lat[op]
		verb, scope, _ := SplitOp(op)
		class, limit := SLOClass(verb, scope)
		if class == "" || l.Count < minCount || math.IsNaN(l.P99) {
			continue
		}
		c, ok := byClass[class]
		if !ok {
			c = &SLOCheck{Nodes: nodes, Class: class, Limit: limit, Worst: -1, Source: l.Source}
			byClass[class] = c
		}
		c.Count += l.Count
		if l.P99 > c.Worst {
			c.Worst, c.Op = l.P99, op
		}
	}
	var out []SLOCheck
	for _, class := range []string{"mutating", "get", "list namespace", "list cluster"} {
		if c, ok := byClass[class]; ok {
			c.Met = c.Worst <= c.Limit
			out = append(out, *c)
		}
	}
	return out
}

// seconds formats a duration in seconds for the table.
func seconds(s float64) string {
	switch {
	case math.IsNaN(s):
		return "—"
	case s < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}
