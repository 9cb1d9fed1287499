package manifests

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	schedulerconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	schedulervalidation "k8s.io/kubernetes/pkg/scheduler/apis/config/validation"

	"github.com/kubeforge/kubeforge/config"
)

// decodeSchedulerConfig reads a configuration as kube-scheduler --config
// does (strict decoding, defaulting) and validates it as it does.
func decodeSchedulerConfig(t *testing.T, b []byte) *schedulerconfig.KubeSchedulerConfiguration {
	t.Helper()
	obj, _, err := schedulerscheme.Codecs.UniversalDecoder().Decode(b, nil, nil)
	if err != nil {
		t.Fatalf("the scheduler cannot read its configuration: %v\n%s", err, b)
	}
	cfg, ok := obj.(*schedulerconfig.KubeSchedulerConfiguration)
	if !ok {
		t.Fatalf("decoded a %T", obj)
	}
	if err := schedulervalidation.ValidateKubeSchedulerConfiguration(cfg); err != nil {
		t.Fatalf("the scheduler refuses its configuration: %v\n%s", err, b)
	}
	return cfg
}

func TestSchedulerConfigGolden(t *testing.T) {
	c := testConfig(t)
	b, err := SchedulerConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "kube-scheduler-config.yaml", b)
	cfg := decodeSchedulerConfig(t, b)
	if cfg.PercentageOfNodesToScore == nil || *cfg.PercentageOfNodesToScore != SchedulerPercentageOfNodesToScore {
		t.Errorf("percentageOfNodesToScore %v, want %d", cfg.PercentageOfNodesToScore, SchedulerPercentageOfNodesToScore)
	}
	cc := cfg.ClientConnection
	if cc.Kubeconfig != "/etc/kubernetes/scheduler.conf" || cc.QPS != 100 || cc.Burst != 200 {
		t.Errorf("client connection %+v", cc)
	}
	le := cfg.LeaderElection
	if !le.LeaderElect || le.RetryPeriod.Duration.String() != "500ms" || le.ResourceName != "kube-scheduler" {
		t.Errorf("leader election %+v", le)
	}
	if cfg.EnableProfiling {
		t.Error("profiling on")
	}
	// CIS 1.4.1 (kube-bench reads the command line): --profiling=false
	// there too, though the scheduler reads the file's.
	if cmd := strings.Join(mustPod(t, c).Spec.Containers[0].Command, " "); !strings.Contains(cmd, "--profiling=false") {
		t.Errorf("no --profiling=false on the command line: %s", cmd)
	}
	// The pod reads it from where the phases write it.
	p, _ := StaticPod(c, KubeScheduler, Derived{})
	cmd := strings.Join(p.Spec.Containers[0].Command, " ")
	file := SchedulerConfigFile(c.Paths, b)
	if !strings.HasPrefix(file, "/etc/kubernetes/scheduler/config-") || !strings.Contains(cmd, "--config="+file) {
		t.Errorf("the scheduler runs without its file: %s", cmd)
	}
	row, _ := Lookup(KubeScheduler)
	files, err := row.Files(c)
	if err != nil || len(files) != 1 || files[0].Path != file || string(files[0].Data) != string(b) {
		t.Errorf("the scheduler row's files: %v %+v", err, files)
	}
}

