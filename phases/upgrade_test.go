package phases

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/v1beta4"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/internal/version"
	"github.com/kubeforge/kubeforge/manifests"
)

var upgradeHost = config.HostFacts{Hostname: "cp1", CgroupV1: true, HasNft: true,
	DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}

// TestUpgradeConfigRendersTheSameManifests: a cluster's configuration as
// the upgrade reads it back (the ConfigMaps init uploaded, the node's
// kubelet file, its name and API endpoint) renders byte for byte the
// manifests and kubelet configuration init wrote, so an upgrade to the
// same build changes nothing, and one to another build only what the
// build changes.
func TestUpgradeConfigRendersTheSameManifests(t *testing.T) {
	initCfg := config.New()
	initCfg.Init.NodeRegistration.Name = "cp1"
	initCfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	initCfg.Init.LocalAPIEndpoint.BindPort = 6444
	initCfg.Cluster.Networking.PodSubnet = "10.250.0.0/16"
	initCfg.Cluster.APIServer.ExtraArgs = append(initCfg.Cluster.APIServer.ExtraArgs, v1beta4Arg("v", "2"))
	initCfg.Kubelet.CgroupRoot = "/node-cp1"
	if err := initCfg.Complete(upgradeHost); err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.UploadConfigObjects(initCfg)
	if err != nil {
		t.Fatal(err)
	}
	clusterYAML := []byte(objs[0].(*corev1.ConfigMap).Data["ClusterConfiguration"])
	kubeletYAML := []byte(objs[3].(*corev1.ConfigMap).Data["kubelet"])
	proxyObjs, err := manifests.KubeProxyObjects(initCfg)
	if err != nil {
		t.Fatal(err)
	}
	proxyYAML := []byte(kubeProxyConfig(t, proxyObjs))
	nodeKubelet, err := manifests.KubeletConfig(initCfg)
	if err != nil {
		t.Fatal(err)
	}

	up := config.New()
	up.Init.NodeRegistration.Name = "cp1"
	up.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	up.Init.LocalAPIEndpoint.BindPort = 6444
	if err := up.Complete(upgradeHost); err != nil {
		t.Fatal(err)
	}
	old, err := up.AdoptForUpgrade(clusterYAML, kubeletYAML, proxyYAML, nodeKubelet, upgradeHost)
	if err != nil {
		t.Fatal(err)
	}
	if old != version.Kubernetes || up.Cluster.KubernetesVersion != version.Kubernetes {
		t.Errorf("versions: old %q, now %q", old, up.Cluster.KubernetesVersion)
	}
	for _, c := range manifests.ControlPlaneComponents {
		a, _ := manifests.StaticPod(initCfg, c, manifests.Derived{})
		b, _ := manifests.StaticPod(up, c, manifests.Derived{})
		ab, _ := manifests.MarshalPod(a)
		bb, _ := manifests.MarshalPod(b)
		if !bytes.Equal(ab, bb) {
			t.Errorf("%s: the upgrade renders another manifest:\n--- init\n%s\n--- upgrade\n%s", c, ab, bb)
		}
	}
	a, _ := manifests.KubeletConfig(initCfg)
	b, _ := manifests.KubeletConfig(up)
	if !bytes.Equal(a, b) {
		t.Errorf("kubelet config differs:\n--- init\n%s\n--- upgrade\n%s", a, b)
	}
	pa, _ := manifests.KubeProxyObjects(up)
	if got := kubeProxyConfig(t, pa); got != string(proxyYAML) {
		t.Errorf("kube-proxy config differs:\n%s\nvs\n%s", got, proxyYAML)
	}
}

// kubeProxyConfig is the KubeProxyConfiguration in kube-proxy's objects.
func kubeProxyConfig(t *testing.T, objs []runtime.Object) string {
	t.Helper()
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok && cm.Name == manifests.KubeProxyName && cm.Data["config.conf"] != "" {
			return cm.Data["config.conf"]
		}
	}
	t.Fatal("kube-proxy's objects have no ConfigMap with config.conf")
	return ""
}

func v1beta4Arg(name, value string) v1beta4.Arg { return v1beta4.Arg{Name: name, Value: value} }

func TestAdoptForUpgradeRefuses(t *testing.T) {
	c := config.New()
	c.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	if err := c.Complete(upgradeHost); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AdoptForUpgrade(nil, nil, nil, nil, upgradeHost); err == nil || !strings.Contains(err.Error(), "kubeadm-config") {
		t.Errorf("no ClusterConfiguration: %v", err)
	}
	if _, err := c.AdoptForUpgrade([]byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nbogus: 1\n"), nil, nil, nil, upgradeHost); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown field: %v", err)
	}
	cl := []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\n")
	if _, err := c.AdoptForUpgrade(cl, nil, []byte("mode: [\n"), nil, upgradeHost); err == nil || !strings.Contains(err.Error(), "kube-proxy") {
		t.Errorf("bad kube-proxy config: %v", err)
	}
}

