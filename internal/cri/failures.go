package cri

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Failure is an error the container runtime gave the kubelet.
type Failure struct {
	// Call is the CRI call that failed: RunPodSandbox, PullImage,
	// CreateContainer, StartContainer.
	Call string
	// Message is the runtime's own message.
	Message string
	// Image is the image of a failed PullImage; Pod the pod of a failed
	// container, when known.
	Image, Pod string
	// At is when the kubelet logged it.
	At time.Time
}

func (f Failure) String() string {
	s := f.Call + " failed"
	if f.Pod != "" {
		s += " for pod " + f.Pod
	}
	if f.Image != "" {
		s += " for image " + f.Image
	}
	return s + ": " + f.Message
}

// The messages k8s.io/cri-client logs when a CRI call fails.
var kubeletCRIErrors = map[string]string{
	`"RunPodSandbox from runtime service failed"`:              "RunPodSandbox",
	`"PullImage from image service failed"`:                    "PullImage",
	`"CreateContainer in sandbox from runtime service failed"`: "CreateContainer",
	`"StartContainer from runtime service failed"`:             "StartContainer",
}

// KubeletLogFailures finds the CRI errors in kubelet log lines (klog's
// text format, as the node service writes kubelet.log) logged at or after
// since. now supplies the year, which klog's header leaves out.
func KubeletLogFailures(lines []string, since, now time.Time) []Failure {
	var out []Failure
	for _, line := range lines {
		for msg, call := range kubeletCRIErrors {
			i := strings.Index(line, msg)
			if i < 0 {
				continue
			}
			at, ok := klogTime(line, now)
			if ok && at.Before(since) {
				break
			}
			kv := keyValues(line[i+len(msg):])
			out = append(out, Failure{Call: call, Message: trimRPC(kv["err"]), Image: kv["image"], At: at})
			break
		}
	}
	return out
}

// klogTime reads the time in a klog header ("E1205 10:59:01.123456 …").
func klogTime(line string, now time.Time) (time.Time, bool) {
	if len(line) < 21 || !strings.ContainsRune("IWEF", rune(line[0])) {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation("0102 15:04:05.000000", line[1:21], now.Location())
	if err != nil {
		return time.Time{}, false
	}
	t = t.AddDate(now.Year(), 0, 0)
	if t.After(now.Add(24 * time.Hour)) { // logged last December, read in January
		t = t.AddDate(-1, 0, 0)
	}
	return t, true
}

// keyValues parses klog's ` key="quoted value" key2=plain` pairs.
func keyValues(s string) map[string]string {
	kv := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ")
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return kv
		}
		key, rest := s[:eq], s[eq+1:]
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return kv
			}
			v, _ := strconv.Unquote(q)
			kv[key], s = v, rest[len(q):]
			continue
		}
		end := strings.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		kv[key], s = rest[:end], rest[end:]
	}
}

// trimRPC removes gRPC's "rpc error: code = Unknown desc = " wrapping.
func trimRPC(msg string) string {
	if i := strings.Index(msg, " desc = "); strings.HasPrefix(msg, "rpc error: ") && i >= 0 {
		return msg[i+len(" desc = "):]
	}
	return msg
}

// ContainerFailures lists the containers the runtime could not start
// (exited with a start error) in the pods of namespace ns ("" for all).
func (r *Runtime) ContainerFailures(ctx context.Context, ns string) ([]Failure, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	f := &runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}
	if ns != "" {
		f.LabelSelector = map[string]string{"io.kubernetes.pod.namespace": ns}
	}
	resp, err := r.RT.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
	if err != nil {
		return nil, fmt.Errorf("CRI ListContainers at %s: %w", r.Endpoint, err)
	}
	var out []Failure
	for _, c := range resp.Containers {
		st, err := r.RT.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id})
		if err != nil || st.GetStatus() == nil {
			continue
		}
		s := st.GetStatus()
		if s.StartedAt != 0 && s.Reason != "StartError" && s.Reason != "ContainerCannotRun" {
			continue // it ran: its own exit, not the runtime's failure
		}
		msg := strings.TrimSpace(s.Reason + ": " + s.Message)
		out = append(out, Failure{Call: "StartContainer", Message: msg,
			Pod: c.Labels["io.kubernetes.pod.namespace"] + "/" + c.Labels["io.kubernetes.pod.name"], At: time.Unix(0, s.FinishedAt)})
	}
	return out, nil
}

// Persistent returns the failure to report when the runtime keeps failing
// the same call (at least twice: the kubelet starts the control plane's
// four static pods at once, so a broken runtime fails them all within a
// second, while a one-off failure is retried), or nil.
func Persistent(fs []Failure) *Failure {
	count := map[string]int{}
	for i := range fs {
		count[fs[i].Call]++
		if count[fs[i].Call] >= 2 {
			return &fs[i]
		}
	}
	return nil
}

// Fix says what to do about a failure of the runtime at endpoint.
func Fix(f Failure, endpoint, ownPause string) string {
	m := strings.ToLower(f.Message)
	switch {
	case strings.Contains(m, "sandbox image") || (f.Call == "RunPodSandbox" && strings.Contains(m, "pull")):
		return fmt.Sprintf("the runtime cannot get its sandbox (pause) image: make it present before init (import it with the runtime's tools, "+
			"e.g. `ctr -n k8s.io images import pause.tar`), or set the runtime's sandbox image to kubeforge's %s "+
			"(containerd 1.x: sandbox_image in [plugins.\"io.containerd.grpc.v1.cri\"]; 2.x: pinned_images.sandbox) and restart it; "+
			"`kubeforge node status` shows whether kubeforge's images were imported", ownPause)
	case strings.Contains(m, "oom_score_adj") || strings.Contains(m, "final child's pid from pipe"):
		return "the runtime cannot set a negative oom_score_adj here (no CAP_SYS_RESOURCE): set restrict_oom_score_adj = true in its CRI config and restart it"
	case strings.Contains(m, "cgroup"):
		return "check that the runtime's cgroup driver matches the kubelet's (KubeletConfiguration.cgroupDriver) and that its cgroup hierarchy is usable; see the runtime's log"
	case f.Call == "PullImage":
		return fmt.Sprintf("image %s cannot be pulled: make it present (`kubeforge images import FILE.tar`, or the runtime's own import) or make its registry reachable", f.Image)
	default:
		return fmt.Sprintf("see the log of the container runtime at %s", endpoint)
	}
}
