// Package certrenew is the node service's certificate renewal duty. On a
// control-plane node it renews the leaf certificates and the kubeconfig
// files kubeforge made (pki.RenewNames) once a share of their lifetime has
// passed (KubeforgeConfiguration.certificateRenewal.renewAt, 2/3 by
// default), makes the components use them, and shows expiry before it
// hurts: a Prometheus gauge of the seconds until each certificate expires,
// and a warning (duty health, Node event) for a certificate inside its
// renewal window that could not be renewed, and for a CA expiring within a
// year (CAs are never renewed automatically).
//
// Which components pick up renewed files by themselves (checked in the
// upstream code of the bundled versions):
//   - kube-apiserver: serving certificate, client CA and request-header CA
//     (dynamiccertificates file controllers), the front-proxy client
//     certificate (kube-aggregator's NewDynamicServingContentFromFiles), the
//     kubelet client certificate (pkg/kubelet/client: ReloadTLSFiles), the
//     etcd client certificate (etcd's transport.TLSInfo reads the files at
//     each handshake).
//   - etcd: server and peer certificates (read at each handshake).
//   - the kubelet: kubelet.conf points at the certificate it rotates itself.
//   - admin.conf, super-admin.conf: read by each kubectl run.
//
// kube-controller-manager and kube-scheduler read their kubeconfig (with the
// certificate embedded, as kubeadm writes it) once at start: after renewing
// it, the duty restarts that static pod alone by recording the new
// certificate's serial in an annotation of its manifest (the kubelet then
// replaces the pod, without crash-loop back-off). Both run with leader
// election, so the API stays up and another replica takes over on HA
// clusters. A kubelet.conf that still embeds its certificate gets the kubelet
// restarted (containers keep running).
package certrenew

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/components/node/duty"
	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/manifests"
	"github.com/kubeforge/kubeforge/pki"
)

// Name is the duty's name in `kubeforge node status`.
const Name = "certificate-renewal"

// RestartAnnotation is set on a static pod whose kubeconfig was renewed: its
// value is the serial number of the new client certificate. Changing it makes
// the kubelet replace the pod.
const RestartAnnotation = "kubeforge.io/client-certificate-serial"

// Event reasons on the Node.
const (
	ReasonRenewalFailed = "CertificateRenewalFailed"
	ReasonCAExpiring    = "CertificateAuthorityExpiring"
)

// restartOnRenewal maps a kubeconfig to the static pod that reads it only
// at start (manifests.ControlPlane's Kubeconfig).
var restartOnRenewal = func() map[string]string {
	out := map[string]string{}
	for _, c := range manifests.ControlPlane {
		if c.Kubeconfig != "" {
			out[c.Kubeconfig] = c.Name
		}
	}
	return out
}()

// kubeletShare: a certificate the kubelet rotates (at 70-90% of its
// lifetime) is reported when less than this share of its lifetime is left.
const kubeletShare = 0.9

// Options configure the duty.
type Options struct {
	Paths config.Paths
	Log   *slog.Logger
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Client posts Node events and reads the cluster's ClusterConfiguration;
	// by default one is built from the node's kubelet.conf.
	Client kubernetes.Interface
	// NodeName is the Node events are about (node.NodeName by default).
	NodeName string
	// RestartKubelet restarts the kubelet (node.RestartKubelet by default).
	RestartKubelet func() error
	// EventInterval: the same warning is posted as a Node event at most
	// this often (1 h by default).
	EventInterval time.Duration
}

// Renewer is the duty's state.
type Renewer struct {
	o       Options
	metrics *metrics

	mu         sync.Mutex
	lastEvent  map[string]time.Time
	clientErr  error
	clientOnce sync.Once
}

// New returns a Renewer.
func New(o Options) *Renewer {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.EventInterval == 0 {
		o.EventInterval = time.Hour
	}
	if o.RestartKubelet == nil {
		p := o.Paths
		o.RestartKubelet = func() error { return node.RestartKubelet(p) }
	}
	return &Renewer{o: o, lastEvent: map[string]time.Time{}}
}

// Duty is the renewal duty for the node service's duty list.
func Duty(o Options) duty.Duty {
	r := New(o)
	return duty.Duty{Name: Name, Run: r.Run}
}

