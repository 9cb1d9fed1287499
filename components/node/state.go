package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/kubeletflags"
)

// ExternalCNIBinDir is where the node service links the pod network's CNI
// plugins for a container runtime it did not start (--cri-socket): the
// runtime's CNI bin_dir should be this directory.
func ExternalCNIBinDir(p config.Paths) string { return filepath.Join(p.StateDir, "cni-bin") }

// Files of the node service under p.RunDir (besides p.NodePIDFile()).
const (
	lockFileName        = "node.lock"
	stateFileName       = "node-state.json"
	infoFileName        = "node.json" // under p.StateDir
	containerdPIDName   = "containerd.pid"
	kubeletPIDName      = "kubelet.pid"
	ContainerdLogName   = "containerd.log"
	KubeletLogName      = "kubelet.log"
	containerdComponent = "containerd"
	kubeletComponent    = "kubelet"
)

// Identities: argv words that mark each process of the node service in
// /proc/PID/cmdline, so that a pid from a stale file is never mistaken for
// an unrelated process.
var (
	SupervisorIdentity = []string{"node", "run"}
	ContainerdIdentity = []string{"component", containerdComponent}
	KubeletIdentity    = []string{"component", kubeletComponent}
)

// LockFile is the lock the running supervisor holds (an OFD write lock),
// so "is the node service running" never depends on a pid that may have
// been reused.
func LockFile(p config.Paths) string { return filepath.Join(p.RunDir, lockFileName) }

// StateFile is where the supervisor publishes its progress (State).
func StateFile(p config.Paths) string { return filepath.Join(p.RunDir, stateFileName) }

// ContainerdPIDFile and KubeletPIDFile hold the children's pids.
func ContainerdPIDFile(p config.Paths) string { return filepath.Join(p.RunDir, containerdPIDName) }

// KubeletPIDFile holds the kubelet's pid while it runs.
func KubeletPIDFile(p config.Paths) string { return filepath.Join(p.RunDir, kubeletPIDName) }

// ControlPlaneComponents are the components the node service runs as
// processes when the node's settings say so (staticproc), in start order.
var ControlPlaneComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

// ControlPlanePIDFile holds the pid of a control-plane component the node
// service runs as a process.
func ControlPlanePIDFile(p config.Paths, component string) string {
	return filepath.Join(p.RunDir, component+".pid")
}

// ControlPlaneLogFile receives the output of a control-plane component
// the node service runs as a process.
func ControlPlaneLogFile(p config.Paths, component string) string {
	return filepath.Join(p.LogDir, component+".log")
}

// ContainerdLogFile and KubeletLogFile receive the children's output.
func ContainerdLogFile(p config.Paths) string { return filepath.Join(p.LogDir, ContainerdLogName) }

// KubeletLogFile receives the kubelet's output.
func KubeletLogFile(p config.Paths) string { return filepath.Join(p.LogDir, KubeletLogName) }

// State is what the supervisor publishes in StateFile while it runs.
type State struct {
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
	// Phase is what the supervisor is doing: "starting containerd",
	// "importing images", "waiting for the kubelet config", "running",
	// "stopping".
	Phase string `json:"phase"`
	// CRISocket is the container runtime socket the kubelet uses.
	CRISocket string `json:"criSocket"`
	// ExternalRuntime is true when the supervisor does not run containerd.
	ExternalRuntime bool       `json:"externalRuntime,omitempty"`
	Containerd      ChildState `json:"containerd"`
	ImagesReady     bool       `json:"imagesReady"`
	ImagesError     string     `json:"imagesError,omitempty"`
	// Registries is how the bundled containerd pulls ("air-gapped: …" or
	// the registries.yaml summary); RegistriesError why registries.yaml
	// was refused (the last good one is in use).
	Registries      string `json:"registries,omitempty"`
	RegistriesError string `json:"registriesError,omitempty"`
	// ImportedArchives counts the archives of the image import directory
	// in containerd; ImportError says which failed and why.
	ImportedArchives int        `json:"importedArchives,omitempty"`
	ImportError      string     `json:"importError,omitempty"`
	Kubelet          ChildState `json:"kubelet"`
	// KubeletHeld: the kubelet was stopped on request (StopKubelet) and
	// stays stopped until the service restarts.
	KubeletHeld bool `json:"kubeletHeld,omitempty"`
	// Duties are the service's long-running duties (package duty), in
	// start order.
	Duties []DutyState `json:"duties,omitempty"`
}

// PhaseRunning is State.Phase once the supervisor has started the
// kubelet.
const PhaseRunning = "running"

// A duty's status.
const (
	DutyStarting = "starting"
	DutyOK       = "ok"
	DutyWarning  = "warning"
	DutyFailing  = "failing"
	DutyDisabled = "disabled"
	DutyStopped  = "stopped"
)

