package manifests

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// CoreDNS reaches the API server at the control-plane endpoint, not
// through the kubernetes Service (which works only once kube-proxy has
// programmed it); its upstream is the kubelet's resolv.conf (dnsPolicy
// Default), and the Corefile is kubeadm's, loop detection included.
func TestCoreDNSObjects(t *testing.T) {
	for _, c := range []struct{ endpoint, host, port string }{
		{"", "10.201.0.2", "6443"},
		{"cp.example.test", "cp.example.test", "6443"},
		{"10.0.0.9:8443", "10.0.0.9", "8443"},
	} {
		cfg := testConfig(t)
		cfg.Cluster.ControlPlaneEndpoint = c.endpoint
		var dep *appsv1.Deployment
		var svc *corev1.Service
		var corefile string
		for _, o := range CoreDNSObjects(cfg) {
			switch o := o.(type) {
			case *appsv1.Deployment:
				dep = o
			case *corev1.Service:
				svc = o
			case *corev1.ConfigMap:
				corefile = o.Data[corefileKey]
			}
		}
		if dep == nil || svc == nil {
			t.Fatal("no Deployment or Service")
		}
		env := map[string]string{}
		for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if env["KUBERNETES_SERVICE_HOST"] != c.host || env["KUBERNETES_SERVICE_PORT"] != c.port {
			t.Errorf("endpoint %q: CoreDNS env %v, want host %s port %s", c.endpoint, env, c.host, c.port)
		}
		if dep.Spec.Template.Spec.DNSPolicy != corev1.DNSDefault {
			t.Errorf("dnsPolicy %s", dep.Spec.Template.Spec.DNSPolicy)
		}
		if svc.Spec.ClusterIP != "10.96.0.10" {
			t.Errorf("kube-dns at %s", svc.Spec.ClusterIP)
		}
		for _, want := range []string{"forward . /etc/resolv.conf", "\n    loop\n", "kubernetes cluster.local in-addr.arpa ip6.arpa"} {
			if !strings.Contains(corefile, want) {
				t.Errorf("the Corefile lacks %q:\n%s", want, corefile)
			}
		}
	}
}

// kube-proxy sees the host's root only read-only, recursively; the xtables
// lock is the one host file it may write.
func TestKubeProxyMounts(t *testing.T) {
	objs, err := KubeProxyObjects(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		ds, ok := o.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		writable := map[string]bool{}
		for _, m := range ds.Spec.Template.Spec.Containers[0].VolumeMounts {
			if m.Name == "host-root" && (!m.ReadOnly || m.RecursiveReadOnly == nil || *m.RecursiveReadOnly != corev1.RecursiveReadOnlyIfPossible) {
				t.Errorf("the host root is mounted writable: %+v", m)
			}
			if !m.ReadOnly {
				writable[m.MountPath] = true
			}
		}
		if !writable["/run/xtables.lock"] || !writable["/host/run/xtables.lock"] || len(writable) != 3 {
			t.Errorf("writable mounts %v, want the xtables lock in the container and in the host root, and the config volume", writable)
		}
		return
	}
	t.Fatal("no DaemonSet")
}
