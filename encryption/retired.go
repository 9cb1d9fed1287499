package encryption

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// RetiredKeysFile is where a node keeps the keys that left its encryption
// configuration file (next to it, mode 0600): an etcd snapshot taken
// before a rotation holds Secrets encrypted with such a key, and restoring
// it needs the key back in the configuration.
func RetiredKeysFile(configFile string) string {
	return filepath.Join(filepath.Dir(configFile), "encryption-retired-keys.yaml")
}

// WriteConfigFile writes an encryption configuration to path (a host
// path) as fsutil.WriteFile does, first adding to RetiredKeysFile every
// key of the file's current configuration that data no longer has.
func WriteConfigFile(path string, data []byte) (fsutil.Result, error) {
	if err := keepRetired(path, data); err != nil {
		return fsutil.Unchanged, err
	}
	return fsutil.WriteFile(path, data, 0o600)
}

func keepRetired(path string, data []byte) error {
	oldData, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // nothing there (yet) to lose
	case err != nil:
		return fmt.Errorf("read %s before replacing it: %w", path, err)
	}
	if bytes.Equal(oldData, data) {
		return nil
	}
	old, err := Parse(oldData, path)
	if err != nil {
		// Not a configuration kubeforge reads (KMS, edited by hand): kept
		// whole beside it, since it may hold keys.
		aside := path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		if _, err := fsutil.WriteFile(aside, oldData, 0o600); err != nil {
			return fmt.Errorf("keep %s before replacing it: %w", path, err)
		}
		return nil
	}
	next, err := Parse(data, "the new configuration")
	if err != nil {
		return err
	}
	archive := RetiredKeysFile(path)
	var kept Config
	if b, err := os.ReadFile(archive); err == nil {
		if kept, err = Parse(b, archive); err != nil {
			return fmt.Errorf("%s: %w (move it aside to go on)", archive, err)
		}
	}
	n := len(kept.Providers)
	for _, p := range old.Providers {
		if p.Type != Identity && !next.Has(p.Name) && !kept.Has(p.Name) {
			kept.Providers = append(kept.Providers, p)
		}
	}
	if len(kept.Providers) == n {
		return nil
	}
	if _, err := fsutil.WriteFile(archive, Render(kept), 0o600); err != nil {
		return fmt.Errorf("keep the retired encryption keys in %s: %w", archive, err)
	}
	return nil
}

// KeyOfValue returns the provider type and key name a value stored by the
// API server was encrypted with ("k8s:enc:secretbox:v1:NAME:…"); ok is
// false for a value stored unencrypted.
func KeyOfValue(v []byte) (typ, name string, ok bool) {
	const enc = "k8s:enc:"
	if !strings.HasPrefix(string(v[:min(len(v), len(enc))]), enc) {
		return "", "", false
	}
	rest := v[len(enc):]
	parts := strings.SplitN(string(rest[:min(len(rest), 256)]), ":", 4)
	if len(parts) < 4 {
		return "", "", false
	}
	return parts[0], parts[2], true
}
