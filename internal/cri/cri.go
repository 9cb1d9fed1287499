// Package cri talks to a node's container runtime through the Kubernetes
// Container Runtime Interface (CRI v1) only: what preflight, the node
// service, wait-control-plane and reset need to know about a runtime that
// kubeforge did not start (--cri-socket). It uses the CRI API types and
// gRPC, nothing heavier, so phases/ and preflight/ may import it.
package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Cgroup drivers, as the kubelet names them.
const (
	CgroupFS = "cgroupfs"
	Systemd  = "systemd"
)

// Runtime is a connection to a CRI runtime.
type Runtime struct {
	// Endpoint is the endpoint as given ("unix:///run/containerd/containerd.sock").
	Endpoint string
	// Socket is its path on the host.
	Socket string
	// host is the socket's path as this process opens it.
	host string
	conn *grpc.ClientConn
	RT   runtimeapi.RuntimeServiceClient
	Img  runtimeapi.ImageServiceClient
}

// SocketPath turns a CRI endpoint ("unix:///path", "unix:/path" or a
// plain path) into the socket's path; other schemes are refused.
func SocketPath(endpoint string) (string, error) {
	s := strings.TrimSpace(endpoint)
	switch {
	case strings.HasPrefix(s, "unix://"):
		s = strings.TrimPrefix(s, "unix://")
	case strings.HasPrefix(s, "unix:"):
		s = strings.TrimPrefix(s, "unix:")
	case strings.Contains(s, "://"):
		return "", fmt.Errorf("CRI endpoint %q: only unix sockets are supported (unix:///path/to/runtime.sock)", endpoint)
	}
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("CRI endpoint %q: want an absolute socket path (unix:///path/to/runtime.sock)", endpoint)
	}
	return s, nil
}

// ErrUnreachable means nothing answers at the endpoint.
var ErrUnreachable = errors.New("the container runtime is not reachable")

// Dial connects to the runtime at endpoint, whose socket is at host (the
// same path unless file I/O is redirected), and checks that it answers
// the CRI v1 Version call within 5 s.
func Dial(ctx context.Context, endpoint, host string) (*Runtime, error) {
	sock, err := SocketPath(endpoint)
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = sock
	}
	if _, err := os.Stat(host); err != nil {
		return nil, fmt.Errorf("%w at %s: no socket %s (is it running?)", ErrUnreachable, endpoint, host)
	}
	conn, err := grpc.NewClient("unix://"+host, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("connect to the container runtime at %s: %w", endpoint, err)
	}
	r := &Runtime{Endpoint: endpoint, Socket: sock, host: host, conn: conn,
		RT: runtimeapi.NewRuntimeServiceClient(conn), Img: runtimeapi.NewImageServiceClient(conn)}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := r.RT.Version(vctx, &runtimeapi.VersionRequest{}); err != nil {
		conn.Close()
		switch status.Code(err) {
		case codes.Unimplemented:
			return nil, fmt.Errorf("the runtime at %s does not serve the CRI v1 API (runtime.v1.RuntimeService): %v; "+
				"for containerd, enable its CRI plugin (remove \"cri\" from disabled_plugins in its config.toml) and use containerd 1.6 or later", endpoint, err)
		case codes.Unavailable, codes.DeadlineExceeded:
			return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, endpoint, err)
		}
		return nil, fmt.Errorf("the container runtime at %s: %w", endpoint, err)
	}
	return r, nil
}

// Close closes the connection.
func (r *Runtime) Close() error { return r.conn.Close() }

// Conn is the gRPC connection (for a runtime that serves other APIs on the
// same socket, as containerd does).
func (r *Runtime) Conn() *grpc.ClientConn { return r.conn }

