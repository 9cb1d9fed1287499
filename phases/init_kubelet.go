// The kubelet-start and kubelet-finalize phases of init.

package phases

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/pki"
)

func runKubeletStart(ctx context.Context, d *InitData) error {
	const phase = "kubelet-start"
	if err := useRotatingKubeletCert(d.Node, phase); err != nil {
		return err
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would start the node service (containerd, then the kubelet with %s)", d.Cfg.Paths.KubeletConfigFile())
		return nil
	}
	if err := d.requireHost(); err != nil {
		return err
	}
	start := time.Now()
	if d.Cfg.Kubeforge.ControlPlane.Processes() && d.EarlyNodeStart {
		// The node service runs the manifests the moment they are written,
		// while containerd and the kubelet start: in a whole init,
		// wait-control-plane waits for it (WaitNodeService). Run on its
		// own, this phase waits as with static pods.
		d.StartNodeEarly(ctx)
		d.Out.Done(phase, "started", "", start, "The node service is starting; it runs the control plane from %s as its own processes", d.Cfg.Paths.ManifestsDir)
		return nil
	}
	if err := d.WaitNodeService(ctx); err != nil {
		return err
	}
	d.Out.Done(phase, "started", "", start, "The node service is running; the kubelet starts the control plane from %s", d.Cfg.Paths.ManifestsDir)
	return nil
}

// useRotatingKubeletCert moves kubelet.conf's embedded client certificate
// to /var/lib/kubelet/pki/kubelet-client-current.pem and points kubelet.conf
// at it, before the kubelet first starts: the kubelet then rotates the file
// itself, and, unlike kubeadm's kubelet-finalize, no kubelet restart is
// needed.
func useRotatingKubeletCert(n *Node, phase string) error {
	logical := n.Cfg.Paths.Kubeconfig("kubelet.conf")
	kc, err := clientcmd.LoadFromFile(n.Paths.Host(logical))
	if err != nil {
		return fmt.Errorf("read %s: %w (run the kubeconfig phase first)", logical, err)
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil || kc.AuthInfos[ctx.AuthInfo] == nil {
		return fmt.Errorf("%s has no current context/user", logical)
	}
	auth := kc.AuthInfos[ctx.AuthInfo]
	pem := filepath.Join(n.Cfg.Paths.KubeletPKIDir(), pki.KubeletClientCurrent)
	if len(auth.ClientCertificateData) == 0 {
		// Already done; a node made before the symlink layout gets it now.
		_, err := pki.EnsureKubeletClientLink(n.Paths, time.Now())
		return err
	}
	if err := n.WriteFile(phase, "kubelet client certificate", pem,
		append(append([]byte{}, auth.ClientCertificateData...), auth.ClientKeyData...), 0o600, HideContent); err != nil {
		return err
	}
	// The kubelet rotates the certificate only when this is a symlink.
	if _, err := pki.EnsureKubeletClientLink(n.Paths, time.Now()); err != nil {
		return fmt.Errorf("kubelet client certificate: %w", err)
	}
	auth.ClientCertificateData, auth.ClientKeyData = nil, nil
	auth.ClientCertificate, auth.ClientKey = pem, pem
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return n.WriteFile(phase, "kubeconfig using the kubelet's rotating certificate", logical, b, 0o600, HideContent)
}

func runKubeletFinalize(ctx context.Context, d *InitData) error {
	const phase = "kubelet-finalize"
	kc, err := clientcmd.LoadFromFile(d.Paths.Host(d.Cfg.Paths.Kubeconfig("kubelet.conf")))
	if err != nil {
		return err
	}
	for _, a := range kc.AuthInfos {
		if len(a.ClientCertificateData) > 0 {
			d.Out.Warnf(phase, "kubelet.conf embeds its client certificate: run `kubeforge init phase kubelet-start` so the kubelet rotates it")
			return nil
		}
	}
	d.Out.Printf(phase, "The kubelet uses its rotating client certificate %s", filepath.Join(d.Cfg.Paths.KubeletPKIDir(), "kubelet-client-current.pem"))
	return nil
}
