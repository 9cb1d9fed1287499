package manifests

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubeforge/kubeforge/config"
)

// Component names, as in the manifests' file names and `component` labels.
const (
	Etcd              = "etcd"
	KubeAPIServer     = "kube-apiserver"
	KubeControllerMgr = "kube-controller-manager"
	KubeScheduler     = "kube-scheduler"
)

// Ports the components listen on by default. Where a component serves its
// health check, read it from its rendered pod (Component.Health): the
// user's extraArgs may move it.
const (
	EtcdClientPort        = 2379
	EtcdPeerPort          = 2380
	EtcdMetricsPort       = 2381
	ControllerManagerPort = 10257
	SchedulerPort         = 10259
	// The node's own programs, at their upstream defaults.
	KubeletPort          = 10250
	KubeProxyMetricsPort = 10249
	KubeProxyHealthzPort = 10256
)

// Component is one control-plane static pod, declared once: init and join
// write its manifest from Render, the health waits, upgrade and reset find
// its endpoint, kubeconfig and manifest here.
type Component struct {
	// Name is the pod's name, `component` label, manifest file name and
	// `kubeforge component NAME`.
	Name string
	// Phase is the init and join phase that writes its manifest: etcd's
	// own (on a joining node, once its member is added) or
	// "control-plane"; SubPhase names its sub-phase there.
	Phase, SubPhase string
	// Kubeconfig is the kubeconfig file (under the kubeconfig directory)
	// it reads only at start, "" when none: renewing its client
	// certificate means restarting the pod, and reset removes it.
	Kubeconfig string
	// Health says where the component answers its health check, in terms
	// of its own flags.
	Health HealthSpec
	// render builds the static pod for this node.
	render func(*config.Config, Derived) *corev1.Pod
	// files renders the configuration files its pod reads that depend on
	// the configuration alone (the scheduler's --config); nil: none. The
	// API server's own (encryption, authentication, audit, admission) are
	// the control-plane phase's, which keeps an existing encryption key.
	files func(*config.Config) ([]File, error)
}

// File is a file a component's pod reads: its path on the node, what it
// is (for people) and its content.
type File struct {
	Path, What string
	Data       []byte
}

// Files renders the component's configuration files, to be written before
// its manifest (init, join and upgrade write them alike).
func (c Component) Files(cfg *config.Config) ([]File, error) {
	if c.files == nil {
		return nil, nil
	}
	return c.files(cfg)
}

// No row runs on workers: a worker runs the kubelet and kube-proxy (a
// DaemonSet), never a static pod.

// ControlPlane is the control-plane static pods, in the order they start
// (and are upgraded): etcd first, the API server on it, then its clients.
var ControlPlane = []Component{
	{Name: Etcd, Phase: "etcd", SubPhase: "local", Health: etcdHealth, render: func(c *config.Config, d Derived) *corev1.Pod { return etcdPod(c, d) }},
	{Name: KubeAPIServer, Phase: PhaseControlPlane, SubPhase: "apiserver", Health: apiServerHealth, render: func(c *config.Config, _ Derived) *corev1.Pod { return apiServerPod(c) }},
	{Name: KubeControllerMgr, Phase: PhaseControlPlane, SubPhase: "controller-manager", Kubeconfig: "controller-manager.conf",
		Health: controllerManagerHealth, render: func(c *config.Config, d Derived) *corev1.Pod { return controllerManagerPod(c, d.ExternalCAs) }},
	{Name: KubeScheduler, Phase: PhaseControlPlane, SubPhase: "scheduler", Kubeconfig: "scheduler.conf",
		Health: schedulerHealth, render: func(c *config.Config, _ Derived) *corev1.Pod { return schedulerPod(c) }, files: schedulerFiles},
}

// PhaseControlPlane is the phase that writes the manifests of the
// components etcd serves.
const PhaseControlPlane = "control-plane"

// ControlPlaneComponents lists the static pods' names, in the order they start.
var ControlPlaneComponents = componentNames()

func componentNames() []string {
	out := make([]string, len(ControlPlane))
	for i, c := range ControlPlane {
		out[i] = c.Name
	}
	return out
}

