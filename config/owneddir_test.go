package config

import (
	"strings"
	"testing"
)

func TestCheckOwnedDir(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want string // "" accepted, else a fragment of the error
	}{
		{"/etc/kubernetes/pki", ""},
		{"/var/lib/etcd", ""},
		{"/var/lib/etcd/", ""},
		{"/data/etcd", ""},
		{"/etcd-data", ""}, // a disk of its own at the top: not a system directory
		{"/srv/k8s/pki", ""},
		{"/home/alice/pki", ""},
		{"/var/lib/kubeforge/etcd", ""},
		{"", "no directory given"},
		{"var/lib/etcd", "must be an absolute path"},
		{"./pki", "must be an absolute path"},
		{"/var/lib/etcd/../..", `must not contain ".."`},
		{"/var/lib/../../etc", `must not contain ".."`},
		{"/..", `must not contain ".."`},
		{"/", "is the root directory"},
		{"//", "is the root directory"},
		{"/.", "is the root directory"},
		{"/etc", "is a system directory"},
		{"/etc/", "is a system directory"},
		{"//etc", "is a system directory"},
		{"/var/./lib", "is a system directory"},
		{"/var", "is a system directory"},
		{"/var/lib", "is a system directory"},
		{"/var/log", "is a system directory"},
		{"/usr", "is a system directory"},
		{"/root", "is a system directory"},
		{"/home", "is a system directory"},
		{"/tmp", "is a system directory"},
		{"/opt", "is a system directory"},
		{"/run", "is a system directory"},
		{"/etc/ssl", "is a system directory"},
		{"/var/lib/docker", "is a system directory"},
		{"/usr/local/bin", "is a system directory"},
		{"/usr/lib", "is a system or home directory"},
		{"/usr/local", "is a system or home directory"},
		{"/home/alice", "is a system or home directory"},
		{"/proc/1", "is inside /proc"},
		{"/sys/fs/cgroup", "is inside /sys"},
		{"/dev/shm", "is inside /dev"},
		{"/boot/efi", "is inside /boot"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			err := CheckOwnedDir(tc.dir, "/var/lib/etcd")
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "":
			case err == nil:
				t.Fatalf("accepted, want %q", tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q lacks %q", err, tc.want)
			case !strings.Contains(err.Error(), "/var/lib/etcd"):
				t.Fatalf("error %q does not say what to use instead", err)
			}
		})
	}
}

// init and `config validate` (both Complete) refuse the directories reset
// would empty, naming the field, the file or the flag.
func TestValidateOwnedDirs(t *testing.T) {
	head := "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"
	for _, tc := range []struct {
		name, content string
		want          []string
	}{
		{"certificatesDir", head + "certificatesDir: /etc\n",
			[]string{"ClusterConfiguration.certificatesDir", `"/etc" is a system directory`, "such as /etc/kubernetes/pki"}},
		{"relative certificatesDir", head + "certificatesDir: pki\n",
			[]string{"ClusterConfiguration.certificatesDir", `"pki" must be an absolute path`}},
		{"etcd dataDir", head + "etcd:\n  local:\n    dataDir: /var/lib/../..\n",
			[]string{"ClusterConfiguration.etcd.local.dataDir", `must not contain ".."`, "such as /var/lib/etcd"}},
		{"etcd dataDir root", head + "etcd:\n  local:\n    dataDir: /\n",
			[]string{"ClusterConfiguration.etcd.local.dataDir", "root directory"}},
		{"etcd data-dir extraArg", head + "etcd:\n  local:\n    extraArgs:\n    - name: data-dir\n      value: /var\n",
			[]string{"ClusterConfiguration.etcd.local.extraArgs[0].value", `"/var" is a system directory`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Complete(testHost())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("flag", func(t *testing.T) {
		c := New()
		c.Cluster.CertificatesDir = "/root"
		c.SetFrom("ClusterConfiguration.certificatesDir", "--cert-dir")
		err := c.Complete(testHost())
		if err == nil || !strings.HasPrefix(err.Error(), `--cert-dir: "/root" is a system directory`) {
			t.Fatalf("want the flag named, got %v", err)
		}
	})
	t.Run("defaults and own directories", func(t *testing.T) {
		path := writeFile(t, head+"certificatesDir: /srv/k8s/pki\netcd:\n  local:\n    dataDir: /data/etcd\n")
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Complete(testHost()); err != nil {
			t.Fatal(err)
		}
		if c.Paths.CertDir != "/srv/k8s/pki" || c.Paths.EtcdDataDir != "/data/etcd" {
			t.Fatalf("paths %s, %s", c.Paths.CertDir, c.Paths.EtcdDataDir)
		}
	})
}

// A joining node owns the cluster's certificatesDir and etcd dataDir too.
func TestAdoptClusterRefusesSystemDirs(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"certificatesDir: /etc\n", "ClusterConfiguration.certificatesDir"},
		{"etcd:\n  local:\n    dataDir: /var/lib\n", "ClusterConfiguration.etcd.local.dataDir"},
	} {
		c := New()
		if err := c.CompleteJoin(testHost(), "10.0.0.9"); err != nil {
			t.Fatal(err)
		}
		err := c.AdoptCluster([]byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n"+tc.yaml), nil, testHost())
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kube-system/kubeadm-config") {
			t.Errorf("%q: want an error naming %s and the ConfigMap, got %v", tc.yaml, tc.want, err)
		}
	}
	c := New()
	if err := c.AdoptCluster([]byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncertificatesDir: /srv/pki/\n"), nil, testHost()); err != nil {
		t.Fatal(err)
	}
	if c.Paths.CertDir != "/srv/pki" {
		t.Errorf("CertDir %q", c.Paths.CertDir)
	}
}