// DutyState is one duty's health as `kubeforge node status` shows it.
type DutyState struct {
	Name string `json:"name"`
	// Status is one of DutyOK, DutyWarning, DutyFailing, DutyStarting,
	// DutyDisabled, DutyStopped.
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	// Since is when Status last changed; Updated, the last report.
	Since   time.Time `json:"since"`
	Updated time.Time `json:"updated"`
}

// ChildState describes one child in State.
type ChildState struct {
	PID      int  `json:"pid,omitempty"`
	Ready    bool `json:"ready"`
	Restarts int  `json:"restarts,omitempty"`
}

// WriteState publishes s.
func WriteState(p config.Paths, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, err = fsutil.WriteFile(p.Host(StateFile(p)), append(b, '\n'), 0o644)
	return err
}

// ReadState reads what the supervisor published last.
func ReadState(p config.Paths) (State, error) {
	var s State
	b, err := os.ReadFile(p.Host(StateFile(p)))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", StateFile(p), err)
	}
	return s, nil
}

// Info is what init or join decided about this node that the node service
// and reset need to know later. Unlike State (the supervisor's progress
// under p.RunDir, gone at shutdown), it lives in InfoFile under p.StateDir:
// written once by init's or join's kubelet phase, next to the kubelet
// flags file, it survives restarts and reboots, and reset deletes it.
type Info struct {
	// NodeName is the name the kubelet registers its Node as
	// (nodeRegistration.name, passed as --hostname-override).
	NodeName string `json:"nodeName"`
	// AirGapped: the node's containerd pulls no image from any registry
	// (KubeforgeConfiguration.airGapped, init's and join's --air-gapped).
	AirGapped bool `json:"airGapped,omitempty"`
	// Worker: the node joined as a worker. Its kubelet has no pod to run
	// until the scheduler places one (no static pods), so the node
	// service starts it without waiting for the images' import.
	Worker bool `json:"worker,omitempty"`
}

// InfoFile is where init and join record the node's Info.
func InfoFile(p config.Paths) string { return filepath.Join(p.StateDir, infoFileName) }

// MarshalInfo is InfoFile's content for i.
func MarshalInfo(i Info) []byte {
	b, _ := json.MarshalIndent(i, "", "  ")
	return append(b, '\n')
}

// ReadInfo reads what init or join recorded about this node.
func ReadInfo(p config.Paths) (Info, error) {
	var i Info
	b, err := os.ReadFile(p.Host(InfoFile(p)))
	if err != nil {
		return i, err
	}
	if err := json.Unmarshal(b, &i); err != nil {
		return i, fmt.Errorf("%s: %w", InfoFile(p), err)
	}
	return i, nil
}

// NodeName is the name this node's kubelet registers its Node as, "" when
// nothing says: the one init or join recorded in InfoFile. A node set up
// before kubeforge recorded it has only its kubelet flags file to tell:
// then it is the last --hostname-override there, the one the kubelet takes
// (kubeforge always writes it).
func NodeName(p config.Paths) string {
	if i, err := ReadInfo(p); err == nil && i.NodeName != "" {
		return i.NodeName
	}
	args, err := FlagsFileArgs(p)
	if err != nil {
		return ""
	}
	name, _ := kubeletflags.Last(args, "hostname-override")
	return name
}

// Lock is the supervisor's hold on LockFile.
type Lock struct{ f *os.File }

// ErrRunning means another supervisor holds the lock.
var ErrRunning = errors.New("the node service is already running")

// AcquireLock takes the node service's lock, or returns an error wrapping
// ErrRunning when another supervisor holds it.
func AcquireLock(p config.Paths) (*Lock, error) {
	path := p.Host(LockFile(p))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	// The lock file's content never matters; only its lock does.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			if pid, ok := Running(p); ok {
				return nil, fmt.Errorf("%w (pid %d)", ErrRunning, pid)
			}
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock. Safe to call twice.
func (l *Lock) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// locked reports whether some process holds a lock on the lock file,
// without taking it (F_OFD_GETLK).
func locked(p config.Paths) bool {
	f, err := os.Open(p.Host(LockFile(p)))
	if err != nil {
		return false
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false
	}
	return lk.Type != unix.F_UNLCK
}

// Running reports whether the node service runs (a supervisor holds the
// lock), and its pid.
func Running(p config.Paths) (pid int, ok bool) {
	if !locked(p) {
		return 0, false
	}
	pid, _ = readPID(p.Host(p.NodePIDFile()))
	return pid, true
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var pid int
	if _, err := fmt.Sscanf(string(b), "%d", &pid); err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a pid", path)
	}
	return pid, nil
}

// removeRuntimeFiles deletes the supervisor's pid and state files.
func removeRuntimeFiles(p config.Paths) {
	for _, f := range []string{p.NodePIDFile(), StateFile(p)} {
		if err := os.Remove(p.Host(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			continue
		}
	}
}
