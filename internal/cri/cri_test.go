package cri

import (
	"strings"
	"testing"
	"time"
)

// containerd 1.6.20's verbose CRI status config, shortened to the fields
// read (the real one has many more; unknown fields are ignored).
const containerd16Config = `{"containerd":{"snapshotter":"overlayfs","defaultRuntimeName":"runc","defaultRuntime":{"runtimeType":"","options":null},
"runtimes":{"runc":{"runtimeType":"io.containerd.runc.v2","runtimePath":"","options":{"SystemdCgroup":%s},"privileged_without_host_devices":false}}},
"cni":{"binDir":"/opt/cni/bin","confDir":"/etc/cni/net.d","maxConfNum":1},"sandboxImage":"registry.k8s.io/pause:3.6",
"restrictOOMScoreAdj":true,"systemdCgroup":false,"containerdRootDir":"/var/lib/containerd"}`

func TestParseStatusConfig(t *testing.T) {
	tr, fa := true, false
	for _, tc := range []struct {
		name     string
		info     map[string]string
		want     StatusConfig
		wantBins []string
	}{
		{name: "no info", info: nil},
		{name: "not JSON", info: map[string]string{"config": "{"}},
		{name: "containerd 1.6 cgroupfs", info: map[string]string{"config": strings.Replace(containerd16Config, "%s", "false", 1)},
			want: StatusConfig{SandboxImage: "registry.k8s.io/pause:3.6", CgroupDriver: CgroupFS, RestrictOOMScoreAdj: &tr}, wantBins: []string{"/opt/cni/bin"}},
		{name: "containerd 1.6 systemd", info: map[string]string{"config": strings.Replace(containerd16Config, "%s", "true", 1)},
			want: StatusConfig{SandboxImage: "registry.k8s.io/pause:3.6", CgroupDriver: Systemd, RestrictOOMScoreAdj: &tr}, wantBins: []string{"/opt/cni/bin"}},
		{name: "containerd 1.6 no options", info: map[string]string{"config": `{"containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{"runtimeType":"io.containerd.runc.v2"}}},"restrictOOMScoreAdj":false}`},
			want: StatusConfig{CgroupDriver: CgroupFS, RestrictOOMScoreAdj: &fa}},
		{name: "containerd 2 (no sandbox image, bin dirs)", info: map[string]string{"config": `{"containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{"runtimeType":"io.containerd.runc.v2","options":{"SystemdCgroup":false}}}},"cni":{"binDirs":["/opt/cni/bin","/usr/lib/cni"]}}`},
			want: StatusConfig{CgroupDriver: CgroupFS}, wantBins: []string{"/opt/cni/bin", "/usr/lib/cni"}},
		{name: "default runtime not runc", info: map[string]string{"config": `{"containerd":{"defaultRuntimeName":"kata","runtimes":{"kata":{"runtimeType":"io.containerd.kata.v2"}}}}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseStatusConfig(tc.info)
			if got.SandboxImage != tc.want.SandboxImage || got.CgroupDriver != tc.want.CgroupDriver {
				t.Errorf("got sandbox %q driver %q, want %q %q", got.SandboxImage, got.CgroupDriver, tc.want.SandboxImage, tc.want.CgroupDriver)
			}
			if (got.RestrictOOMScoreAdj == nil) != (tc.want.RestrictOOMScoreAdj == nil) ||
				(got.RestrictOOMScoreAdj != nil && *got.RestrictOOMScoreAdj != *tc.want.RestrictOOMScoreAdj) {
				t.Errorf("restrictOOMScoreAdj %v, want %v", got.RestrictOOMScoreAdj, tc.want.RestrictOOMScoreAdj)
			}
			if strings.Join(got.CNIBinDirs, ",") != strings.Join(tc.wantBins, ",") {
				t.Errorf("CNI bin dirs %v, want %v", got.CNIBinDirs, tc.wantBins)
			}
			if got.CgroupDriver != "" && got.CgroupDriverFrom == "" {
				t.Error("a cgroup driver without where it was read")
			}
		})
	}
}

func TestPlanSandbox(t *testing.T) {
	const own = "kubeforge.local/pause:v1"
	for _, tc := range []struct {
		name             string
		info             Info
		image            string
		alias, unknown   bool
		whyHas, whyHasNo string
	}{
		{"present", Info{SandboxImage: "registry.k8s.io/pause:3.6", SandboxImagePresent: true}, "registry.k8s.io/pause:3.6", false, false, "which it has", own},
		{"missing", Info{SandboxImage: "registry.k8s.io/pause:3.6"}, "registry.k8s.io/pause:3.6", true, false, own, ""},
		{"ours", Info{SandboxImage: own}, own, false, false, "kubeforge's own", ""},
		{"unknown", Info{RuntimeName: "containerd", RuntimeVersion: "v2.1.0"}, "", false, true, "pinned_images", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := PlanSandbox(tc.info, own)
			if p.Image != tc.image || p.Alias != tc.alias || p.Unknown != tc.unknown {
				t.Errorf("plan %+v, want image %q alias %v unknown %v", p, tc.image, tc.alias, tc.unknown)
			}
			if !strings.Contains(p.Why, tc.whyHas) || (tc.whyHasNo != "" && strings.Contains(p.Why, tc.whyHasNo)) {
				t.Errorf("why %q: want %q in it and not %q", p.Why, tc.whyHas, tc.whyHasNo)
			}
		})
	}
}

func TestSocketPath(t *testing.T) {
	for in, want := range map[string]string{
		"unix:///run/containerd/containerd.sock": "/run/containerd/containerd.sock",
		"unix:/run/crio/crio.sock":               "/run/crio/crio.sock",
		"/run/cri-dockerd.sock":                  "/run/cri-dockerd.sock",
		"tcp://1.2.3.4:1234":                     "",
		"run/x.sock":                             "",
	} {
		got, err := SocketPath(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("SocketPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// Lines as the kubelet (k8s.io/cri-client, klog text) logs them.
var kubeletLog = []string{
	`I1205 11:00:00.000001    4242 server.go:1] "Started kubelet"`,
	`E1205 10:59:00.000001    4242 log.go:32] "RunPodSandbox from runtime service failed" err="rpc error: code = Unknown desc = old"`,
	`E1205 11:00:01.123456    4242 log.go:32] "RunPodSandbox from runtime service failed" err="rpc error: code = Unknown desc = failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: can't get final child's PID from pipe: EOF: unknown"`,
	`E1205 11:00:01.223456    4242 kuberuntime_sandbox.go:72] "Failed to create sandbox for pod" err="rpc error: code = Unknown desc = ..." pod="kube-system/etcd-cp1"`,
	`E1205 11:00:01.323456    4242 log.go:32] "PullImage from image service failed" err="rpc error: code = Unknown desc = failed to pull and unpack image \"docker.io/library/nginx:1\": dial tcp: lookup registry-1.docker.io: no such host" image="nginx:1"`,
	`E1205 11:00:01.423456    4242 log.go:32] "RunPodSandbox from runtime service failed" err="rpc error: code = Unknown desc = second"`,
}

func TestKubeletLogFailures(t *testing.T) {
	now := time.Date(2026, 12, 5, 11, 0, 5, 0, time.UTC)
	since := time.Date(2026, 12, 5, 11, 0, 0, 0, time.UTC)
	fs := KubeletLogFailures(kubeletLog, since, now)
	if len(fs) != 3 {
		t.Fatalf("got %d failures, want 3 (the old line is before since): %+v", len(fs), fs)
	}
	if fs[0].Call != "RunPodSandbox" || !strings.HasPrefix(fs[0].Message, "failed to create containerd task") || strings.Contains(fs[0].Message, "rpc error") {
		t.Errorf("first failure %+v", fs[0])
	}
	if !fs[0].At.Equal(time.Date(2026, 12, 5, 11, 0, 1, 123456000, time.UTC)) {
		t.Errorf("first failure at %v", fs[0].At)
	}
	if fs[1].Call != "PullImage" || fs[1].Image != "nginx:1" || !strings.Contains(fs[1].Message, `"docker.io/library/nginx:1"`) {
		t.Errorf("pull failure %+v", fs[1])
	}
	p := Persistent(fs)
	if p == nil || p.Message != "second" {
		t.Fatalf("Persistent = %+v, want the second RunPodSandbox failure", p)
	}
	if Persistent(fs[:2]) != nil {
		t.Error("one failure of each call is not persistent yet")
	}
	if fix := Fix(fs[0], "unix:///run/x.sock", "kubeforge.local/pause:v1"); !strings.Contains(fix, "restrict_oom_score_adj = true") {
		t.Errorf("fix for the oom failure: %s", fix)
	}
	if fix := Fix(fs[1], "unix:///run/x.sock", ""); !strings.Contains(fix, "nginx:1") {
		t.Errorf("fix for the pull failure: %s", fix)
	}
	sandbox := Failure{Call: "RunPodSandbox", Message: `failed to get sandbox image "127.0.0.1:1/kftb/pause:3.6": failed to pull image`}
	if fix := Fix(sandbox, "unix:///run/x.sock", "kubeforge.local/pause:v1"); !strings.Contains(fix, "kubeforge.local/pause:v1") || !strings.Contains(fix, "sandbox") {
		t.Errorf("fix for the sandbox image failure: %s", fix)
	}
	// A January reader of December lines.
	jan := time.Date(2027, 1, 1, 0, 0, 1, 0, time.UTC)
	if fs := KubeletLogFailures(kubeletLog[2:3], since, jan); len(fs) != 1 || fs[0].At.Year() != 2026 {
		t.Errorf("December line read in January: %+v", fs)
	}
}
