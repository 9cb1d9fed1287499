package cri

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	"github.com/containerd/log"
	"github.com/containerd/plugin"
	"github.com/sirupsen/logrus"
)

// containerd 2.x does not report its sandbox image over the CRI: the
// setting moved from the CRI plugin's config (which a verbose Status shows
// as "config", and where 1.x has "sandboxImage") to the CRI image
// service's pinned_images (io.containerd.cri.v1.images), which no CRI call
// and no containerd API shows. kubeforge reads it where containerd itself
// does: from the config file of the process that serves the socket, loaded
// with containerd's own loader (imports, version migration).

// DefaultContainerdConfig is where containerd reads its config without
// --config.
const DefaultContainerdConfig = "/etc/containerd/config.toml"

// ContainerdConfigSandbox finds the process listening on the unix socket
// socket (a path as this process sees it), reads the config file that
// process was started with (--config/-c, else DefaultContainerdConfig)
// and returns its sandbox image: pinned_images.sandbox of the
// io.containerd.cri.v1.images plugin, or sandbox_image of the
// io.containerd.grpc.v1.cri plugin in a version 1 or 2 config (which
// containerd 2.x migrates there). image is "" when the config leaves it to
// containerd's built-in default; file names the config file read.
func ContainerdConfigSandbox(ctx context.Context, socket string) (image, file string, err error) {
	pid, err := socketListener("/proc", socket)
	if err != nil {
		return "", "", err
	}
	file, path, err := processConfigFile("/proc", pid)
	if err != nil {
		return "", "", err
	}
	image, err = LoadContainerdSandbox(ctx, path)
	if err != nil {
		return "", file, err
	}
	return image, file, nil
}

// LoadContainerdSandbox loads the containerd config at path (and what it
// imports) and returns the sandbox image it sets ("" when it sets none).
func LoadContainerdSandbox(ctx context.Context, path string) (string, error) {
	// The loader logs migrations and unknown keys: not kubeforge's to print.
	quiet := logrus.New()
	quiet.Out = io.Discard
	ctx = log.WithLogger(ctx, logrus.NewEntry(quiet))
	// Version 3 (containerd 2.0's) is the target: each file of an older
	// version is migrated on its own first, as containerd does, with the
	// one plugin migration that matters here (the image service's).
	cfg := &srvconfig.Config{Version: 3}
	migrate := func() iter.Seq[plugin.Registration] {
		return slices.Values([]plugin.Registration{{Type: "io.containerd.cri.v1", ID: "images", ConfigMigration: migrateSandboxImage}})
	}
	if err := srvconfig.LoadConfigWithPlugins(ctx, path, migrate, cfg); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil // containerd runs on its defaults
		}
		return "", fmt.Errorf("read containerd's config %s: %w", path, err)
	}
	images, _ := cfg.Plugins["io.containerd.cri.v1.images"].(map[string]any)
	pinned, _ := images["pinned_images"].(map[string]any)
	s, _ := pinned["sandbox"].(string)
	return s, nil
}

// migrateSandboxImage is the part of containerd 2.x's image service
// migration (version 2 to 3) that moves the CRI plugin's sandbox_image to
// pinned_images.sandbox.
func migrateSandboxImage(_ context.Context, version int, plugins map[string]any) error {
	if version != 2 {
		return nil
	}
	src, _ := plugins["io.containerd.grpc.v1.cri"].(map[string]any)
	img, ok := src["sandbox_image"]
	if !ok {
		return nil
	}
	dst, _ := plugins["io.containerd.cri.v1.images"].(map[string]any)
	if dst == nil {
		dst = map[string]any{}
	}
	pinned, _ := dst["pinned_images"].(map[string]any)
	if pinned == nil {
		pinned = map[string]any{}
	}
	pinned["sandbox"] = img
	dst["pinned_images"] = pinned
	plugins["io.containerd.cri.v1.images"] = dst
	return nil
}

// socketListener returns the pid of a process holding the listening unix
// socket bound at path, read from procfs (net/unix lists the sockets of
// this network namespace; fd/ links them to processes).
func socketListener(proc, path string) (int, error) {
	f, err := os.Open(filepath.Join(proc, "net", "unix"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	inodes := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 || fields[7] != path {
			continue
		}
		flags, err := strconv.ParseUint(fields[3], 16, 32)
		if err != nil || flags&0x10000 == 0 { // __SO_ACCEPTCON: listening
			continue
		}
		inodes["socket:["+fields[6]+"]"] = true
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on %s in this network namespace", path)
	}
	pids, err := os.ReadDir(proc)
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	ownNet, _ := os.Readlink(filepath.Join(proc, "self", "ns", "net"))
	for _, d := range pids {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == self {
			continue
		}
		// The socket is of this network namespace: skip the processes of
		// others (on a host with many, most of the fd links to read).
		if net, err := os.Readlink(filepath.Join(proc, d.Name(), "ns", "net")); err == nil && ownNet != "" && net != ownNet {
			continue
		}
		fdDir := filepath.Join(proc, d.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && inodes[l] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process holds the socket %s (another PID namespace?)", path)
}

// processConfigFile returns the containerd config file of process pid as
// that process names it, and the path under which this process reads it
// (through /proc/PID/root when the process has another mount namespace).
func processConfigFile(proc string, pid int) (name, path string, err error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return "", "", err
	}
	name = DefaultContainerdConfig
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i, a := range args {
		switch {
		case (a == "--config" || a == "-c") && i+1 < len(args):
			name = args[i+1]
		case strings.HasPrefix(a, "--config="):
			name = strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-c="):
			name = strings.TrimPrefix(a, "-c=")
		}
	}
	if !filepath.IsAbs(name) {
		cwd, err := os.Readlink(filepath.Join(dir, "cwd"))
		if err != nil {
			return "", "", err
		}
		name = filepath.Join(cwd, name)
	}
	path = name
	own, err1 := os.Readlink(filepath.Join(proc, "self", "ns", "mnt"))
	theirs, err2 := os.Readlink(filepath.Join(dir, "ns", "mnt"))
	if err1 != nil || err2 != nil || own != theirs {
		path = filepath.Join(dir, "root", name)
	}
	return name, path, nil
}
