package config

import (
	"errors"
	"strings"
	"testing"
)

func TestKubeforgeConfiguration(t *testing.T) {
	tests := []struct {
		name      string
		doc       string
		airGapped bool
		wantErr   []string
	}{
		{name: "absent", doc: "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n"},
		{name: "air-gapped", doc: "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\nairGapped: true\n", airGapped: true},
		{name: "explicit false", doc: "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\nairGapped: false\n"},
		{name: "unknown field", doc: "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\nairgapped: true\n",
			wantErr: []string{"kubeadm.yaml", "KubeforgeConfiguration", `unknown field "airgapped"`}},
		{name: "wrong type", doc: "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\nairGapped: yes please\n",
			wantErr: []string{"KubeforgeConfiguration", "airGapped"}},
		{name: "twice", doc: "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n---\napiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n",
			wantErr: []string{"a second KubeforgeConfiguration"}},
		{name: "unknown kind names it", doc: "apiVersion: kubeforge.io/v1alpha1\nkind: Kubeforge\n",
			wantErr: []string{"KubeforgeConfiguration (kubeforge.io/v1alpha1)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.Source = "kubeadm.yaml"
			err := c.Decode([]byte(tc.doc))
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.Kubeforge.AirGapped != tc.airGapped {
					t.Errorf("airGapped = %v, want %v", c.Kubeforge.AirGapped, tc.airGapped)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// decodeKubeforge decodes doc as the file cluster.yaml, then defaults and
// validates its KubeforgeConfiguration, as loading a node's config does.
func decodeKubeforge(doc string) (*Config, error) {
	cfg := New()
	cfg.Source = "cluster.yaml"
	err := cfg.Decode([]byte(doc))
	if err == nil {
		defaultKubeforge(&cfg.Kubeforge)
		err = errors.Join(validateKubeforge(&cfg.Kubeforge)...)
	}
	return cfg, err
}
