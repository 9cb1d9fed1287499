package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestEtcdSnapshotsDefaultsAndValidation(t *testing.T) {
	var k KubeforgeConfiguration
	defaultKubeforge(&k)
	if k.EtcdSnapshots.Interval.Duration != 12*time.Hour || k.EtcdSnapshots.Retention != 5 || k.EtcdSnapshots.Disabled {
		t.Errorf("defaults = %+v, want every 12h, keep 5, on", k.EtcdSnapshots)
	}
	if errs := validateKubeforge(&k); len(errs) != 0 {
		t.Errorf("the defaults do not validate: %v", errs)
	}

	p := Paths{Root: t.TempDir(), StateDir: "/var/lib/kubeforge"}
	if err := os.MkdirAll(p.Host(p.StateDir), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, doc string
		want      string // "" = valid
		check     func(EtcdSnapshots) bool
	}{
		{"custom", "etcdSnapshots:\n  interval: 30s\n  retention: 2\n", "", func(s EtcdSnapshots) bool {
			return s.Interval.Duration == 30*time.Second && s.Retention == 2
		}},
		{"disabled", "etcdSnapshots:\n  disabled: true\n", "", func(s EtcdSnapshots) bool { return s.Disabled && s.Retention == 5 }},
		{"interval too short", "etcdSnapshots:\n  interval: 1s\n", "KubeforgeConfiguration.etcdSnapshots.interval", nil},
		{"negative interval", "etcdSnapshots:\n  interval: -1h\n", "KubeforgeConfiguration.etcdSnapshots.interval", nil},
		{"negative retention", "etcdSnapshots:\n  retention: -1\n", "KubeforgeConfiguration.etcdSnapshots.retention", nil},
		{"not a duration", "etcdSnapshots:\n  interval: daily\n", `invalid duration "daily"`, nil},
		{"unknown field", "etcdSnapshots:\n  keep: 3\n", "keep", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n" + tc.doc
			if err := os.WriteFile(p.Host(p.KubeforgeConfigFile()), []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadKubeforge(p)
			if tc.want == "" {
				if err != nil || !tc.check(k.EtcdSnapshots) {
					t.Errorf("LoadKubeforge = %+v, %v", k.EtcdSnapshots, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p.KubeforgeConfigFile()) {
				t.Errorf("LoadKubeforge = %v, want an error naming %s and the file", err, tc.want)
			}
		})
	}

	// In the init config, the same errors name the field.
	c := New()
	c.Source = "init.yaml"
	if err := c.Decode([]byte("apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\netcdSnapshots:\n  interval: 20s\n  retention: 2\n")); err != nil {
		t.Fatal(err)
	}
	if c.Kubeforge.EtcdSnapshots.Interval.Duration != 20*time.Second || c.Kubeforge.EtcdSnapshots.Retention != 2 {
		t.Errorf("decoded %+v", c.Kubeforge.EtcdSnapshots)
	}
}
