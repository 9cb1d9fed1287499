package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// RenameKubeconfig renames a one-context kubeconfig (a node's admin.conf)
// so that its cluster, user and context are all called name.
func RenameKubeconfig(data []byte, name string) ([]byte, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, err
	}
	cur, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("no current context %q", cfg.CurrentContext)
	}
	cl, ok := cfg.Clusters[cur.Cluster]
	if !ok {
		return nil, fmt.Errorf("context %q: no cluster %q", cfg.CurrentContext, cur.Cluster)
	}
	user, ok := cfg.AuthInfos[cur.AuthInfo]
	if !ok {
		return nil, fmt.Errorf("context %q: no user %q", cfg.CurrentContext, cur.AuthInfo)
	}
	out := clientcmdapi.NewConfig()
	out.Clusters[name] = cl
	out.AuthInfos[name] = user
	out.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	out.CurrentContext = name
	return clientcmd.Write(*out)
}

// MergeKubeconfig adds the context name of kc (made by RenameKubeconfig)
// to the kubeconfig file path, replacing an entry of that name, and makes
// it the current context, as `kind create cluster` does. The file and its
// directory are made when missing; other entries stay as they are.
func MergeKubeconfig(path string, kc []byte, name string) error {
	add, err := clientcmd.Load(kc)
	if err != nil {
		return err
	}
	cfg, err := loadOrEmpty(path)
	if err != nil {
		return err
	}
	cfg.Clusters[name] = add.Clusters[name]
	cfg.AuthInfos[name] = add.AuthInfos[name]
	cfg.Contexts[name] = add.Contexts[name]
	cfg.CurrentContext = name
	return writeKubeconfig(path, cfg)
}

// RemoveKubeconfigContext removes the cluster's context, cluster and user
// (all called ContextName(cluster)) from the kubeconfig file path; the
// current context is cleared if it was that one. A missing file or entry
// is not an error.
func RemoveKubeconfigContext(path, cluster string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	cfg, err := loadOrEmpty(path)
	if err != nil {
		return err
	}
	name := ContextName(cluster)
	_, c1 := cfg.Contexts[name]
	_, c2 := cfg.Clusters[name]
	_, c3 := cfg.AuthInfos[name]
	if !c1 && !c2 && !c3 {
		return nil
	}
	delete(cfg.Contexts, name)
	delete(cfg.Clusters, name)
	delete(cfg.AuthInfos, name)
	if cfg.CurrentContext == name {
		cfg.CurrentContext = ""
	}
	return writeKubeconfig(path, cfg)
}

func loadOrEmpty(path string) (*clientcmdapi.Config, error) {
	cfg, err := clientcmd.LoadFromFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return clientcmdapi.NewConfig(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w (fix or move it, or set KUBECONFIG to another file)", path, err)
	}
	return cfg, nil
}

func writeKubeconfig(path string, cfg *clientcmdapi.Config) error {
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	_, err = fsutil.WriteFile(path, b, 0o600)
	return err
}
