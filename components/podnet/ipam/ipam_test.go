package ipam

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A DEL must release the pod's address even when the node's pod CIDR file
// is gone (after a reboot /run is empty until the node agent writes it).
func TestIPAMDelWithoutCIDRFile(t *testing.T) {
	cniPath := "/usr/lib/cni:/opt/cni/bin"
	if _, err := findPlugin("host-local", cniPath); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	reservation := filepath.Join(dir, "kubeforge", "10.244.0.5")
	if err := os.MkdirAll(filepath.Dir(reservation), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(reservation, []byte("abc123\r\neth0"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := `{"cniVersion":"1.0.0","name":"kubeforge","type":"bridge","ipam":{"type":"kubeforge-ipam",` +
		`"podCIDRFile":"` + filepath.Join(dir, "missing.json") + `","dataDir":"` + dir + `"}}`
	out := runAs(t, "DEL", conf, cniPath)
	if _, err := os.Stat(reservation); err == nil {
		t.Errorf("DEL left the reservation %s (output %s)", reservation, out.String())
	}
}

// An ADD with no routes in the configuration gives the pod a default route
// per family of the node's pod CIDRs (a worker's configuration was written
// before it knew the cluster's pod subnet: "routes": []); routes in the
// configuration are passed on as they are.
func TestIPAMAddDefaultRoutes(t *testing.T) {
	cniPath := "/usr/lib/cni:/opt/cni/bin"
	if _, err := findPlugin("host-local", cniPath); err != nil {
		t.Skip(err)
	}
	for _, c := range []struct {
		name, cidrs, routes string
		want, notWant       []string
	}{
		{"empty", `["10.244.3.0/24"]`, `"routes": []`, []string{`"dst":"0.0.0.0/0"`}, []string{`"::/0"`}},
		{"missing", `["10.244.3.0/24", "fd00:10:244:3::/64"]`, ``, []string{`"dst":"0.0.0.0/0"`, `"dst":"::/0"`}, nil},
		{"given", `["10.244.3.0/24"]`, `"routes": [{"dst": "10.0.0.0/8"}]`, []string{`"dst":"10.0.0.0/8"`}, []string{`"0.0.0.0/0"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cidrFile := filepath.Join(dir, "pod-cidrs.json")
			if err := os.WriteFile(cidrFile, []byte(c.cidrs), 0o644); err != nil {
				t.Fatal(err)
			}
			routes := ""
			if c.routes != "" {
				routes = "," + c.routes
			}
			conf := `{"cniVersion":"1.0.0","name":"kubeforge","type":"bridge","ipam":{"type":"kubeforge-ipam",` +
				`"podCIDRFile":"` + cidrFile + `","dataDir":"` + dir + `"` + routes + `}}`
			out := runAs(t, "ADD", conf, cniPath)
			compact := strings.Join(strings.Fields(out.String()), "")
			for _, w := range c.want {
				if !strings.Contains(compact, w) {
					t.Errorf("result lacks %s: %s", w, out.String())
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(compact, w) {
					t.Errorf("result has %s: %s", w, out.String())
				}
			}
		})
	}
}

// runAs runs the plugin's command on conf as the runtime calls it (the CNI
// environment of a container abc123's eth0) and returns its result.
func runAs(t *testing.T, command, conf, cniPath string) *bytes.Buffer {
	t.Helper()
	t.Setenv("CNI_COMMAND", command)
	t.Setenv("CNI_CONTAINERID", "abc123")
	t.Setenv("CNI_IFNAME", "eth0")
	t.Setenv("CNI_NETNS", "/nonexistent")
	t.Setenv("CNI_PATH", cniPath)
	var out, errOut bytes.Buffer
	if err := runIPAM(strings.NewReader(conf), &out, &errOut, command, cniPath); err != nil {
		t.Fatalf("%s: %v\n%s%s", command, err, out.String(), errOut.String())
	}
	return &out
}