// Info is what kubeforge needs to know about a runtime.
type Info struct {
	Endpoint       string
	RuntimeName    string // "containerd", "cri-o", "docker" (cri-dockerd)
	RuntimeVersion string // "1.6.20~ds1"
	APIVersion     string // "v1"
	// Ready is the RuntimeReady condition; NotReady says why not.
	Ready    bool
	NotReady string
	// CgroupDriver is the runtime's cgroup driver ("" when it does not
	// say); CgroupDriverFrom says where it was read.
	CgroupDriver     string
	CgroupDriverFrom string
	// SandboxImage is the pause image the runtime runs pod sandboxes on
	// ("" when it does not say); SandboxImageFrom says where it was read
	// or, when SandboxImage is "", why it is not known.
	// SandboxImagePresent is whether the runtime has it.
	SandboxImage        string
	SandboxImageFrom    string
	SandboxImagePresent bool
	// SandboxPulled is set when PullSandbox pulled it; SandboxPullError
	// says why it could not.
	SandboxPulled    bool
	SandboxPullError string
	// RestrictOOMScoreAdj is containerd's restrict_oom_score_adj (nil when
	// the runtime does not say).
	RestrictOOMScoreAdj *bool
	// CNIBinDirs are where it looks for CNI plugins (nil when it does not say).
	CNIBinDirs []string
}

// Info asks the runtime about itself: Version, Status (verbose: the
// runtime's configuration, where containerd and CRI-O put their sandbox
// image and cgroup settings) and RuntimeConfig (the cgroup driver, for
// runtimes that implement it).
func (r *Runtime) Info(ctx context.Context) (Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info := Info{Endpoint: r.Endpoint}
	v, err := r.RT.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return info, fmt.Errorf("CRI Version at %s: %w", r.Endpoint, err)
	}
	info.RuntimeName, info.RuntimeVersion, info.APIVersion = v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion
	st, err := r.RT.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		return info, fmt.Errorf("CRI Status at %s: %w", r.Endpoint, err)
	}
	info.Ready = false
	info.NotReady = "no RuntimeReady condition in its status"
	for _, c := range st.GetStatus().GetConditions() {
		if c.Type == runtimeapi.RuntimeReady {
			info.Ready, info.NotReady = c.Status, strings.TrimSpace(c.Reason+" "+c.Message)
		}
	}
	sc := ParseStatusConfig(st.GetInfo())
	info.SandboxImage, info.CgroupDriver, info.RestrictOOMScoreAdj = sc.SandboxImage, sc.CgroupDriver, sc.RestrictOOMScoreAdj
	if info.SandboxImage != "" {
		info.SandboxImageFrom = "its CRI status"
	} else if info.RuntimeName == "containerd" && atLeastMajor(info.RuntimeVersion, 2) {
		r.containerd2Sandbox(ctx, &info)
	}
	info.CNIBinDirs = sc.CNIBinDirs
	if sc.CgroupDriver != "" {
		info.CgroupDriverFrom = sc.CgroupDriverFrom
	}
	if rc, err := r.RT.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{}); err == nil {
		switch rc.GetLinux().GetCgroupDriver() {
		case runtimeapi.CgroupDriver_SYSTEMD:
			info.CgroupDriver, info.CgroupDriverFrom = Systemd, "its CRI RuntimeConfig"
		case runtimeapi.CgroupDriver_CGROUPFS:
			info.CgroupDriver, info.CgroupDriverFrom = CgroupFS, "its CRI RuntimeConfig"
		}
	}
	if info.SandboxImage != "" {
		ok, err := r.HasImage(ctx, info.SandboxImage)
		if err != nil {
			return info, err
		}
		info.SandboxImagePresent = ok
	}
	return info, nil
}

