package logstore

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// A pod's address is refused; a node's own address, its bridge's gateway
// (.1) and its VXLAN device's address (.0) inside the pod CIDR are not.
func TestPodSources(t *testing.T) {
	s, err := parsePodSources("10.244.0.0/16, fd00:10:244::/56", "24,64")
	if err != nil {
		t.Fatal(err)
	}
	for addr, pod := range map[string]bool{
		"10.244.0.0":             false, // VXLAN device of the node with 10.244.0.0/24
		"10.244.0.1":             false, // its bridge
		"10.244.3.1":             false,
		"10.244.3.0":             false,
		"10.244.0.2":             true,
		"10.244.3.17":            true,
		"10.244.255.255":         true,
		"10.245.0.5":             false, // outside the pod network: a node
		"192.168.1.10":           false,
		"127.0.0.1":              false,
		"::ffff:10.244.0.9":      true, // mapped: still a pod
		"fd00:10:244::1":         false,
		"fd00:10:244:5::1":       false,
		"fd00:10:244:5::2":       true,
		"fd00:10:244:5:0:0:0:10": true,
		"2001:db8::1":            false,
	} {
		if got := s.fromPod(netip.MustParseAddr(addr)); got != pod {
			t.Errorf("fromPod(%s) = %v, want %v", addr, got, pod)
		}
	}
	// Larger node blocks (a controller-manager with --node-cidr-mask-size-ipv4=20).
	s, err = parsePodSources("10.244.0.0/16", "20")
	if err != nil {
		t.Fatal(err)
	}
	if s.fromPod(netip.MustParseAddr("10.244.16.1")) || !s.fromPod(netip.MustParseAddr("10.244.17.1")) {
		t.Error("with /20 node blocks, 10.244.16.1 is a bridge and 10.244.17.1 a pod")
	}
}

func TestParsePodSourcesErrors(t *testing.T) {
	if s, err := parsePodSources("", ""); s != nil || err != nil {
		t.Errorf("no pod network: %v, %v; want no check", s, err)
	}
	for _, tc := range []struct{ cidrs, masks, want string }{
		{"10.244.0.0", "", "-podNetwork"},
		{"10.244.0.0/16", "33", "IPv4 size must be a number from 1 to 32"},
		{"10.244.0.0/16", "24,abc", "IPv6 size"},
		{"10.244.0.0/16", "24,64,1", "at most two"},
	} {
		_, err := parsePodSources(tc.cidrs, tc.masks)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parsePodSources(%q, %q) = %v, want an error with %q", tc.cidrs, tc.masks, err, tc.want)
		}
	}
}

// Without -nodeDirectory (the flags of an older build's manifest):
// requests from pods get 403 before the store sees them, on any path
// (health and metrics included); everything else passes.
func TestGateLegacyRefusesPods(t *testing.T) {
	g, err := newGate("10.244.0.0/16", "", "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	h := g.wrap(":9428", withHealthAndMetrics(func(w http.ResponseWriter, r *http.Request) bool {
		seen = append(seen, r.RemoteAddr+" "+r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
		return true
	}))
	for _, tc := range []struct {
		remote, path string
		code         int
	}{
		{"10.244.1.7:40000", "/select/logsql/query", http.StatusForbidden},
		{"10.244.1.7:40000", "/insert/jsonline", http.StatusForbidden},
		{"10.244.1.7:40000", "/health", http.StatusForbidden},
		{"10.244.1.7:40000", "/metrics", http.StatusForbidden},
		{"garbage", "/select/logsql/query", http.StatusForbidden},
		{"10.244.1.1:40000", "/select/logsql/query", http.StatusNoContent},
		{"10.244.1.1:40000", "/health", http.StatusOK},
		{"192.168.5.2:40000", "/insert/jsonline", http.StatusNoContent},
		{"[fd00::1]:40000", "/select/logsql/query", http.StatusNoContent},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		h(w, r)
		if w.Code != tc.code {
			t.Errorf("%s %s: %d, want %d (%s)", tc.remote, tc.path, w.Code, tc.code, w.Body)
		}
		if w.Code == http.StatusForbidden && !strings.Contains(w.Body.String(), "not pods") {
			t.Errorf("%s %s: the refusal does not say why: %s", tc.remote, tc.path, w.Body)
		}
	}
	if len(seen) != 3 {
		t.Errorf("the store saw %q, want the three node requests that are not /health", seen)
	}
	if g, err := newGate("", "", "", t.Logf); g != nil || err != nil {
		t.Errorf("no flags: gate %v, %v; want none", g, err)
	}
	var none *gate
	if none.wrap(":9428", nil) != nil {
		t.Error("no gate: the handler must be the store's own")
	}
}