// IsControlPlane reports whether p is a control-plane node's layout: the
// API server's static pod manifest and the cluster CA are there.
func IsControlPlane(p config.Paths) bool {
	for _, f := range []string{p.Manifest(manifests.KubeAPIServer), pki.CertPath(p, "ca")} {
		if _, err := os.Stat(p.Host(f)); err != nil {
			return false
		}
	}
	return true
}

// Run is the duty, until ctx ends. Each round reads the node's
// KubeforgeConfiguration: turned off, or not (yet) a control-plane node (the
// node service starts before init writes the manifests), it reports
// Disabled and looks again later; otherwise it serves the metrics endpoint
// and renews what is due.
func (r *Renewer) Run(ctx context.Context, h *duty.Health) error {
	p := r.o.Paths
	var stop func()
	var serving string
	var metricsErr error // the endpoint could not listen: renewals go on, the health warns
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		kf, err := config.LoadKubeforge(p)
		if err != nil {
			return err
		}
		cr := kf.CertificateRenewal
		share, err := cr.Share()
		if err != nil {
			return fmt.Errorf("%s: certificateRenewal.renewAt: %w", p.KubeforgeConfigFile(), err)
		}
		wait := time.Minute
		switch {
		case !cr.On():
			h.Disabled("turned off (%s: certificateRenewal.enabled is false); renew with `kubeforge certs renew`", p.KubeforgeConfigFile())
		case !IsControlPlane(p):
			h.Disabled("not a control-plane node (no %s): the kubelet rotates its own client certificate", p.Manifest(manifests.KubeAPIServer))
			wait = 2 * time.Second // init writes the manifest after the node service starts
		default:
			if r.metrics == nil {
				r.metrics = newMetrics(p, r.o.Now, share)
			}
			if serving != cr.MetricsBindAddress {
				if stop != nil {
					stop()
					stop, serving = nil, ""
				}
				// A port taken by something else does not stop the
				// renewals: the health says so, and the next round
				// tries to listen again.
				if stop, metricsErr = r.metrics.serve(cr.MetricsBindAddress, r.o.Log); metricsErr == nil {
					serving = cr.MetricsBindAddress
				}
			}
			r.metrics.setShare(share)
			rep := r.Reconcile(ctx, share)
			if metricsErr != nil {
				rep.Failed["metrics"] = metricsErr.Error()
				wait = min(wait, 10*time.Second)
			}
			rep.report(h, cr.MetricsBindAddress)
			if !rep.Next.IsZero() {
				wait = min(wait, max(time.Until(rep.Next), time.Second))
			}
		}
		if (!cr.On() || !IsControlPlane(p)) && stop != nil {
			stop()
			stop, serving = nil, ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Report is what one Reconcile did and found.
type Report struct {
	// Renewed lists what was renewed; Restarted, the components restarted.
	Renewed   []string
	Restarted []string
	// Failed: inside its renewal window and not renewed (name → why).
	Failed map[string]string
	// CAWarnings: CAs expiring within a year.
	CAWarnings map[string]string
	// Next is the next renewal time (zero: none scheduled).
	Next     time.Time
	NextName string
}

func (rep Report) report(h *duty.Health, metricsAddr string) {
	var msgs []string
	for _, n := range slices.Sorted(maps.Keys(rep.Failed)) {
		msgs = append(msgs, n+": "+rep.Failed[n])
	}
	for _, n := range slices.Sorted(maps.Keys(rep.CAWarnings)) {
		msgs = append(msgs, n+": "+rep.CAWarnings[n])
	}
	next := "no certificate to renew automatically"
	if !rep.Next.IsZero() {
		next = fmt.Sprintf("next renewal %s at %s", rep.NextName, rep.Next.UTC().Format(time.RFC3339))
	}
	if len(msgs) > 0 {
		h.Warn("%s; %s; metrics on http://%s/metrics", strings.Join(msgs, "; "), next, metricsAddr)
		return
	}
	h.OK("%s; metrics on http://%s/metrics", next, metricsAddr)
}

// Reconcile renews every certificate and kubeconfig whose renewal time has
// come, restarts the components that need it, posts Node events for what
// cannot be renewed, and says when to look again.
func (r *Renewer) Reconcile(ctx context.Context, share float64) Report {
	p := r.o.Paths
	now := r.o.Now()
	rep := Report{Failed: map[string]string{}, CAWarnings: map[string]string{}}
	rows, err := pki.CheckExpiration(p, now)
	if err != nil {
		rep.Failed["pki"] = err.Error()
		return rep
	}
	pki.SetRenewal(rows, true, share)
	// A kubelet client certificate written as a plain file (by kubeforge
	// before the symlink layout) is never rotated by the kubelet.
	if changed, err := pki.EnsureKubeletClientLink(p, now); err != nil {
		rep.Failed["kubelet.conf"] = "the kubelet cannot rotate its client certificate: " + err.Error()
	} else if changed {
		r.o.Log.Info("made the kubelet's client certificate a symlink so that the kubelet rotates it", "path", pki.KubeletClientCurrent)
	}
	var cluster *clusterSettings
	for _, row := range rows {
		switch {
		case row.Missing:
			continue
		case row.Error != "":
			if !row.CertificateAuthority && row.Renewal == pki.RenewalAutomatic {
				rep.Failed[row.Name] = "cannot be read: " + row.Error
			}
			continue
		}
		switch row.Renewal {
		case pki.RenewalNeverCA:
			if row.Residual() < pki.CAWarningWindow {
				rep.CAWarnings[row.Name] = fmt.Sprintf("the CA expires on %s and is never renewed automatically: plan its rotation (see the README, Certificate renewal)",
					row.ExpirationDate.Format(time.RFC3339))
			}
			continue
		case pki.RenewalKubelet:
			if now.After(pki.RenewalPoint(row.NotBefore, row.ExpirationDate, kubeletShare)) {
				rep.Failed[row.Name] = fmt.Sprintf("the kubelet has not rotated its client certificate %s, which expires on %s: check the kubelet's log and pending CertificateSigningRequests",
					row.Path, row.ExpirationDate.Format(time.RFC3339))
			}
			continue
		case pki.RenewalExternal:
			if due := pki.RenewalPoint(row.NotBefore, row.ExpirationDate, share); !now.Before(due) {
				rep.Failed[row.Name] = fmt.Sprintf("inside its renewal window (expires %s) and its CA is external (no CA key): renew it with your CA and replace %s",
					row.ExpirationDate.Format(time.RFC3339), row.Path)
			}
			continue
		}
		if now.Before(row.RenewalDate) {
			rep.setNext(row.Name, row.RenewalDate)
			continue
		}
		if cluster == nil {
			cluster = r.clusterSettings(ctx)
		}
		res, err := pki.Renew(r.renewSpec(cluster, row), row.Name)
		if err != nil {
			r.o.Log.Error("certificate renewal failed", "name", row.Name, "err", err)
			rep.Failed[row.Name] = fmt.Sprintf("renewal failed (expires %s): %v", row.ExpirationDate.Format(time.RFC3339), err)
			if r.metrics != nil {
				r.metrics.failures.WithLabelValues(row.Name).Inc()
			}
			continue
		}
		r.o.Log.Info("certificate renewed", "name", row.Name, "path", res.CertPath, "notAfter", res.Cert.NotAfter)
		if r.metrics != nil {
			r.metrics.renewals.WithLabelValues(row.Name).Inc()
		}
		rep.Renewed = append(rep.Renewed, row.Name)
		rep.setNext(row.Name, pki.RenewalPoint(res.Cert.NotBefore, res.Cert.NotAfter, share))
	}
	rep.Restarted = r.restartStale(rep)
	r.postEvents(ctx, rep, now)
	return rep
}

func (rep *Report) setNext(name string, t time.Time) {
	if rep.Next.IsZero() || t.Before(rep.Next) {
		rep.Next, rep.NextName = t, name
	}
}

// restartStale restarts the static pods whose kubeconfig's certificate is
// newer than the one they started with, and the kubelet when its embedded
// kubelet.conf was renewed. A pod whose manifest carries no annotation
// started with the current file unless this Reconcile renewed it.
func (r *Renewer) restartStale(rep Report) []string {
	var restarted []string
	renewed := map[string]bool{}
	for _, n := range rep.Renewed {
		renewed[n] = true
	}
	for _, conf := range slices.Sorted(maps.Keys(restartOnRenewal)) {
		component := restartOnRenewal[conf]
		serial, err := kubeconfigSerial(r.o.Paths, conf)
		if err != nil {
			continue // missing: nothing runs with it
		}
		changed, err := annotateManifest(r.o.Paths, component, serial, renewed[conf])
		if err != nil {
			r.o.Log.Error("cannot restart a component to use its renewed kubeconfig", "component", component, "err", err)
			rep.Failed[conf] = fmt.Sprintf("renewed, but %s could not be restarted to use it: %v", component, err)
			continue
		}
		if changed {
			r.o.Log.Info("restarting a static pod to use its renewed kubeconfig", "component", component, "serial", serial)
			restarted = append(restarted, component)
		}
	}
	if renewed["kubelet.conf"] {
		if err := r.o.RestartKubelet(); err != nil {
			rep.Failed["kubelet.conf"] = fmt.Sprintf("renewed, but the kubelet could not be restarted to use it: %v", err)
		} else {
			restarted = append(restarted, "kubelet")
		}
	}
	return restarted
}

// kubeconfigSerial is the serial number of the client certificate embedded
// in a kubeconfig of the Kubernetes dir.
func kubeconfigSerial(p config.Paths, file string) (string, error) {
	kc, err := clientcmd.LoadFromFile(p.Host(p.Kubeconfig(file)))
	if err != nil {
		return "", err
	}
	ctx := kc.Contexts[kc.CurrentContext]
	if ctx == nil || kc.AuthInfos[ctx.AuthInfo] == nil || len(kc.AuthInfos[ctx.AuthInfo].ClientCertificateData) == 0 {
		return "", errors.New("no embedded client certificate")
	}
	certs, err := pki.ParseCerts(kc.AuthInfos[ctx.AuthInfo].ClientCertificateData)
	if err != nil {
		return "", err
	}
	return certs[0].SerialNumber.Text(16), nil
}

// annotateManifest sets RestartAnnotation to serial in component's static
// pod manifest when force is set, or when the annotation is there with
// another serial (a renewal whose restart did not happen). It reports
// whether the file changed.
func annotateManifest(p config.Paths, component, serial string, force bool) (bool, error) {
	path := p.Manifest(component)
	data, err := os.ReadFile(p.Host(path))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var pod corev1.Pod
	if err := yaml.Unmarshal(data, &pod); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	cur, has := pod.Annotations[RestartAnnotation]
	if cur == serial || (!force && !has) {
		return false, nil
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[RestartAnnotation] = serial
	out, err := yaml.Marshal(&pod)
	if err != nil {
		return false, err
	}
	if _, err := fsutil.WriteFile(p.Host(path), out, 0o600); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

// clusterSettings are the ClusterConfiguration fields renewal follows.
type clusterSettings struct {
	CertificateValidityPeriod *metav1.Duration `json:"certificateValidityPeriod,omitempty"`
	EncryptionAlgorithm       string           `json:"encryptionAlgorithm,omitempty"`
}

// ReadClusterSettings reads the certificateValidityPeriod (0 when unset) and
// encryptionAlgorithm of the cluster's ClusterConfiguration, from the
// kube-system/kubeadm-config ConfigMap.
func ReadClusterSettings(ctx context.Context, c kubernetes.Interface) (time.Duration, string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cm, err := c.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(cctx, "kubeadm-config", metav1.GetOptions{})
	if err != nil {
		return 0, "", fmt.Errorf("read kube-system/kubeadm-config: %w", err)
	}
	var s clusterSettings
	if err := yaml.Unmarshal([]byte(cm.Data["ClusterConfiguration"]), &s); err != nil {
		return 0, "", fmt.Errorf("kube-system/kubeadm-config: decode the ClusterConfiguration: %w", err)
	}
	var v time.Duration
	if s.CertificateValidityPeriod != nil {
		v = s.CertificateValidityPeriod.Duration
	}
	return v, s.EncryptionAlgorithm, nil
}

// clusterSettings reads the cluster's settings with the node's
// credentials; empty when it cannot.
func (r *Renewer) clusterSettings(ctx context.Context) *clusterSettings {
	s := &clusterSettings{}
	c, err := r.client()
	if err == nil {
		var v time.Duration
		v, s.EncryptionAlgorithm, err = ReadClusterSettings(ctx, c)
		if v > 0 {
			s.CertificateValidityPeriod = &metav1.Duration{Duration: v}
		}
	}
	if err != nil {
		r.o.Log.Warn("cannot read the ClusterConfiguration: renewed certificates keep their current lifetime and key type", "err", err)
	}
	return s
}

// renewSpec is the spec to renew row with: the cluster's
// certificateValidityPeriod and encryptionAlgorithm, or, when unknown, the
// lifetime and key type of the certificate being replaced.
func (r *Renewer) renewSpec(cluster *clusterSettings, row pki.ExpirationInfo) pki.Spec {
	s := pki.Spec{Paths: r.o.Paths, Now: r.o.Now}
	if cluster.CertificateValidityPeriod != nil && cluster.CertificateValidityPeriod.Duration > 0 {
		s.Validity = cluster.CertificateValidityPeriod.Duration
	} else if row.Cert != nil {
		s.Validity = row.Cert.NotAfter.Sub(row.Cert.NotBefore) - pki.CertificateBackdate
		if s.Validity <= 0 {
			s.Validity = row.Cert.NotAfter.Sub(row.Cert.NotBefore)
		}
	}
	s.Algorithm = cluster.EncryptionAlgorithm
	if s.Algorithm == "" && row.Cert != nil {
		s.Algorithm = algorithmOf(row.Cert)
	}
	return s
}

// algorithmOf names the key algorithm of c as ClusterConfiguration's
// encryptionAlgorithm does; "" (the default) when it is none of them.
func algorithmOf(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 3072:
			return pki.AlgorithmRSA3072
		case 4096:
			return pki.AlgorithmRSA4096
		}
		return pki.AlgorithmRSA2048
	case *ecdsa.PublicKey:
		if k.Curve.Params().BitSize == 384 {
			return pki.AlgorithmECDSAP384
		}
		return pki.AlgorithmECDSAP256
	}
	return ""
}

// client is the node's API client (kubelet.conf), built once.
func (r *Renewer) client() (kubernetes.Interface, error) {
	r.clientOnce.Do(func() {
		if r.o.Client != nil {
			return
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", r.o.Paths.Host(r.o.Paths.Kubeconfig("kubelet.conf")))
		if err != nil {
			r.clientErr = err
			return
		}
		cfg.UserAgent = "kubeforge-node/" + Name
		r.o.Client, r.clientErr = kubernetes.NewForConfig(cfg)
	})
	return r.o.Client, r.clientErr
}

// postEvents posts a Warning event on the Node for each problem, at most
// once per EventInterval for the same message.
func (r *Renewer) postEvents(ctx context.Context, rep Report, now time.Time) {
	type ev struct{ reason, name, msg string }
	var evs []ev
	for _, n := range slices.Sorted(maps.Keys(rep.Failed)) {
		evs = append(evs, ev{ReasonRenewalFailed, n, fmt.Sprintf("Certificate %s was not renewed: %s", n, rep.Failed[n])})
	}
	for _, n := range slices.Sorted(maps.Keys(rep.CAWarnings)) {
		evs = append(evs, ev{ReasonCAExpiring, n, fmt.Sprintf("Certificate authority %s: %s", n, rep.CAWarnings[n])})
	}
	if len(evs) == 0 {
		return
	}
	name := r.o.NodeName
	if name == "" {
		name = node.NodeName(r.o.Paths)
	}
	if name == "" {
		return
	}
	c, err := r.client()
	if err != nil {
		r.o.Log.Warn("cannot post Node events", "err", err)
		return
	}
	for i, e := range evs {
		key := e.reason + "/" + e.msg
		r.mu.Lock()
		last, seen := r.lastEvent[key]
		r.mu.Unlock()
		if seen && now.Sub(last) < r.o.EventInterval {
			continue
		}
		t := metav1.NewTime(now)
		obj := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", name, time.Now().UnixNano()+int64(i)), Namespace: metav1.NamespaceDefault},
			InvolvedObject: corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: name, UID: types.UID(name)},
			Reason:         e.reason,
			Message:        e.msg,
			Type:           corev1.EventTypeWarning,
			Source:         corev1.EventSource{Component: "kubeforge-node", Host: name},
			FirstTimestamp: t, LastTimestamp: t, Count: 1,
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.CoreV1().Events(metav1.NamespaceDefault).Create(cctx, obj, metav1.CreateOptions{})
		cancel()
		if err != nil {
			r.o.Log.Warn("cannot post a Node event", "reason", e.reason, "err", err)
			continue
		}
		r.mu.Lock()
		r.lastEvent[key] = now
		r.mu.Unlock()
	}
}
