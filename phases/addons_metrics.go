package phases

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

// runAddonMetricsServer installs metrics-server (the metrics.k8s.io API
// behind `kubectl top` and the HorizontalPodAutoscaler) unless
// KubeforgeConfiguration addons.metricsServer.enabled is false. Its
// serving certificate is signed by the cluster CA and kept in a Secret; a
// rerun reuses it while it is valid for the Service's names.
func runAddonMetricsServer(ctx context.Context, d *InitData) error {
	const phase = "addons"
	if !d.Cfg.Kubeforge.Addons.MetricsServer.On() {
		d.Out.Printf(phase, "Skipping metrics-server: KubeforgeConfiguration addons.metricsServer.enabled is false")
		return nil
	}
	if _, caKey, err := pki.TryLoadCA(d.Paths, pki.CAName); err == nil && caKey == nil {
		// External CA mode: kubeforge signs nothing with the cluster CA.
		d.Out.Warnf(phase, "Skipping metrics-server: its serving certificate is signed by the cluster CA, whose key %s is absent (external CA); set addons.metricsServer.enabled: false in the KubeforgeConfiguration to leave it out without this warning",
			pki.KeyPath(d.Cfg.Paths, "ca"))
		return nil
	}
	tls, err := metricsServerTLS(ctx, d, time.Now())
	if err != nil {
		return err
	}
	return applyAddon(ctx, d, "metrics-server", manifests.MetricsServerObjects(d.Cfg, tls)...)
}

// metricsServerTLS gathers the CAs and the serving pair metrics-server's
// objects carry: the kubelet serving CA, and a serving certificate signed
// by the cluster CA (the one in the metrics-server-tls Secret when it
// still fits, else a new one).
func metricsServerTLS(ctx context.Context, d *InitData, now time.Time) (manifests.MetricsServerTLS, error) {
	kubeletCA, err := pki.LoadCert(d.Paths, pki.KubeletServingCA)
	if err != nil {
		return manifests.MetricsServerTLS{}, fmt.Errorf("metrics-server verifies kubelets with the kubelet serving CA: %w (run `kubeforge init phase certs %s`)", err, pki.KubeletServingCA)
	}
	caCert, caKey, err := pki.TryLoadCA(d.Paths, pki.CAName)
	if err != nil {
		return manifests.MetricsServerTLS{}, fmt.Errorf("metrics-server's serving certificate is signed by the cluster CA: %w", err)
	}
	if caKey == nil {
		return manifests.MetricsServerTLS{}, fmt.Errorf("metrics-server's serving certificate is signed by the cluster CA, but %s is absent (external CA): provide it, or turn the addon off with addons.metricsServer.enabled: false in the KubeforgeConfiguration", pki.KeyPath(d.Cfg.Paths, "ca"))
	}
	var have pki.ServingPair
	if !d.DryRun {
		client, _, err := d.clients()
		if err != nil {
			return manifests.MetricsServerTLS{}, err
		}
		s, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, manifests.MetricsServerTLSSecret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return manifests.MetricsServerTLS{}, fmt.Errorf("read Secret %s/%s: %w", metav1.NamespaceSystem, manifests.MetricsServerTLSSecret, err)
		default:
			have = pki.ServingPair{Cert: s.Data[corev1.TLSCertKey], Key: s.Data[corev1.TLSPrivateKeyKey]}
		}
	}
	want := pki.CertConfig{CommonName: manifests.MetricsServerName,
		DNSNames: manifests.MetricsServerDNSNames(d.Cfg.Cluster.Networking.DNSDomain),
		Usages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	alg := string(d.Cfg.Cluster.EncryptionAlgorithm)
	if alg == "" {
		alg = pki.DefaultAlgorithm
	}
	pair, reused, why, err := pki.EnsureServingPair(have, caCert, caKey, want, alg, d.Cfg.CertValidity(), now)
	if err != nil {
		return manifests.MetricsServerTLS{}, fmt.Errorf("metrics-server serving certificate: %w", err)
	}
	switch {
	case reused:
		d.Out.Printf("addons", "Using the existing metrics-server serving certificate (Secret %s/%s)", metav1.NamespaceSystem, manifests.MetricsServerTLSSecret)
	case why != "":
		d.Out.Printf("addons", "Issuing a new metrics-server serving certificate: the one in Secret %s/%s cannot be reused: %s", metav1.NamespaceSystem, manifests.MetricsServerTLSSecret, why)
	}
	return manifests.MetricsServerTLS{Cert: pair.Cert, Key: pair.Key,
		CA: pki.EncodeCertPEM(caCert), KubeletCA: pki.EncodeCertPEM(kubeletCA)}, nil
}
