package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/kubeletflags"
)

// KubeletArgs returns the kubelet's command line after the program name:
// the config file and kubeconfigs the kubeadm drop-in passes, then the flags
// of p.KubeletFlagsFile() (missing file: none). It is read at every kubelet
// start, so a rewritten flags file takes effect at the next restart.
func KubeletArgs(p config.Paths) ([]string, error) {
	args := []string{
		"--config=" + p.KubeletConfigFile(),
		"--kubeconfig=" + p.Kubeconfig("kubelet.conf"),
	}
	if boot := p.Kubeconfig("bootstrap-kubelet.conf"); exists(p.Host(boot)) {
		args = append(args, "--bootstrap-kubeconfig="+boot)
	}
	extra, err := FlagsFileArgs(p)
	if err != nil {
		return nil, err
	}
	return append(args, extra...), nil
}

// FlagsFileArgs returns the kubelet arguments of p.KubeletFlagsFile(), read
// as systemd reads them under kubeadm (kubeletflags.Parse); none when the
// file is missing. Look a flag up with kubeletflags.Last: the kubelet takes
// a flag's last occurrence.
func FlagsFileArgs(p config.Paths) ([]string, error) {
	data, err := os.ReadFile(p.Host(p.KubeletFlagsFile()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read kubelet flags: %w", err)
	}
	args, err := kubeletflags.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.KubeletFlagsFile(), err)
	}
	return args, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// kubeletConfigPresent reports whether the kubelet's config file exists.
func kubeletConfigPresent(p config.Paths) bool {
	return exists(p.Host(p.KubeletConfigFile()))
}
