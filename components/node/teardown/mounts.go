package teardown

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// MountPoints lists this mount namespace's mount points, in mountinfo
// order (octal escapes decoded).
func MountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 {
			out = append(out, fsutil.UnescapeMountinfo(fields[4]))
		}
	}
	return out, s.Err()
}

// UnmountTargets picks, from the mount points (in mountinfo order), those
// strictly below one of the directories below and not on keep, deepest
// first. A point mounted over twice is listed twice: each unmount takes one.
func UnmountTargets(mounts, below, keep []string) []string {
	var targets []string
	for _, m := range mounts {
		if slices.Contains(keep, m) {
			continue
		}
		if slices.ContainsFunc(below, func(dir string) bool { return strings.HasPrefix(m, dir+"/") }) {
			targets = append(targets, m)
		}
	}
	slices.SortStableFunc(targets, func(a, b string) int { return len(b) - len(a) })
	return targets
}

// Unmount detaches the targets, in order; one already gone is no error.
func Unmount(targets []string) error {
	var errs []error
	for _, t := range targets {
		if err := syscall.Unmount(t, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", t, err))
		}
	}
	return errors.Join(errs...)
}

// MountSet holds the mount points of a mount namespace.
type MountSet map[string]bool

// NewMountSet is the set of points.
func NewMountSet(points []string) MountSet {
	m := MountSet{}
	for _, p := range points {
		m[p] = true
	}
	return m
}

// Below reports whether anything is mounted strictly below dir.
func (m MountSet) Below(dir string) bool {
	for p := range m {
		if strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// OutermostBelow lists, sorted, the mount points strictly below dir that
// are not below another of them.
func (m MountSet) OutermostBelow(dir string) []string {
	var out []string
	for p := range m {
		if !strings.HasPrefix(p, dir+"/") {
			continue
		}
		outer := true
		for q := filepath.Dir(p); q != dir && len(q) > len(dir); q = filepath.Dir(q) {
			if m[q] {
				outer = false
				break
			}
		}
		if outer {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// RemoveTree removes path, a file or a directory tree, except the mount
// points in it (from mountinfo: a directory of another filesystem, or a
// bind-mounted file) and the directories leading to them, which it
// returns: it never deletes on a filesystem it did not unmount. With
// keepDir, a directory path itself stays (emptied).
func RemoveTree(path string, keepDir bool, mounts MountSet) (kept []string, err error) {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() || !keepDir && !mounts.Below(path) {
		if mounts[path] {
			return []string{path}, nil
		}
		return nil, os.RemoveAll(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range entries {
		child := filepath.Join(path, e.Name())
		if mounts[child] {
			kept = append(kept, child)
			continue
		}
		k, err := RemoveTree(child, false, mounts)
		kept = append(kept, k...)
		errs = append(errs, err)
	}
	if len(kept) == 0 && !keepDir {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return kept, errors.Join(errs...)
}