// containerd2Sandbox learns the sandbox image of a containerd 2.x, which
// its CRI status does not report: from the config file of the process
// serving the socket (ContainerdConfigSandbox), else, when the config
// cannot be read or leaves it to containerd's default, from the one image
// the runtime pins (2.x pins exactly its pinned_images that it has, and
// by default that is only the sandbox image).
func (r *Runtime) containerd2Sandbox(ctx context.Context, info *Info) {
	img, file, err := ContainerdConfigSandbox(ctx, r.host)
	switch {
	case err != nil:
		info.SandboxImageFrom = fmt.Sprintf("containerd %s does not report it over the CRI and its config could not be read: %v", info.RuntimeVersion, err)
	case img != "":
		info.SandboxImage, info.SandboxImageFrom = img, fmt.Sprintf("pinned_images.sandbox in its config %s", file)
		return
	default:
		info.SandboxImageFrom = fmt.Sprintf("its config %s does not set pinned_images.sandbox, so containerd %s uses its built-in default", file, info.RuntimeVersion)
	}
	resp, err := r.Img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return
	}
	// kubeforge pins its own images too (kubeforge.local/…): not the
	// runtime's choice.
	var pinned []string
	for _, im := range resp.GetImages() {
		if !im.GetPinned() {
			continue
		}
		for _, tag := range im.GetRepoTags() {
			if !strings.HasPrefix(tag, "kubeforge.local/") {
				pinned = append(pinned, tag)
				break
			}
		}
	}
	if len(pinned) == 1 {
		info.SandboxImage, info.SandboxImageFrom = pinned[0], "the one image it pins ("+info.SandboxImageFrom+")"
	}
}

// atLeastMajor reports whether a version like "v2.4.2" or "1.6.20~ds1"
// has at least the major version major (unknown versions do not).
func atLeastMajor(v string, major int) bool {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	ma, err := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	return err == nil && ma >= major
}

// PullSandbox pulls info's sandbox image when the runtime lacks it (the
// node may pull: not air-gapped), within timeout; it records the outcome
// in info (SandboxImagePresent and SandboxPulled, or SandboxPullError).
func (r *Runtime) PullSandbox(ctx context.Context, info *Info, timeout time.Duration) {
	if info.SandboxImage == "" || info.SandboxImagePresent {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := r.Img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: info.SandboxImage}})
	if err != nil {
		msg := err.Error()
		if s, ok := status.FromError(err); ok {
			msg = s.Message()
		}
		info.SandboxPullError = msg
		return
	}
	info.SandboxImagePresent, info.SandboxPulled = true, true
}

// HasImage reports whether the runtime has the image ref.
func (r *Runtime) HasImage(ctx context.Context, ref string) (bool, error) {
	st, err := r.Img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return false, fmt.Errorf("CRI ImageStatus %s at %s: %w", ref, r.Endpoint, err)
	}
	return st.GetImage() != nil, nil
}

// StatusConfig is what the runtime's verbose status says about its
// configuration.
type StatusConfig struct {
	SandboxImage        string
	CgroupDriver        string
	CgroupDriverFrom    string
	RestrictOOMScoreAdj *bool
	// CNIBinDirs are where the runtime looks for CNI plugins.
	CNIBinDirs []string
}

// ParseStatusConfig reads the runtime's configuration from the Info map of
// a verbose CRI Status. containerd puts its CRI plugin config there as JSON
// under "config": 1.x with sandboxImage, restrictOOMScoreAdj and
// containerd.defaultRuntimeName with that runtime's options.SystemdCgroup;
// 2.x the same without the sandbox image (it moved to the image service's
// pinned_images, which the status does not show). Fields a runtime does
// not report stay empty.
func ParseStatusConfig(info map[string]string) StatusConfig {
	var out StatusConfig
	raw := info["config"]
	if raw == "" {
		return out
	}
	var c struct {
		SandboxImage        string `json:"sandboxImage"`
		RestrictOOMScoreAdj *bool  `json:"restrictOOMScoreAdj"`
		SystemdCgroup       *bool  `json:"systemdCgroup"` // containerd 1.x legacy runtime
		Containerd          struct {
			DefaultRuntimeName string `json:"defaultRuntimeName"`
			Runtimes           map[string]struct {
				Type    string         `json:"runtimeType"`
				Options map[string]any `json:"options"`
			} `json:"runtimes"`
		} `json:"containerd"`
		PinnedImages map[string]string `json:"pinned_images"`
		CNI          struct {
			BinDir  string   `json:"binDir"`
			BinDirs []string `json:"binDirs"`
		} `json:"cni"`
	}
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return out
	}
	out.SandboxImage = c.SandboxImage
	if out.SandboxImage == "" {
		out.SandboxImage = c.PinnedImages["sandbox"]
	}
	out.RestrictOOMScoreAdj = c.RestrictOOMScoreAdj
	out.CNIBinDirs = c.CNI.BinDirs
	if c.CNI.BinDir != "" {
		out.CNIBinDirs = append([]string{c.CNI.BinDir}, out.CNIBinDirs...)
	}
	if name := c.Containerd.DefaultRuntimeName; name != "" {
		if rt, ok := c.Containerd.Runtimes[name]; ok && (rt.Type == "" || strings.Contains(rt.Type, "runc")) {
			out.CgroupDriver, out.CgroupDriverFrom = CgroupFS, fmt.Sprintf("its config: runtime %q has no SystemdCgroup", name)
			if v, ok := rt.Options["SystemdCgroup"].(bool); ok && v {
				out.CgroupDriver, out.CgroupDriverFrom = Systemd, fmt.Sprintf("its config: runtime %q has SystemdCgroup = true", name)
			}
		}
	}
	return out
}

