package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubeforge/kubeforge/components/node/proc"
	"github.com/kubeforge/kubeforge/config"
)

// WaitKubeletWatch waits until the node service's kubelet watches its
// static Pod directory (p.ManifestsDir) with inotify.
//
// The kubelet reads the directory and sets up its watch at the same time,
// in two goroutines: a manifest written after the read but before the
// watch is seen only at the kubelet's next full read, fileCheckFrequency
// (20 s) later. Init starts the kubelet before it writes the manifests, so
// it writes them once the watch is there (the directory's first read
// happens alongside it, and finds them or gets their events).
//
// It returns an error when the kubelet is not running or sets no watch
// before ctx ends; the caller then writes the manifests anyway (the
// kubelet's full read still finds them).
func WaitKubeletWatch(ctx context.Context, p config.Paths) error {
	for {
		pid, ok, err := kubeletWatching(p)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if pid == 0 {
				return fmt.Errorf("the kubelet is not running: %w", ctx.Err())
			}
			return fmt.Errorf("the kubelet (pid %d) does not watch %s yet: %w", pid, p.ManifestsDir, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// KubeletWatches reports whether the node service's kubelet watches its
// static Pod directory now (see WaitKubeletWatch).
func KubeletWatches(p config.Paths) bool {
	_, ok, _ := kubeletWatching(p)
	return ok
}

// kubeletWatching finds the node service's kubelet (pid 0: none runs) and
// whether it watches the static Pod directory; err: the directory is gone.
func kubeletWatching(p config.Paths) (pid int, ok bool, err error) {
	var st unix.Stat_t
	if err := unix.Stat(p.Host(p.ManifestsDir), &st); err != nil {
		return 0, false, fmt.Errorf("the static Pod directory: %w", err)
	}
	pid, err = readPID(p.Host(KubeletPIDFile(p)))
	if err != nil || !proc.Matches(pid, KubeletIdentity) {
		return 0, false, nil
	}
	ok, _ = watches(pid, st.Dev, st.Ino)
	return pid, ok, nil
}

// watches reports whether process pid holds an inotify watch on the file
// whose stat(2) gave dev and ino (from /proc/PID/fdinfo, which names each
// watched inode and its file system's device).
func watches(pid int, dev, ino uint64) (bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err != nil || target != "anon_inode:inotify" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		if inotifyWatches(info, dev, ino) {
			return true, nil
		}
	}
	return false, nil
}

// inotifyWatches reports whether an inotify fdinfo text has a watch on
// inode ino of device dev (dev as stat(2) gives it; fdinfo prints the
// kernel's own encoding, major<<20 | minor).
func inotifyWatches(fdinfo []byte, dev, ino uint64) bool {
	s := bufio.NewScanner(bytes.NewReader(fdinfo))
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 || fields[0] != "inotify" {
			continue
		}
		var gotIno, gotDev uint64
		var haveIno, haveDev bool
		for _, f := range fields[1:] {
			k, v, ok := strings.Cut(f, ":")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				continue
			}
			switch k {
			case "ino":
				gotIno, haveIno = n, true
			case "sdev":
				gotDev, haveDev = n, true
			}
		}
		if haveIno && haveDev && gotIno == ino &&
			uint64(unix.Major(dev)) == gotDev>>20 && uint64(unix.Minor(dev)) == gotDev&0xfffff {
			return true
		}
	}
	return false
}
