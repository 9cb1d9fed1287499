package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// KubeletClientCurrent is the kubelet's rotating client certificate and key
// (kubelet.conf points at it), in the kubelet's PKI dir.
const KubeletClientCurrent = "kubelet-client-current.pem"

// EnsureKubeletClientLink gives the kubelet's client certificate the layout
// of the kubelet's own certificate store: the PEM in
// kubelet-client-<time>.pem and kubelet-client-current.pem a symlink to it.
// The kubelet refuses to rotate ("expected ... to be a symlink but it is a
// file") when kubelet-client-current.pem is a regular file, and its
// certificate then expires. It reports whether it changed anything.
//
// The link is relative (the kubelet's own rotation writes absolute ones):
// it then resolves under --root-dir too, where the kubeconfig phase checks
// the certificate that kubelet.conf names.
func EnsureKubeletClientLink(p config.Paths, now time.Time) (bool, error) {
	dir := p.KubeletPKIDir()
	current := filepath.Join(dir, KubeletClientCurrent)
	st, err := os.Lstat(p.Host(current))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && st.Mode()&fs.ModeSymlink != 0) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	data, err := os.ReadFile(p.Host(current))
	if err != nil {
		return false, err
	}
	target := filepath.Join(dir, "kubelet-client-"+now.UTC().Format("2006-01-02-15-04-05")+".pem")
	if _, err := fsutil.WriteFile(p.Host(target), data, KubeconfigFileMode); err != nil {
		return false, err
	}
	tmp := p.Host(current) + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(target), tmp); err != nil {
		return false, fmt.Errorf("link %s: %w", current, err)
	}
	if err := os.Rename(tmp, p.Host(current)); err != nil {
		_ = os.Remove(tmp)
		return false, fmt.Errorf("link %s: %w", current, err)
	}
	return true, nil
}