// SandboxPlan says which pause image pod sandboxes will run on.
type SandboxPlan struct {
	// Image is the image sandboxes use (the runtime's configured one).
	Image string
	// Alias is set when kubeforge's own pause image is to be stored under
	// Image, because the runtime does not have it and nothing may be pulled.
	Alias bool
	// Unknown is set when the runtime does not say which image it uses.
	Unknown bool
	// Why explains the choice, for a preflight warning or the node
	// service's progress.
	Why string
}

// PlanSandbox decides which pause image a node on this runtime uses: the
// runtime's configured sandbox image when the runtime has it, else
// kubeforge's own pause image (own), stored under the configured name so
// that the runtime finds it without pulling (a cluster comes up offline).
func PlanSandbox(info Info, own string) SandboxPlan {
	switch {
	case info.SandboxImage == "":
		why := fmt.Sprintf("%s %s does not report its sandbox (pause) image", info.RuntimeName, info.RuntimeVersion)
		if info.SandboxImageFrom != "" {
			why = fmt.Sprintf("the sandbox (pause) image of %s %s is not known (%s)", info.RuntimeName, info.RuntimeVersion, info.SandboxImageFrom)
		}
		return SandboxPlan{Unknown: true, Why: fmt.Sprintf(
			"%s; kubeforge imports its own as %s, but the runtime uses the one in its config "+
				"(containerd 2.x: [plugins.'io.containerd.cri.v1.images'.pinned_images] sandbox; CRI-O: pause_image): "+
				"set it to %s, or make sure the configured image is present (`kubeforge images import FILE.tar`) or pullable",
			why, own, own)}
	case info.SandboxImage == own:
		return SandboxPlan{Image: own, Why: fmt.Sprintf("the runtime's sandbox image is kubeforge's own %s", own)}
	case info.SandboxPulled:
		return SandboxPlan{Image: info.SandboxImage, Why: fmt.Sprintf("pod sandboxes use the runtime's sandbox image %s%s, which it pulled", info.SandboxImage, readFrom(info))}
	case info.SandboxImagePresent:
		return SandboxPlan{Image: info.SandboxImage, Why: fmt.Sprintf("pod sandboxes use the runtime's sandbox image %s%s, which it has", info.SandboxImage, readFrom(info))}
	default:
		pull := ""
		if info.SandboxPullError != "" {
			pull = fmt.Sprintf(" and cannot be pulled (%s)", info.SandboxPullError)
		}
		return SandboxPlan{Image: info.SandboxImage, Alias: true, Why: fmt.Sprintf(
			"the runtime's sandbox image %s is not present%s%s: kubeforge stores its own pause image %s under that name "+
				"(reset removes it again); to use the real one instead, import or pull %s before init",
			info.SandboxImage, pull, readFrom(info), own, info.SandboxImage)}
	}
}

// readFrom says where info's sandbox image was read, for a message.
func readFrom(info Info) string {
	if info.SandboxImageFrom == "" {
		return ""
	}
	return " (read from " + info.SandboxImageFrom + ")"
}
