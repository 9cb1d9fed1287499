package supervisor

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/progress"
)

// TestRegistriesAtStart: the node service applies registries.yaml and the
// node record's air-gap choice; a broken file later keeps the last good
// configuration and is reported in the published state; an air-gap
// choice recorded after containerd started rewrites the hosts tree.
func TestRegistriesAtStart(t *testing.T) {
	root := t.TempDir()
	p := config.DefaultPaths().WithRoot(root)
	s := &supervisor{p: p, log: slog.New(slog.NewTextHandler(io.Discard, nil)), out: progress.New(io.Discard, false)}
	file := filepath.Join(root, "etc/kubeforge/registries.yaml")
	write := func(content string) {
		t.Helper()
		if _, err := fsutil.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	state := func() node.State {
		t.Helper()
		st, err := node.ReadState(p)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	write("mirrors:\n  docker.io:\n    endpoint: [\"https://mirror.example.com\"]\n")
	var o containerd.Options
	s.applyRegistries(&o)
	if !o.AllowRegistryPulls || o.Registries == nil || len(o.Registries.Mirrors) != 1 {
		t.Fatalf("good file: %+v", o)
	}
	if st := state(); st.RegistriesError != "" || !strings.Contains(st.Registries, "mirror docker.io") {
		t.Errorf("state %+v", st)
	}

	write("mirrors:\n  docker.io:\n    endpoint: [\"mirror.example.com\"]\n")
	o = containerd.Options{}
	s.applyRegistries(&o)
	if o.Registries == nil || len(o.Registries.Mirrors["docker.io"].Endpoints) != 1 || o.Registries.Mirrors["docker.io"].Endpoints[0] != "https://mirror.example.com" {
		t.Errorf("broken file: not the last good configuration: %+v", o.Registries)
	}
	if st := state(); !strings.Contains(st.RegistriesError, `mirrors["docker.io"].endpoint[0]`) {
		t.Errorf("the refusal is not in the state: %+v", st)
	}

	// containerd started with pulls allowed; init then records air-gapped.
	if _, err := containerd.WriteConfig(p, withShim(o)); err != nil {
		t.Fatal(err)
	}
	if _, err := fsutil.WriteFile(p.Host(node.InfoFile(p)), node.MarshalInfo(node.Info{NodeName: "n1", AirGapped: true}), 0o600); err != nil {
		t.Fatal(err)
	}
	s.refreshAirGap(withShim(o))
	b, err := os.ReadFile(p.Host(filepath.Join(containerd.RegistryHostsDir(p), "_default", "hosts.toml")))
	if err != nil || !strings.Contains(string(b), "127.0.0.1:1") {
		t.Fatalf("air-gapped hosts: %s %v", b, err)
	}
	if _, err := os.Stat(p.Host(filepath.Join(containerd.RegistryHostsDir(p), "docker.io"))); !os.IsNotExist(err) {
		t.Errorf("docker.io's mirror is still configured on an air-gapped node: %v", err)
	}
	if st := state(); !strings.HasPrefix(st.Registries, "air-gapped") {
		t.Errorf("state %+v", st)
	}
	// Next start: the node record says air-gapped from the beginning.
	o = containerd.Options{}
	s.applyRegistries(&o)
	if o.AllowRegistryPulls {
		t.Error("an air-gapped node allows pulls at its next start")
	}
}

func withShim(o containerd.Options) containerd.Options {
	o.SandboxImage, o.ShimPath = "kubeforge.local/pause:test", "/shim"
	return o
}
