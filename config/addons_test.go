package config

import (
	"strings"
	"testing"
)

// The metrics-server addon is on unless the KubeforgeConfiguration turns
// it off; a typo or a non-boolean is refused with the file's name.
func TestAddonsSwitch(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"
	for _, c := range []struct {
		doc     string
		on      bool
		wantErr string
	}{
		{doc: head, on: true},
		{doc: head + "addons: {}\n", on: true},
		{doc: head + "addons:\n  metricsServer:\n    enabled: true\n", on: true},
		{doc: head + "addons:\n  metricsServer:\n    enabled: false\n", on: false},
		{doc: head + "addons:\n  metricServer:\n    enabled: false\n", wantErr: "metricServer"},
		{doc: head + "addons:\n  metricsServer:\n    enabled: \"no\"\n", wantErr: "enabled"},
	} {
		cfg := New()
		cfg.Source = "cluster.yaml"
		err := cfg.Decode([]byte(c.doc))
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "cluster.yaml") {
				t.Errorf("%q: error %v, want one naming cluster.yaml and %s", c.doc, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		defaultKubeforge(&cfg.Kubeforge)
		if got := cfg.Kubeforge.Addons.MetricsServer.On(); got != c.on {
			t.Errorf("%q: metrics-server on = %v, want %v", c.doc, got, c.on)
		}
		if cfg.Kubeforge.Addons.MetricsServer.Enabled == nil {
			t.Errorf("%q: the default is not written out", c.doc)
		}
		out, err := MarshalKubeforge(cfg.Kubeforge)
		if err != nil {
			t.Fatal(err)
		}
		want := "metricsServer:\n    enabled: " + map[bool]string{true: "true", false: "false"}[c.on]
		if !strings.Contains(string(out), want) {
			t.Errorf("%q: the effective document lacks %q:\n%s", c.doc, want, out)
		}
	}
}

// The cloud controller's address pool is checked when the configuration
// is: a bad entry is refused naming the field and the entry.
func TestCloudControllerAddressPool(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\naddons:\n  cloudController:\n"
	for _, c := range []struct {
		doc     string
		wantErr string
		on      bool
	}{
		{doc: head + "    enabled: true\n", on: true},
		{doc: head + "    enabled: false\n", on: false},
		{doc: head + "    addressPool: [10.0.0.240/28, 10.0.1.5-10.0.1.9]\n", on: true},
		{doc: head + "    addressPool: [10.0.0.241/28]\n", wantErr: "KubeforgeConfiguration.addons.cloudController.addressPool: [0] \"10.0.0.241/28\": has host bits set"},
		{doc: head + "    addressPool: [10.0.1.9-10.0.1.5]\n", wantErr: "addons.cloudController.addressPool: [0]"},
		{doc: head + "    adressPool: [10.0.0.240/28]\n", wantErr: "adressPool"},
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
		if got := cfg.Kubeforge.Addons.CloudController.On(); got != c.on {
			t.Errorf("%q: on = %v, want %v", c.doc, got, c.on)
		}
	}
}

// The dashboard addon has its own switch, on unless turned off.
func TestAddonsDashboardSwitch(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"
	for doc, on := range map[string]bool{
		head: true,
		head + "addons:\n  dashboard:\n    enabled: false\n":                                      false,
		head + "addons:\n  metricsServer:\n    enabled: false\n":                                  true,
		head + "addons:\n  dashboard:\n    enabled: true\n  metricsServer:\n    enabled: false\n": true,
	} {
		cfg := New()
		cfg.Source = "cluster.yaml"
		if err := cfg.Decode([]byte(doc)); err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		defaultKubeforge(&cfg.Kubeforge)
		if got := cfg.Kubeforge.Addons.Dashboard.On(); got != on {
			t.Errorf("%q: dashboard on = %v, want %v", doc, got, on)
		}
		out, err := MarshalKubeforge(cfg.Kubeforge)
		if err != nil {
			t.Fatal(err)
		}
		if want := "dashboard:\n    enabled: " + map[bool]string{true: "true", false: "false"}[on]; !strings.Contains(string(out), want) {
			t.Errorf("%q: the effective document lacks %q:\n%s", doc, want, out)
		}
	}
}

// The log store is on with a 7d retention unless the configuration says
// otherwise; a retention the store would not understand is refused with
// the field's name and the fix.
func TestLogStoreAddon(t *testing.T) {
	head := "apiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\n"
	for _, c := range []struct {
		doc, retention, wantErr string
		on                      bool
	}{
		{doc: head, on: true, retention: "7d"},
		{doc: head + "addons:\n  logStore:\n    enabled: false\n", on: false, retention: "7d"},
		{doc: head + "addons:\n  logStore:\n    retention: 72h\n", on: true, retention: "72h"},
		{doc: head + "addons:\n  logStore:\n    retention: 2w\n", on: true, retention: "2w"},
		{doc: head + "addons:\n  logStore:\n    retention: 7days\n", wantErr: "addons.logStore.retention"},
		{doc: head + "addons:\n  logStore:\n    retention: 0d\n", wantErr: "addons.logStore.retention"},
		{doc: head + "addons:\n  logStore:\n    retention: 10m\n", wantErr: "h, d, w or y"},
	} {
		cfg, err := decodeKubeforge(c.doc)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q: error %v, want one naming %s", c.doc, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.doc, err)
		}
		l := cfg.Kubeforge.Addons.LogStore
		if l.On() != c.on || l.Retention != c.retention {
			t.Errorf("%q: on=%v retention=%q, want %v %q", c.doc, l.On(), l.Retention, c.on, c.retention)
		}
	}
}
