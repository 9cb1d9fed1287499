package cri

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadContainerdSandbox(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string // config.toml and what it imports
		want    string
		wantErr string
	}{
		{name: "version 3 pinned_images", files: map[string]string{"config.toml": `version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "registry.example/pause:3.10"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  SystemdCgroup = false
`}, want: "registry.example/pause:3.10"},
		{name: "version 2 sandbox_image is migrated", files: map[string]string{"config.toml": `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
`}, want: "registry.k8s.io/pause:3.6"},
		{name: "version 1 sandbox_image is migrated", files: map[string]string{"config.toml": `[plugins.cri]
  sandbox_image = "old/pause:1"
`}, want: "old/pause:1"},
		{name: "version 3 ignores the old key", files: map[string]string{"config.toml": `version = 3
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "ignored/pause:1"
`}, want: ""},
		{name: "version 4 (containerd 2.4's own)", files: map[string]string{"config.toml": `version = 4
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "v4/pause:1"
`}, want: "v4/pause:1"},
		{name: "set in an import", files: map[string]string{
			"config.toml": "version = 3\nimports = [\"conf.d/*.toml\"]\n",
			"conf.d/10-sandbox.toml": `version = 3
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "imported/pause:2"
`}, want: "imported/pause:2"},
		{name: "unset: containerd's default", files: map[string]string{"config.toml": "version = 3\n"}, want: ""},
		{name: "no config file: containerd's defaults", files: map[string]string{}, want: ""},
		{name: "broken TOML", files: map[string]string{"config.toml": "version = \n"}, wantErr: "config.toml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := LoadContainerdSandbox(context.Background(), filepath.Join(dir, "config.toml"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// fakeProc makes a procfs with net/unix and the fd links of some processes.
func fakeProc(t *testing.T, netUnix string, fds map[string][]string, cmdlines map[string]string) string {
	t.Helper()
	proc := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(proc, "net"), 0o755))
	must(os.WriteFile(filepath.Join(proc, "net", "unix"), []byte(netUnix), 0o644))
	for pid, links := range fds {
		must(os.MkdirAll(filepath.Join(proc, pid, "fd"), 0o755))
		for i, l := range links {
			must(os.Symlink(l, filepath.Join(proc, pid, "fd", string(rune('0'+i)))))
		}
	}
	for pid, cl := range cmdlines {
		must(os.MkdirAll(filepath.Join(proc, pid, "ns"), 0o755))
		must(os.WriteFile(filepath.Join(proc, pid, "cmdline"), []byte(cl), 0o644))
		must(os.Symlink("/work", filepath.Join(proc, pid, "cwd")))
		must(os.Symlink("mnt:[1]", filepath.Join(proc, pid, "ns", "mnt")))
	}
	must(os.MkdirAll(filepath.Join(proc, "self", "ns"), 0o755))
	must(os.Symlink("mnt:[1]", filepath.Join(proc, "self", "ns", "mnt")))
	return proc
}

func TestSocketListener(t *testing.T) {
	const netUnix = `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 5001 /run/ctr2/containerd.sock
0000000000000000: 00000003 00000000 00000000 0001 03 5002 /run/ctr2/containerd.sock
0000000000000000: 00000002 00000000 00010000 0001 01 5003 /run/other.sock
0000000000000000: 00000003 00000000 00000000 0001 03 5004
`
	proc := fakeProc(t, netUnix, map[string][]string{
		"10": {"/dev/null", "socket:[5004]", "socket:[5002]"}, // a client: the accepted end, not the listener
		"20": {"/dev/null", "socket:[5003]"},
		"30": {"pipe:[7]", "socket:[5001]"},
		"25": {"socket:[5001]"}, // another network namespace: skipped
	}, nil)
	for pid, ns := range map[string]string{"self": "net:[1]", "30": "net:[1]", "25": "net:[2]"} {
		if err := os.MkdirAll(filepath.Join(proc, pid, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ns, filepath.Join(proc, pid, "ns", "net")); err != nil {
			t.Fatal(err)
		}
	}
	if pid, err := socketListener(proc, "/run/ctr2/containerd.sock"); err != nil || pid != 30 {
		t.Errorf("listener of /run/ctr2/containerd.sock = %d, %v; want 30", pid, err)
	}
	if _, err := socketListener(proc, "/run/none.sock"); err == nil || !strings.Contains(err.Error(), "no process listens") {
		t.Errorf("a socket nobody listens on: %v", err)
	}
}

func TestProcessConfigFile(t *testing.T) {
	proc := fakeProc(t, "", nil, map[string]string{
		"1": "containerd\x00",
		"2": "/usr/bin/containerd\x00--config\x00/etc/ctr2/config.toml\x00",
		"3": "kubeforge\x00component\x00containerd\x00--config=rel/c.toml\x00",
		"4": "containerd\x00-c\x00/x.toml\x00--log-level\x00debug\x00",
	})
	for pid, want := range map[int]string{1: DefaultContainerdConfig, 2: "/etc/ctr2/config.toml", 3: "/work/rel/c.toml", 4: "/x.toml"} {
		name, path, err := processConfigFile(proc, pid)
		if err != nil || name != want || path != want {
			t.Errorf("pid %d: %q %q %v; want %q (same mount namespace: read as is)", pid, name, path, err, want)
		}
	}
	// Another mount namespace: read through the process's root.
	if err := os.Remove(filepath.Join(proc, "4", "ns", "mnt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("mnt:[2]", filepath.Join(proc, "4", "ns", "mnt")); err != nil {
		t.Fatal(err)
	}
	if _, path, _ := processConfigFile(proc, 4); path != filepath.Join(proc, "4", "root", "x.toml") {
		t.Errorf("another mount namespace: path %q", path)
	}
}
