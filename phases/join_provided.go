package phases

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/pki"
)

// joinKubeconfigs are the kubeconfig files of a control-plane node: the
// join's kubeconfig phase makes the first three; kubelet.conf comes from
// the kubelet's TLS bootstrap, or, under an external CA, is provided.
var joinKubeconfigs = []string{"admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"}

// externalCA reports whether a control-plane join runs under the cluster's
// external CA (kubeadm's external CA mode): the uploaded shared files carry
// ca.crt without ca.key, or, without them, ca.crt is on the node without
// ca.key.
func (d *JoinData) externalCA() bool {
	if d.sharedCerts != nil {
		_, crt := d.sharedCerts["ca.crt"]
		_, key := d.sharedCerts["ca.key"]
		return crt && !key
	}
	return slices.Contains(pki.ExternalCAs(d.Paths), "ca")
}

// checkProvidedFiles verifies, once the cluster is known and before the
// join writes anything, the certificates and kubeconfig files already on a
// node that joins as a control plane, as kubeadm's join accepts them:
//
//   - under an external CA (no ca.key; CSRs from `kubeforge certs
//     generate-csr` signed elsewhere), every leaf certificate of an external
//     CA and every kubeconfig file, kubelet.conf included (nothing in the
//     cluster can sign the kubelet's bootstrap request), must be in place
//     and fit this node: signed by the cluster's CA, with this node's
//     names, addresses and the cluster's endpoint, not expired; kubelet.conf
//     must point at the control-plane endpoint (the node's own API server
//     does not run yet when its kubelet registers);
//   - otherwise kubeforge makes them, and a kubeconfig file that is already
//     there must fit the same way (kubelet.conf must not be there at all).
//
// It checks a scratch copy of the certificate dir and the kubeconfig files,
// with the shared files as download-certs will write them, through the same
// pki code the certs and kubeconfig phases run: nothing on the node changes
// and nothing is signed. Each refusal names the file and the fix.
func (d *JoinData) checkProvidedFiles() error {
	if !d.Cfg.IsControlPlaneJoin() {
		return nil
	}
	p := d.Cfg.Paths
	external := d.externalCA()
	var provided []string
	for _, f := range joinKubeconfigs {
		if fileExists(d.Paths.Host(p.Kubeconfig(f))) {
			provided = append(provided, f)
		}
	}
	if !external && d.resuming {
		// This node's unfinished join wrote kubelet.conf itself
		// (kubelet-start): it is checked as the other files are.
		provided = slices.DeleteFunc(provided, func(f string) bool { return f == "kubelet.conf" })
	}
	if !external {
		if slices.Contains(provided, "kubelet.conf") {
			return fmt.Errorf("%s already exists: the cluster's CA key is shared with control-plane nodes, so the kubelet gets its credentials by TLS bootstrap; run `kubeforge reset` first", p.Kubeconfig("kubelet.conf"))
		}
		if len(provided) == 0 {
			return nil
		}
	}
	tmp, err := os.MkdirTemp("", "kubeforge-join-check-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	scratch := p.WithRoot(tmp)
	if err := copyTree(d.Paths.Host(p.CertDir), scratch.Host(p.CertDir)); err != nil {
		return fmt.Errorf("check the certificates in %s: %w", p.CertDir, err)
	}
	for _, f := range provided {
		if err := copyTree(d.Paths.Host(p.Kubeconfig(f)), scratch.Host(p.Kubeconfig(f))); err != nil {
			return fmt.Errorf("check %s: %w", p.Kubeconfig(f), err)
		}
	}
	if err := uploadcerts.Write(scratch, d.sharedCerts); err != nil {
		return err
	}
	spec := d.PKISpec()
	spec.Paths = scratch
	var errs []error
	if external {
		externalCAs := pki.ExternalCAs(scratch)
		for _, c := range pki.Certificates {
			ca, ok := pki.LookupCert(c.CAName)
			if c.IsCA || !ok || !slices.Contains(externalCAs, ca.BaseName) {
				continue
			}
			if _, err := pki.Ensure(spec, c.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, f := range joinKubeconfigs {
		if !external && !slices.Contains(provided, f) {
			continue
		}
		if _, err := pki.EnsureKubeconfig(spec, f); err != nil {
			errs = append(errs, err)
			continue
		}
		if f == "kubelet.conf" {
			if err := kubeletConfServer(spec, p.Kubeconfig(f)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		if external {
			d.Out.Printf("preflight", "External CA mode: this node's certificates and kubeconfig files are in place and fit; the join signs nothing")
		}
		return nil
	}
	lines := make([]string, len(errs))
	for i, e := range errs {
		lines[i] = "  - " + strings.ReplaceAll(e.Error(), "\n", "\n    ")
	}
	if external {
		return fmt.Errorf("this node joins as a control plane under the cluster's external CA (%s without %s), so its own certificates and kubeconfig files must be in place (`kubeforge certs generate-csr`, then sign with your CA), and some do not fit; nothing was written:\n%s",
			pki.CertPath(p, "ca"), pki.KeyPath(p, "ca"), strings.Join(lines, "\n"))
	}
	return fmt.Errorf("kubeconfig files on this node do not fit the cluster it joins; nothing was written:\n%s", strings.Join(lines, "\n"))
}

// kubeletConfServer refuses a provided kubelet.conf that points at this
// node's own API server: while the node joins, that server waits for the
// node's etcd member, which the join adds only after the kubelet registers.
func kubeletConfServer(spec pki.Spec, logical string) error {
	cfg, err := pki.LoadKubeconfig(spec.Paths, logical)
	if err != nil {
		return err
	}
	want, err := spec.ControlPlaneURL()
	if err != nil {
		return err
	}
	if local, err := spec.LocalURL(); err == nil && local == want {
		return fmt.Errorf("%s cannot be used: the cluster has no controlPlaneEndpoint (ClusterConfiguration.controlPlaneEndpoint), and a control-plane node joins under an external CA with a kubelet.conf that points at it; set one (`kubeforge init --control-plane-endpoint` when the cluster is made)", logical)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.Clusters[ctx.Cluster] == nil {
		return fmt.Errorf("%s has no cluster for its current context %q", logical, cfg.CurrentContext)
	}
	if got := strings.TrimSuffix(cfg.Clusters[ctx.Cluster].Server, "/"); got != want {
		return fmt.Errorf("%s points at %s: on a joining control-plane node it must point at the control-plane endpoint %s (the node's own API server cannot answer before its etcd member is added, after the kubelet registers): set its server to %s", logical, got, want, want)
	}
	return nil
}

// copyTree copies a file or a directory tree (regular files only, with
// their modes) to dst; a missing src copies nothing.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == src {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}
