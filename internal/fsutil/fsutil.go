// Package fsutil is the one way kubeforge writes files: to a temporary file
// in the same directory, fsynced, then renamed over the target, with an
// explicit mode. A file whose content and mode already match is left alone,
// so a second run of a phase changes no bytes and no mtimes.
package fsutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Result says what WriteFile did.
type Result int

const (
	// Unchanged: the file already had this content and mode.
	Unchanged Result = iota
	// Created: the file did not exist.
	Created
	// Updated: the file existed with other content or mode and was replaced.
	Updated
)

func (r Result) String() string {
	switch r {
	case Unchanged:
		return "unchanged"
	case Created:
		return "created"
	case Updated:
		return "updated"
	}
	return "unknown"
}

// DirMode is the mode of directories WriteFile creates for private files (0600),
// PublicDirMode the one for everything else.
const (
	DirMode       fs.FileMode = 0o700
	PublicDirMode fs.FileMode = 0o755
)

// WriteFile atomically writes data to path with the given mode, creating
// missing parent directories (0700 for private files, 0755 otherwise).
// It does nothing when the file already holds exactly data with mode.
func WriteFile(path string, data []byte, mode fs.FileMode) (Result, error) {
	existing, err := os.ReadFile(path)
	result := Created
	if err == nil {
		st, serr := os.Stat(path)
		if serr == nil && bytes.Equal(existing, data) && st.Mode().Perm() == mode.Perm() {
			return Unchanged, nil
		}
		result = Updated
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	dirMode := PublicDirMode
	if mode.Perm()&0o077 == 0 {
		dirMode = DirMode
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return 0, fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	cleanup := func() { tmp.Close(); os.Remove(tmpName) }
	if err := tmp.Chmod(mode.Perm()); err != nil {
		cleanup()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		cleanup()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		cleanup()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmpName)
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		os.Remove(tmpName)
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(dir)
	return result, nil
}

// syncDir makes a rename durable; errors are ignored (some filesystems
// refuse fsync on directories).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Exists reports whether path exists (any type).
func Exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
