package config

import (
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Endpoint
		// str is String() of the result ("" for in).
		str string
		// errs, when set, are what the error must say.
		errs []string
	}{
		{in: "10.0.0.1", want: Endpoint{"10.0.0.1", 0}},
		{in: "10.0.0.1:6443", want: Endpoint{"10.0.0.1", 6443}},
		{in: "api.example.test", want: Endpoint{"api.example.test", 0}},
		{in: "api.example.test:443", want: Endpoint{"api.example.test", 443}},
		{in: "[fd00::1]:8443", want: Endpoint{"fd00::1", 8443}},
		{in: "[fd00::1]", want: Endpoint{"fd00::1", 0}},
		{in: "fd00::1", want: Endpoint{"fd00::1", 0}, str: "[fd00::1]"},
		{in: "::1", want: Endpoint{"::1", 0}, str: "[::1]"},
		{in: "[10.0.0.1]:6443", want: Endpoint{"10.0.0.1", 6443}, str: "10.0.0.1:6443"},

		{in: "", errs: []string{"empty"}},
		{in: "api.example.test:", errs: []string{`"api.example.test:"`, "missing port"}},
		{in: "[fd00::1]:", errs: []string{"missing port"}},
		{in: ":6443", errs: []string{"missing host"}},
		{in: "api.example.test:0", errs: []string{`port "0" must be a number between 1 and 65535`}},
		{in: "api.example.test:65536", errs: []string{`port "65536"`}},
		{in: "api.example.test:https", errs: []string{`port "https"`}},
		{in: "[fd00::1]:99999", errs: []string{`port "99999"`}},
		{in: "[fd00::1", errs: []string{"missing ']'"}},
		{in: "[fd00::1]6443", errs: []string{`unexpected "6443"`}},
		{in: "fd00::1:6443:x", errs: []string{"not an IPv6 address", "[address]:port"}},
		{in: "bad_host!", errs: []string{`host "bad_host!" must be an IP address or a DNS name`}},
		{in: "Upper.Example:6443", errs: []string{`host "Upper.Example"`}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEndpoint(tc.in)
			if tc.errs != nil {
				if err == nil {
					t.Fatalf("accepted as %+v", got)
				}
				for _, w := range tc.errs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the error does not say %q: %v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			str := tc.str
			if str == "" {
				str = tc.in
			}
			if got.String() != str {
				t.Errorf("String() = %q, want %q", got.String(), str)
			}
			again, err := ParseEndpoint(got.String())
			if err != nil || again != got {
				t.Errorf("String() does not parse back: %+v, %v", again, err)
			}
		})
	}
}

func TestEndpointURL(t *testing.T) {
	for _, tc := range []struct {
		e    Endpoint
		want string
	}{
		{Endpoint{"10.0.0.1", 0}.WithDefaultPort(6443), "https://10.0.0.1:6443"},
		{Endpoint{"10.0.0.1", 443}.WithDefaultPort(6443), "https://10.0.0.1:443"},
		{Endpoint{"fd00::1", 0}.WithDefaultPort(6443), "https://[fd00::1]:6443"},
		{Endpoint{"api.example.test", 8443}, "https://api.example.test:8443"},
	} {
		if got := tc.e.URL(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.e, got, tc.want)
		}
	}
	if ip := (Endpoint{Host: "api.example.test"}).IP(); ip != nil {
		t.Errorf("a DNS name is not an IP: %v", ip)
	}
}

// A bad controlPlaneEndpoint is refused with the field (or the flag that
// set it) in the error; the shared endpoint gets this node's bind port
// when it names none, IPv6 included.
func TestControlPlaneEndpointErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, value, flag string
		want              []string
	}{
		{"file, bad port", "api.example.test:99999", "", []string{"ClusterConfiguration.controlPlaneEndpoint", `port "99999"`}},
		{"file, missing port", "api.example.test:", "", []string{"ClusterConfiguration.controlPlaneEndpoint", "missing port"}},
		{"flag, bad host", "bad_host!", "--control-plane-endpoint", []string{"--control-plane-endpoint: ", `host "bad_host!"`}},
		{"flag, IPv6 without brackets and a port", "fd00::1:6443:x", "--control-plane-endpoint", []string{"--control-plane-endpoint: ", "[address]:port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.Cluster.ControlPlaneEndpoint = tc.value
			if tc.flag != "" {
				c.SetFrom("ClusterConfiguration.controlPlaneEndpoint", tc.flag)
			}
			err := c.Complete(testHost())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
			if tc.flag != "" && strings.Contains(err.Error(), "ClusterConfiguration.controlPlaneEndpoint") {
				t.Errorf("set by a flag, but the error names the field: %v", err)
			}
		})
	}
	for in, want := range map[string]string{
		"[fd00::1]":          "https://[fd00::1]:6444",
		"fd00::1":            "https://[fd00::1]:6444",
		"[fd00::1]:443":      "https://[fd00::1]:443",
		"api.example.test":   "https://api.example.test:6444",
		"10.0.0.1:443":       "https://10.0.0.1:443",
		"":                   "https://10.0.0.5:6444",
		"api.example.test:1": "https://api.example.test:1",
	} {
		c := New()
		c.Cluster.ControlPlaneEndpoint = in
		c.Init.LocalAPIEndpoint.BindPort = 6444
		if err := c.Complete(testHost()); err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got := c.ControlPlaneEndpoint(); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}