func TestImageTagAndNodeVersion(t *testing.T) {
	for in, want := range map[string]string{
		"kubeforge.local/kubeforge:v1.2.3": "v1.2.3",
		"localhost:5000/busybox":           "",
		"localhost:5000/busybox:1.36":      "1.36",
		"busybox":                          "",
	} {
		if got := imageTag(in); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", in, got, want)
		}
	}
	n := &corev1.Node{Status: corev1.NodeStatus{Images: []corev1.ContainerImage{
		{Names: []string{"kubeforge.local/kubeforge:old"}}, {Names: []string{"kubeforge.local/pause:old"}}}}}
	if got := nodeVersion(n); got != "old" {
		t.Errorf("one self-image: %q", got)
	}
	n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{"kubeforge.local/kubeforge:new"}})
	if got := nodeVersion(n); got != "" {
		t.Errorf("two self-images and no annotation: %q, want unknown", got)
	}
	n.ObjectMeta = metav1.ObjectMeta{Annotations: map[string]string{NodeVersionAnnotation: "new"}}
	if got := nodeVersion(n); got != "new" {
		t.Errorf("annotation: %q", got)
	}
}

func TestCommandFlags(t *testing.T) {
	var pod corev1.Pod
	doc := "spec:\n  containers:\n  - name: x\n    command:\n    - kubeforge\n    - etcd\n    - --name=cp1\n    - --initial-cluster=a=https://1.2.3.4:2380,b=https://1.2.3.5:2380\n    - --initial-cluster-state=existing\n"
	if err := yaml.Unmarshal([]byte(doc), &pod); err != nil {
		t.Fatal(err)
	}
	f := manifests.PodFlags(&pod)
	if f["name"] != "cp1" || f["initial-cluster"] != "a=https://1.2.3.4:2380,b=https://1.2.3.5:2380" || f["initial-cluster-state"] != "existing" {
		t.Errorf("flags: %v", f)
	}
}

// TestUpgradeDiff: manifests written by an older build differ from this
// build's in their image only, and Diff shows exactly that.
func TestUpgradeDiff(t *testing.T) {
	root := t.TempDir()
	cfg := config.New()
	cfg.Paths = cfg.Paths.WithRoot(root)
	cfg.Init.NodeRegistration.Name = "cp1"
	cfg.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	if err := cfg.Complete(upgradeHost); err != nil {
		t.Fatal(err)
	}
	saved := version.Version
	t.Cleanup(func() { version.Version = saved })
	version.Version = "v0.0.1-old"
	write := func(logical string, b []byte) {
		if err := os.MkdirAll(filepath.Dir(cfg.Paths.Host(logical)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.Paths.Host(logical), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range manifests.ControlPlaneComponents {
		pod, err := manifests.StaticPod(cfg, c, manifests.Derived{})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := manifests.MarshalPod(pod)
		write(cfg.Paths.Manifest(c), b)
		row, _ := manifests.Lookup(c)
		files, _ := row.Files(cfg)
		for _, f := range files {
			write(f.Path, f.Data)
		}
	}
	kc, _ := manifests.KubeletConfig(cfg)
	write(cfg.Paths.KubeletConfigFile(), kc)
	version.Version = "v0.0.2-new"
	d := &UpgradeData{Node: &Node{Cfg: cfg, Paths: cfg.Paths}, ControlPlane: true}
	var out bytes.Buffer
	n, err := d.Diff(&out)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(manifests.ControlPlaneComponents) {
		t.Errorf("%d files differ, want %d:\n%s", n, len(manifests.ControlPlaneComponents), out.String())
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "---") || strings.HasPrefix(l, "+++") || !(strings.HasPrefix(l, "-") || strings.HasPrefix(l, "+")) {
			continue
		}
		// The image and the system shim group name the version.
		if !strings.Contains(l, "image: kubeforge.local/kubeforge:v0.0.") && !strings.Contains(l, manifests.ShimGroupAnnotation+": kubeforge-system-v0.0.") {
			t.Errorf("a changed line that is not the image: %q", l)
		}
	}
	changes := d.localChanges()
	if len(changes) != len(manifests.ControlPlaneComponents)+1 || !strings.Contains(changes[0], "v0.0.1-old → v0.0.2-new") {
		t.Errorf("local changes: %q", changes)
	}
	// Once written, nothing differs.
	for _, c := range manifests.ControlPlaneComponents {
		_, want, _ := d.manifestPair(c)
		write(cfg.Paths.Manifest(c), want)
	}
	out.Reset()
	if n, _ := d.Diff(&out); n != 0 {
		t.Errorf("after the upgrade %d files differ:\n%s", n, out.String())
	}
	// A component's configuration file the upgrade would write (a node
	// made by a kubeforge before the file) is in the diff.
	row, _ := manifests.Lookup(manifests.KubeScheduler)
	files, _ := row.Files(cfg)
	if len(files) != 1 {
		t.Fatalf("the scheduler's files: %v", files)
	}
	os.Remove(cfg.Paths.Host(files[0].Path))
	out.Reset()
	if n, _ := d.Diff(&out); n != 1 || !strings.Contains(out.String(), files[0].Path) || !strings.Contains(out.String(), "+percentageOfNodesToScore: 10") {
		t.Errorf("without the scheduler's file %d files differ:\n%s", n, out.String())
	}
	if changes := d.localChanges(); len(changes) != 2 || !strings.Contains(changes[0], "write "+files[0].Path) {
		t.Errorf("local changes without the scheduler's file: %q", changes)
	}
	// A dry run that meets the file as this build renders it keeps it and
	// says so (not "Would write").
	write(files[0].Path, files[0].Data)
	var buf bytes.Buffer
	dry := &Node{Cfg: cfg, Paths: cfg.Paths, Out: progress.New(&buf, false), DryRun: true}
	if err := writeComponentFiles(dry, "upgrade/control-plane", manifests.KubeScheduler); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); strings.Contains(got, "Would write") || !strings.Contains(got, "Using existing") {
		t.Errorf("a dry run over an unchanged scheduler file said:\n%s", got)
	}
}