// A kubeadm user's extraArgs that the scheduler ignores next to --config
// go into the file; the others stay flags.
func TestSchedulerConfigTakesFileFlags(t *testing.T) {
	c := testConfig(t)
	c.Cluster.Scheduler.ExtraArgs = append(c.Cluster.Scheduler.ExtraArgs, argOf("kube-api-qps", "250"), argOf("kube-api-burst", "500"),
		argOf("profiling", "true"), argOf("kubeconfig", "/etc/kubernetes/other.conf"), argOf("v", "3"), argOf("contention-profiling", "true"))
	b, err := SchedulerConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	cfg := decodeSchedulerConfig(t, b)
	if cc := cfg.ClientConnection; cc.QPS != 250 || cc.Burst != 500 || cc.Kubeconfig != "/etc/kubernetes/other.conf" || !cfg.EnableProfiling || !cfg.EnableContentionProfiling {
		t.Errorf("extraArgs not in the file: %+v profiling %v", cc, cfg.EnableProfiling)
	}
	p, _ := StaticPod(c, KubeScheduler, Derived{})
	cmd := strings.Join(p.Spec.Containers[0].Command, " ")
	if strings.Contains(cmd, "kube-api-qps") || strings.Contains(cmd, "--kubeconfig") || !strings.Contains(cmd, "--v=3") ||
		strings.Count(cmd, "--profiling") != 1 || !strings.Contains(cmd, "--profiling=true") {
		t.Errorf("flags: %s", cmd)
	}

	c.Cluster.Scheduler.ExtraArgs = append(c.Cluster.Scheduler.ExtraArgs, argOf("kube-api-burst", "lots"))
	if _, err := SchedulerConfig(c); err == nil || !strings.Contains(err.Error(), "scheduler.extraArgs kube-api-burst") {
		t.Errorf("a bad kube-api-burst: %v", err)
	}
	if _, err := row(t).Files(c); err == nil {
		t.Error("the row's files took a bad kube-api-burst")
	}
}

// Another configuration is another file: the manifest of before (an
// upgrade's rollback) still finds its own.
func TestSchedulerConfigFileFollowsContent(t *testing.T) {
	c := testConfig(t)
	a, _ := SchedulerConfig(c)
	c.Cluster.Scheduler.ExtraArgs = append(c.Cluster.Scheduler.ExtraArgs, argOf("kube-api-qps", "300"))
	b, _ := SchedulerConfig(c)
	if SchedulerConfigFile(c.Paths, a) == SchedulerConfigFile(c.Paths, b) {
		t.Errorf("two configurations, one file %s", SchedulerConfigFile(c.Paths, a))
	}
	if cmd := strings.Join(mustPod(t, c).Spec.Containers[0].Command, " "); !strings.Contains(cmd, "--config="+SchedulerConfigFile(c.Paths, b)) {
		t.Errorf("the pod does not read the new file: %s", cmd)
	}
}

// The user's own --config: no file of kubeforge's, kubeforge's settings
// as flags as before, the user's volume.
func TestSchedulerUserConfig(t *testing.T) {
	c := testConfig(t)
	c.Cluster.Scheduler.ExtraArgs = append(c.Cluster.Scheduler.ExtraArgs, argOf("config", "/etc/kubernetes/mine.yaml"))
	if b, err := SchedulerConfig(c); b != nil || err != nil {
		t.Errorf("a file of kubeforge's next to the user's: %v\n%s", err, b)
	}
	if files, err := row(t).Files(c); len(files) != 0 || err != nil {
		t.Errorf("files %v %v", files, err)
	}
	p, _ := StaticPod(c, KubeScheduler, Derived{})
	cmd := strings.Join(p.Spec.Containers[0].Command, " ")
	for _, want := range []string{"--config=/etc/kubernetes/mine.yaml", "--kube-api-qps=100", "--leader-elect=true", "--kubeconfig=/etc/kubernetes/scheduler.conf"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("lacks %s: %s", want, cmd)
		}
	}
	if strings.Count(cmd, "--config=") != 1 {
		t.Errorf("two --config: %s", cmd)
	}
	for _, v := range p.Spec.Volumes {
		if v.Name == "kubeforge-scheduler-config" {
			t.Errorf("kubeforge's file mounted next to the user's: %+v", v)
		}
	}
}

func mustPod(t *testing.T, c *config.Config) *corev1.Pod {
	t.Helper()
	p, err := StaticPod(c, KubeScheduler, Derived{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func row(t *testing.T) Component {
	t.Helper()
	r, ok := Lookup(KubeScheduler)
	if !ok {
		t.Fatal("no scheduler row")
	}
	return r
}
