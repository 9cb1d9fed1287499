package podnet

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
	t.Setenv("CNI_COMMAND", "DEL")
	t.Setenv("CNI_CONTAINERID", "abc123")
	t.Setenv("CNI_IFNAME", "eth0")
	t.Setenv("CNI_NETNS", "/nonexistent")
	t.Setenv("CNI_PATH", cniPath)
	var out, errOut bytes.Buffer
	if err := runIPAM(strings.NewReader(conf), &out, &errOut, "DEL", cniPath); err != nil {
		t.Fatalf("DEL: %v\n%s%s", err, out.String(), errOut.String())
	}
	if _, err := os.Stat(reservation); err == nil {
		t.Errorf("DEL left the reservation %s (output %s)", reservation, out.String())
	}
}
