package config

import (
	"strings"
	"testing"

	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
)

// A joining node's kubeletExtraArgs cgroup-root (the flag wins in the
// kubelet) also goes into its config.yaml, instead of the first node's
// cgroupRoot that the cluster's kubelet-config carries.
func TestAdoptClusterKeepsNodeCgroupRoot(t *testing.T) {
	cluster := []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: /first-node\n")
	for _, tc := range []struct {
		name  string
		extra []v1beta4.Arg
		want  string
	}{
		{"cluster's", nil, "/first-node"},
		{"node's own", []v1beta4.Arg{{Name: "cgroup-root", Value: "/this-node"}}, "/this-node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.Join.NodeRegistration.KubeletExtraArgs = tc.extra
			if err := c.CompleteJoin(testHost(), "10.0.0.9"); err != nil {
				t.Fatal(err)
			}
			if err := c.AdoptCluster(nil, cluster, testHost()); err != nil {
				t.Fatal(err)
			}
			if c.Kubelet.CgroupRoot != tc.want {
				t.Errorf("cgroupRoot %q, want %q", c.Kubelet.CgroupRoot, tc.want)
			}
		})
	}
}

// A control-plane join no longer needs a certificate key: without one the
// shared certificates are copied to the node by hand (checked by the join
// once it knows the cluster). A key that is given must still be one.
func TestCompleteJoinCertificateKey(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		wantErr   []string
	}{
		{"no key: shared files copied by hand", "", nil},
		{"a key", strings.Repeat("ab", 32), nil},
		{"not hex", strings.Repeat("zz", 32), []string{"JoinConfiguration.controlPlane.certificateKey", "64 hexadecimal characters", "leave it empty"}},
		{"too short", "abcd", []string{"JoinConfiguration.controlPlane.certificateKey", "64 hexadecimal characters"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New()
			c.Join.ControlPlane = &v1beta4.JoinControlPlane{CertificateKey: tc.key}
			err := c.CompleteJoin(testHost(), "10.0.0.9")
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !c.IsControlPlaneJoin() || c.Join.ControlPlane.CertificateKey != tc.key || c.ThisNode.API != (Endpoint{"10.0.0.9", DefaultBindPort}) {
					t.Errorf("control-plane join not completed: key %q, endpoint %+v", c.Join.ControlPlane.CertificateKey, c.ThisNode.API)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
		})
	}
}
