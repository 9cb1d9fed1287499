// Package staticproc runs the control plane's static Pod manifests as the
// node service's own child processes, when the node's
// KubeforgeConfiguration.controlPlane.runtime is Processes: the same
// manifests, read the way the kubelet reads them (a manifest written or
// changed starts or restarts its component, one removed stops it; the
// liveness probe restarts a component that stops answering), but each
// component runs straight from the kubeforge executable on the host,
// without containerd, an image, a sandbox or the kubelet. That is why it
// can start the moment its manifest is written.
//
// Only kubeforge's own components run this way: the manifest's one
// container must run `kubeforge component NAME`, on the host's network,
// with host paths mounted where they are. A manifest that asks for more (a
// path mounted elsewhere, an environment value from the API) is refused,
// with the field that does not fit, rather than run differently from what
// it says.
package staticproc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// componentCommand is the command every control-plane manifest runs: the
// executable (the self-image's path of it), then "component".
const componentCommand = "component"

// Process is what a manifest asks the node service to run.
type Process struct {
	// Args is the argv, Args[0] the kubeforge executable.
	Args []string
	// Env is added to the node service's environment (the manifest's
	// values win).
	Env []string
	// Dir is the working directory ("" for the node service's).
	Dir string
	// Dirs and Files are the hostPath volumes to create first
	// (DirectoryOrCreate, FileOrCreate), as the kubelet would.
	Dirs, Files []string
	// Liveness, Readiness and Startup are the container's HTTP probes (nil
	// when the manifest has none).
	Liveness, Readiness, Startup *Probe
}

// FromPod turns a control-plane Pod into the process that runs it from
// self, the kubeforge executable on the host. The error names the field of
// the manifest that cannot run as a process.
func FromPod(pod *corev1.Pod, self string) (Process, error) {
	var p Process
	spec := pod.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		return p, fmt.Errorf("spec.containers: %d containers and %d init containers; a control-plane process is one container",
			len(spec.Containers), len(spec.InitContainers))
	}
	if !spec.HostNetwork {
		return p, errors.New("spec.hostNetwork: false; a control-plane process runs on the host's network")
	}
	c := spec.Containers[0]
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(argv) < 3 || filepath.Base(argv[0]) != "kubeforge" || argv[1] != componentCommand {
		return p, fmt.Errorf("spec.containers[0].command: %q does not run `kubeforge component NAME`; only kubeforge's own components run as processes",
			strings.Join(argv, " "))
	}
	argv[0] = self
	p.Args = argv
	for i, e := range c.Env {
		if e.ValueFrom != nil {
			return p, fmt.Errorf("spec.containers[0].env[%d] (%s): valueFrom needs the API server; give a value", i, e.Name)
		}
		p.Env = append(p.Env, e.Name+"="+e.Value)
	}
	if len(c.EnvFrom) > 0 {
		return p, errors.New("spec.containers[0].envFrom: needs the API server; give each variable a value in env")
	}
	p.Dir = c.WorkingDir
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	for i, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		field := fmt.Sprintf("spec.containers[0].volumeMounts[%d] (%s)", i, m.Name)
		switch {
		case !ok:
			return p, fmt.Errorf("%s: no volume of that name", field)
		case v.HostPath == nil:
			return p, fmt.Errorf("%s: not a hostPath volume; a control-plane process sees the host's files only", field)
		case filepath.Clean(v.HostPath.Path) != filepath.Clean(m.MountPath):
			return p, fmt.Errorf("%s: mounts %s at %s; a control-plane process sees the host's paths where they are: mount it at %s",
				field, v.HostPath.Path, m.MountPath, v.HostPath.Path)
		case m.SubPath != "" || m.SubPathExpr != "":
			return p, fmt.Errorf("%s: subPath; mount the host path itself", field)
		}
		if t := v.HostPath.Type; t != nil {
			switch *t {
			case corev1.HostPathDirectoryOrCreate:
				p.Dirs = append(p.Dirs, v.HostPath.Path)
			case corev1.HostPathFileOrCreate:
				p.Files = append(p.Files, v.HostPath.Path)
			}
		}
	}
	var err error
	if p.Liveness, err = probeOf(c.LivenessProbe, c, "livenessProbe"); err != nil {
		return p, err
	}
	if p.Readiness, err = probeOf(c.ReadinessProbe, c, "readinessProbe"); err != nil {
		return p, err
	}
	if p.Startup, err = probeOf(c.StartupProbe, c, "startupProbe"); err != nil {
		return p, err
	}
	return p, nil
}

// Prepare creates the hostPath volumes the manifest asks to be created.
func (p Process) Prepare(host func(string) string) error {
	for _, d := range p.Dirs {
		if err := os.MkdirAll(host(d), 0o755); err != nil {
			return fmt.Errorf("hostPath %s: %w", d, err)
		}
	}
	for _, f := range p.Files {
		if err := os.MkdirAll(filepath.Dir(host(f)), 0o755); err != nil {
			return fmt.Errorf("hostPath %s: %w", f, err)
		}
		fh, err := os.OpenFile(host(f), os.O_CREATE|os.O_RDONLY, 0o644)
		if err != nil {
			return fmt.Errorf("hostPath %s: %w", f, err)
		}
		fh.Close()
	}
	return nil
}
