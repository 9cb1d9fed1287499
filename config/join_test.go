package config

import (
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
