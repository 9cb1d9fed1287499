package manifests

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

var testMetricsTLS = MetricsServerTLS{Cert: []byte("SERVING CERT\n"), Key: []byte("SERVING KEY\n"), CA: []byte("CLUSTER CA\n"), KubeletCA: []byte("KUBELET CA\n")}

func TestMetricsServerGolden(t *testing.T) {
	golden(t, "metrics-server.yaml", objectsYAML(t, MetricsServerObjects(testConfig(t), testMetricsTLS)))
}

// metrics-server is verified and verifies: the APIService carries the CA
// that signed its serving certificate (no insecureSkipTLSVerify), and it
// checks kubelets with the kubelet serving CA (no --kubelet-insecure-tls).
func TestMetricsServerVerifiedTLS(t *testing.T) {
	objs := MetricsServerObjects(testConfig(t), testMetricsTLS)
	find := func(kind string) runtime.Object {
		for _, o := range objs {
			if o.GetObjectKind().GroupVersionKind().Kind == kind {
				return o
			}
		}
		t.Fatalf("no %s", kind)
		return nil
	}
	svc := find("APIService").(*apiregv1.APIService)
	if svc.Spec.InsecureSkipTLSVerify || string(svc.Spec.CABundle) != "CLUSTER CA\n" {
		t.Errorf("APIService: insecureSkipTLSVerify %v, caBundle %q", svc.Spec.InsecureSkipTLSVerify, svc.Spec.CABundle)
	}
	if s := svc.Spec.Service; s == nil || s.Name != MetricsServerName || s.Namespace != "kube-system" || s.Port == nil || *s.Port != 443 {
		t.Errorf("APIService service %+v", s)
	}
	dep := find("Deployment").(*appsv1.Deployment)
	ctr := dep.Spec.Template.Spec.Containers[0]
	if !slices.Equal(ctr.Command, []string{"kubeforge", "component", "metrics-server"}) || !strings.HasPrefix(ctr.Image, "kubeforge.local/kubeforge:") {
		t.Errorf("not the self-image's metrics-server: %s %v", ctr.Image, ctr.Command)
	}
	args := strings.Join(ctr.Args, " ")
	for _, want := range []string{"--kubelet-certificate-authority=/etc/metrics-server/kubelet-ca/ca.crt",
		"--tls-cert-file=/etc/metrics-server/tls/tls.crt", "--tls-private-key-file=/etc/metrics-server/tls/tls.key"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %s: %s", want, args)
		}
	}
	if strings.Contains(args, "insecure") {
		t.Errorf("insecure flag in %s", args)
	}
	cm := find("ConfigMap").(*corev1.ConfigMap)
	if cm.Name != KubeletServingCAConfigMap || cm.Data["ca.crt"] != "KUBELET CA\n" {
		t.Errorf("kubelet CA ConfigMap %+v", cm)
	}
	sec := find("Secret").(*corev1.Secret)
	if sec.Type != corev1.SecretTypeTLS || string(sec.Data["tls.crt"]) != "SERVING CERT\n" || string(sec.Data["tls.key"]) != "SERVING KEY\n" {
		t.Errorf("serving Secret %+v", sec)
	}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
			t.Errorf("the serving key is readable by others: %+v", v.Secret)
		}
	}
}

// The certificate names include the one the aggregator dials.
func TestMetricsServerDNSNames(t *testing.T) {
	got := MetricsServerDNSNames("cluster.local")
	for _, want := range []string{"metrics-server.kube-system.svc", "metrics-server.kube-system.svc.cluster.local"} {
		if !slices.Contains(got, want) {
			t.Errorf("%v lacks %s", got, want)
		}
	}
}