// Lookup finds a control-plane component by name.
func Lookup(name string) (Component, bool) {
	for _, c := range ControlPlane {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// Render renders the component's static pod, with what the phases found
// on the node or in the cluster (d).
func (c Component) Render(cfg *config.Config, d Derived) *corev1.Pod { return c.render(cfg, d) }

// HealthSpec says where a component serves its health check, as flags of
// its command line, so that an endpoint read from a rendered pod follows
// the user's extraArgs.
type HealthSpec struct {
	// URLFlag, when set, names a flag holding a comma-separated URL list
	// whose first URL is the endpoint (etcd's --listen-metrics-urls).
	URLFlag string
	// Scheme ("http" or "https"), with HostFlag and PortFlag naming the
	// host and port flags and DefaultHost and DefaultPort their values
	// when the pod does not set them.
	Scheme      string
	HostFlag    string
	DefaultHost string
	PortFlag    string
	DefaultPort int
	// Path is the health check's path.
	Path string
	// ClusterCA: the serving certificate is signed by the cluster CA and
	// is verified against it; otherwise it is self-signed (on loopback).
	ClusterCA bool
}

var (
	etcdHealth = HealthSpec{URLFlag: "listen-metrics-urls", Path: "/readyz"}
	// The API server's default port is the configuration's bind port,
	// which its renderer always sets as --secure-port.
	apiServerHealth = HealthSpec{Scheme: "https", HostFlag: "advertise-address", PortFlag: "secure-port",
		DefaultPort: config.DefaultBindPort, Path: "/readyz", ClusterCA: true}
	controllerManagerHealth = HealthSpec{Scheme: "https", HostFlag: "bind-address", DefaultHost: "127.0.0.1",
		PortFlag: "secure-port", DefaultPort: ControllerManagerPort, Path: "/healthz"}
	schedulerHealth = HealthSpec{Scheme: "https", HostFlag: "bind-address", DefaultHost: "127.0.0.1",
		PortFlag: "secure-port", DefaultPort: SchedulerPort, Path: "/livez"}
)

// Endpoint is where a component answers its health check.
type Endpoint struct {
	Scheme, Host string
	Port         int
	Path         string
	// ClusterCA: verify the serving certificate against the cluster CA.
	ClusterCA bool
}

// URL is the endpoint as a URL.
func (e Endpoint) URL() string {
	return e.Scheme + "://" + hostPort(e.Host, e.Port) + e.Path
}

// Endpoint reads the health endpoint from a component's flags (PodFlags of
// its rendered pod). A wildcard listen address is asked on loopback.
func (h HealthSpec) Endpoint(flags map[string]string) (Endpoint, error) {
	e := Endpoint{Scheme: h.Scheme, Host: h.DefaultHost, Port: h.DefaultPort, Path: h.Path, ClusterCA: h.ClusterCA}
	if h.URLFlag != "" {
		v, ok := flags[h.URLFlag]
		if !ok || v == "" {
			return Endpoint{}, fmt.Errorf("no --%s", h.URLFlag)
		}
		first, _, _ := strings.Cut(v, ",")
		u, err := url.Parse(first)
		if err != nil || u.Hostname() == "" || u.Port() == "" {
			return Endpoint{}, fmt.Errorf("--%s=%s: want scheme://host:port", h.URLFlag, v)
		}
		port, err := strconv.Atoi(u.Port())
		if err != nil {
			return Endpoint{}, fmt.Errorf("--%s=%s: %w", h.URLFlag, v, err)
		}
		e.Scheme, e.Host, e.Port = u.Scheme, u.Hostname(), port
	} else {
		if v := flags[h.HostFlag]; v != "" {
			e.Host = v
		}
		if v := flags[h.PortFlag]; v != "" {
			port, err := strconv.Atoi(v)
			if err != nil || port <= 0 || port > 65535 {
				return Endpoint{}, fmt.Errorf("--%s=%s is not a port", h.PortFlag, v)
			}
			e.Port = port
		}
	}
	if e.Host == "" {
		return Endpoint{}, fmt.Errorf("no --%s", h.HostFlag)
	}
	if ip := net.ParseIP(e.Host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			e.Host = "127.0.0.1"
		} else {
			e.Host = "::1"
		}
	}
	return e, nil
}

// HealthEndpoint is where the component of a rendered (or read) static pod
// answers its health check, from the pod's flags.
func HealthEndpoint(p *corev1.Pod) (Endpoint, error) {
	name := p.Labels["component"]
	if name == "" {
		name = p.Name
	}
	c, ok := Lookup(name)
	if !ok {
		return Endpoint{}, fmt.Errorf("%q is not a control-plane component", name)
	}
	e, err := c.Health.Endpoint(PodFlags(p))
	if err != nil {
		return Endpoint{}, fmt.Errorf("%s's health endpoint: %w", c.Name, err)
	}
	return e, nil
}

// probeAt is where the kubelet probes a component: its health endpoint
// read from the flags (the user's extraArgs move it: a --secure-port, a
// --bind-address, etcd's --listen-metrics-urls), or host and port when the
// flags give none.
func probeAt(h HealthSpec, flags []string, host string, port int) (string, int) {
	m := map[string]string{}
	for _, a := range flags {
		k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		m[k] = v
	}
	e, err := h.Endpoint(m)
	if err != nil {
		return host, port
	}
	return e.Host, e.Port
}
