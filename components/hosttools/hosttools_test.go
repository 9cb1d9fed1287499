package hosttools

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Setup links every tool to the trampoline when one is embedded, else to
// the executable, and a second run changes nothing.
func TestSetup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tools")
	exe := "/usr/local/bin/kubeforge"
	path, err := Setup(dir, exe, "/usr/bin:/bin")
	if err != nil {
		t.Fatal(err)
	}
	if path != dir+":/usr/bin:/bin" {
		t.Errorf("PATH %q", path)
	}
	want := exe
	if Embedded() {
		want = filepath.Join(dir, TrampolineName)
	}
	for _, tool := range Tools {
		if got, err := os.Readlink(filepath.Join(dir, tool)); err != nil || got != want {
			t.Errorf("%s links to %q (%v), want %s", tool, got, err, want)
		}
	}
	st, _ := os.Lstat(filepath.Join(dir, Tools[0]))
	if _, err := Setup(dir, exe, "/usr/bin:/bin"); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Lstat(filepath.Join(dir, Tools[0])); !os.SameFile(st, st2) {
		t.Error("a second Setup replaced the links")
	}
}

// The trampoline, built alone, runs the host's tool through a link: as
// root, with "/" as the host root, `nft --version` is the host's.
func TestTrampoline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	hostNft, err := exec.LookPath("nft")
	if err != nil {
		t.Skip("no nft on this host")
	}
	dir := t.TempDir()
	bin := buildTrampoline(t, dir)
	if err := os.Symlink(bin, filepath.Join(dir, "nft")); err != nil {
		t.Fatal(err)
	}
	want, _ := exec.Command(hostNft, "--version").Output()
	cmd := exec.Command(filepath.Join(dir, "nft"), "--version")
	cmd.Env = append(os.Environ(), HostRootEnv+"=/")
	got, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != strings.TrimSpace(string(want)) {
		t.Errorf("nft --version through the trampoline: %q (%v), want %q", got, err, want)
	}
	// Without the host root it refuses.
	cmd = exec.Command(filepath.Join(dir, "nft"), "--version")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("the trampoline ran without %s: %s", HostRootEnv, out)
	}
}

// The trampoline, built alone, is also the pod network's IPAM plugin when
// called as kubeforge-ipam (an ADD through the link gets an address of the
// node's pod CIDR from host-local), and it stays small: it imports nothing
// beyond the standard library, hosttools, ipam and fsutil, so that no
// package initialisation of kubeforge's comes back into the runtime's
// calls.
func TestTrampolineIPAM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	const cniPath = "/usr/lib/cni:/opt/cni/bin"
	var hostLocal bool
	for _, d := range filepath.SplitList(cniPath) {
		if _, err := os.Stat(filepath.Join(d, "host-local")); err == nil {
			hostLocal = true
		}
	}
	if !hostLocal {
		t.Skip("no host-local CNI plugin on this host")
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./trampoline")
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/kubeforge/kubeforge/components/hosttools":            true,
		"github.com/kubeforge/kubeforge/components/hosttools/trampoline": true,
		"github.com/kubeforge/kubeforge/components/podnet/ipam":          true,
		"github.com/kubeforge/kubeforge/internal/fsutil":                 true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		if !allowed[pkg] {
			t.Errorf("the trampoline imports %s", pkg)
		}
	}

	dir := t.TempDir()
	bin := buildTrampoline(t, dir)
	link := filepath.Join(dir, "kubeforge-ipam")
	if err := os.Symlink(bin, link); err != nil {
		t.Fatal(err)
	}
	cidrFile := filepath.Join(dir, "pod-cidrs.json")
	if err := os.WriteFile(cidrFile, []byte(`["10.244.7.0/24"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link)
	cmd.Stdin = strings.NewReader(`{"cniVersion":"1.0.0","name":"kubeforge","type":"bridge","ipam":{"type":"kubeforge-ipam",` +
		`"podCIDRFile":"` + cidrFile + `","dataDir":"` + filepath.Join(dir, "ipam") + `"}}`)
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=abc123", "CNI_IFNAME=eth0", "CNI_NETNS=/nonexistent", "CNI_PATH=" + cniPath}
	got, err := cmd.Output()
	if err != nil || !strings.Contains(string(got), `"10.244.7.`) {
		t.Errorf("ADD through kubeforge-ipam → the trampoline: %s (%v), want an address of 10.244.7.0/24", got, err)
	}
}

// Install writes the trampoline into a directory it makes if need be (the
// external runtime's CNI bin directory does not exist on a fresh node),
// leaves an identical file alone, and replaces a different one.
func TestInstall(t *testing.T) {
	saved := trampoline
	t.Cleanup(func() { trampoline = saved })
	trampoline = nil
	if got, err := Install(t.TempDir()); got != "" || err != nil {
		t.Fatalf("without an embedded trampoline: %q, %v", got, err)
	}
	trampoline = []byte("#!/bin/sh\n")
	dir := filepath.Join(t.TempDir(), "state", "cni-bin")
	got, err := Install(dir)
	if err != nil || got != filepath.Join(dir, TrampolineName) {
		t.Fatalf("Install: %q, %v", got, err)
	}
	st1, err := os.Stat(got)
	if err != nil || st1.Mode().Perm() != 0o755 {
		t.Fatalf("the trampoline file: %v, %v", st1, err)
	}
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(got); !os.SameFile(st1, st2) {
		t.Error("a second Install replaced an identical trampoline")
	}
	trampoline = []byte("#!/bin/sh\nexit 0\n")
	if _, err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(got); string(b) != string(trampoline) {
		t.Errorf("a changed trampoline was not replaced: %q", b)
	}
}

// buildTrampoline builds ./trampoline, static, into dir and returns its path.
func buildTrampoline(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, TrampolineName)
	build := exec.Command("go", "build", "-o", bin, "./trampoline")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the trampoline: %v\n%s", err, out)
	}
	return bin
}
