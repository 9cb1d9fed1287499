package registries

import (
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzParse: registries.yaml is outside input. Parse never panics, and
// what it accepts renders hosts.toml files and CRI auth tables that are
// valid TOML, without the blocked registry ever getting an endpoint.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"mirrors:\n  docker.io:\n    endpoint: [\"https://m:5000\", \"http://c\"]\n",
		"mirrors:\n  \"*\":\n    endpoint: [\"https://m\"]\n  r.io:5000:\n    endpoint: [\"http://r.io:5000\"]\n",
		"configs:\n  m:5000:\n    auth: {username: u, password: \"p\\\"w\"}\n    tls: {insecure_skip_verify: true}\n",
		"configs:\n  r:\n    auth: {identity_token: t}\n",
		"mirrors:\n  kubeforge.local:\n    endpoint: [\"https://x\"]\n",
		"mirrors: [1, 2]\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("registries.yaml", data, func(string) string { return "/nonexistent" })
		if err != nil {
			if !strings.Contains(err.Error(), "registries.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, airGapped := range []bool{false, true} {
			r := Render(c, airGapped, DefaultFile)
			for _, h := range r.Hosts {
				var doc map[string]any
				if err := toml.Unmarshal(h.Data, &doc); err != nil {
					t.Fatalf("%s/hosts.toml is not TOML: %v\n%s", h.Dir, err, h.Data)
				}
				if h.Dir == Reserved && !strings.Contains(string(h.Data), Blackhole) {
					t.Fatalf("%s is not blocked:\n%s", Reserved, h.Data)
				}
			}
			var doc map[string]any
			if auth := r.AuthTOML(`plugins."io.containerd.cri.v1.images"`); toml.Unmarshal([]byte(auth), &doc) != nil {
				t.Fatalf("auth tables are not TOML:\n%s", auth)
			}
		}
	})
}
