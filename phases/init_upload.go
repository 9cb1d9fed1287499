// The upload-config, upload-certs and mark-control-plane phases of init.

package phases

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/manifests"
)

func runUploadKubeadmConfig(ctx context.Context, d *InitData) error {
	const phase = "upload-config"
	if err := d.ensureAdminBinding(ctx, phase); err != nil {
		return err
	}
	objs, err := manifests.UploadConfigObjects(d.Cfg)
	if err != nil {
		return err
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	return a.Apply(ctx, phase, objs[:3]...)
}

func runUploadKubeletConfig(ctx context.Context, d *InitData) error {
	objs, err := manifests.UploadConfigObjects(d.Cfg)
	if err != nil {
		return err
	}
	a, err := d.applier()
	if err != nil {
		return err
	}
	return a.Apply(ctx, "upload-config", objs[3:]...)
}

func runUploadCerts(ctx context.Context, d *InitData) error {
	const phase = "upload-certs"
	if !d.UploadCerts {
		d.Out.Printf(phase, "Skipping phase: pass --upload-certs to share the control-plane certificates with joining control-plane nodes")
		return nil
	}
	if d.CertificateKey == "" {
		k, err := uploadcerts.NewKey()
		if err != nil {
			return err
		}
		d.CertificateKey = k
	}
	key, err := uploadcerts.ParseKey(d.CertificateKey)
	if err != nil {
		return fmt.Errorf("--certificate-key: %w", err)
	}
	if d.DryRun {
		d.Out.Printf(phase, "Would encrypt the shared certificates into the kube-system/%s Secret (2-hour lifetime) with the certificate key", uploadcerts.SecretName)
		return nil
	}
	client, _, err := d.clients()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := uploadcerts.Upload(ctx, client, d.Paths, key); err != nil {
		return err
	}
	d.Out.Done(phase, "uploaded", "", start, "Stored the control plane's shared certificates in the kube-system/%s Secret, valid for 2 hours", uploadcerts.SecretName)
	d.Out.Emit(progress.Event{Phase: phase, Action: "certificate-key", Message: "Using certificate key: " + d.CertificateKey})
	return nil
}

func runMarkControlPlane(ctx context.Context, d *InitData) error {
	if d.DryRun {
		d.Out.Printf("mark-control-plane", "Would mark node %s as control-plane: taints %v", d.Cfg.NodeName(), taintStrings(d.Cfg.ThisNode.Taints))
		return nil
	}
	client, _, err := d.clients()
	if err != nil {
		return err
	}
	return markControlPlane(ctx, d.Out, client, d.Cfg.NodeName(), d.Cfg.ThisNode.Taints,
		config.Timeout(d.Cfg.Timeouts().KubernetesAPICall, time.Minute))
}

func taintStrings(ts []corev1.Taint) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.ToString())
	}
	return out
}
