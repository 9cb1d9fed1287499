package config

import (
	"strings"
	"testing"
)

// The pod network is on with the auto backend unless the configuration
// says otherwise; a backend that does not exist is refused naming the
// field and the choices; the effective document says what was chosen.
func TestPodNetworkConfig(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"
	for _, c := range []struct {
		doc, backend, wantErr string
		on                    bool
	}{
		{doc: head, on: true, backend: "auto"},
		{doc: head + "podNetwork: {}\n", on: true, backend: "auto"},
		{doc: head + "podNetwork:\n  backend: vxlan\n", on: true, backend: "vxlan"},
		{doc: head + "podNetwork:\n  backend: host-gw\n", on: true, backend: "host-gw"},
		{doc: head + "podNetwork:\n  enabled: false\n", on: false, backend: "auto"},
		{doc: head + "podNetwork:\n  backend: wireguard\n",
			wantErr: `KubeforgeConfiguration.podNetwork.backend: "wireguard" is not a pod network backend: write auto`},
		{doc: head + "podNetwork:\n  backend: VXLAN\n", wantErr: "podNetwork.backend"},
		{doc: head + "podNetwork:\n  builtin: false\n", wantErr: "builtin"},
	} {
		cfg, err := decodeKubeforge(c.doc)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one containing %q", c.doc, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		pn := cfg.Kubeforge.PodNetwork
		if pn.On() != c.on || pn.Backend != c.backend {
			t.Errorf("%q: on=%v backend=%q, want %v %q", c.doc, pn.On(), pn.Backend, c.on, c.backend)
		}
		out, err := MarshalKubeforge(cfg.Kubeforge)
		if err != nil {
			t.Fatal(err)
		}
		if want := "podNetwork:\n  backend: " + c.backend; !strings.Contains(string(out), want) {
			t.Errorf("%q: the effective document lacks %q:\n%s", c.doc, want, out)
		}
	}
}
