package localcluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/tokens"
	"github.com/kubeforge/kubeforge/pki"
)

// DefaultRoot is where clusters keep their state and their nodes' disks,
// one directory per cluster. Not below /var/lib: a node mounts its own
// /var/lib and must still see its cluster's directory (and `kubeforge
// reset` on the host removes /var/lib/kubeforge).
const DefaultRoot = "/var/kubeforge/clusters"

// clusterPrefix starts the names of the clusters' links, namespaces and
// cgroup roots (the test beds' start with "kftb").
const clusterPrefix = "kfc"

// NameRE is what a cluster's name must match (its nodes are NAME-control-plane,
// NAME-worker, NAME-worker2, …).
var NameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// DefaultName is the cluster's name when none is given.
const DefaultName = "kubeforge"

// Clusters manages the clusters of this host (`kubeforge cluster`).
type Clusters struct {
	// Root holds one directory per cluster (DefaultRoot).
	Root string
	// Kubeconfig is the kubeconfig file create merges the cluster's context
	// into and delete removes it from (~/.kube/config, or the first file of
	// $KUBECONFIG).
	Kubeconfig string
	// Out receives progress for people.
	Out io.Writer
}

// State is a cluster's state file, ROOT/NAME/cluster.json.
type State struct {
	Name          string    `json:"name"`
	Created       time.Time `json:"created"`
	ControlPlanes int       `json:"controlPlanes"`
	Workers       int       `json:"workers"`
	// Endpoint is the API server's address (the first control-plane node).
	Endpoint string `json:"endpoint,omitempty"`
	// Ready is set once create has finished; Creator is the process that
	// creates it until then.
	Ready   bool   `json:"ready"`
	Creator procID `json:"creator"`
	Bed     Record `json:"bed"`
}

// ValidateName checks a cluster name.
func ValidateName(name string) error {
	if !NameRE.MatchString(name) {
		return fmt.Errorf("cluster name %q: want 1-32 lower case letters, digits or '-', starting and ending with a letter or digit (it becomes part of the node names)", name)
	}
	return nil
}

// DefaultKubeconfig is the file kubectl reads first: the first path in
// $KUBECONFIG, else ~/.kube/config.
func DefaultKubeconfig() string {
	if env := os.Getenv("KUBECONFIG"); env != "" {
		for _, p := range filepath.SplitList(env) {
			if p != "" {
				return p
			}
		}
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".kube", "config")
}

// ContextName is the cluster's context (and cluster and user) name in
// kubeconfig files.
func ContextName(name string) string { return "kubeforge-" + name }

func (c *Clusters) dir(name string) string       { return filepath.Join(c.Root, name) }
func (c *Clusters) statePath(name string) string { return filepath.Join(c.dir(name), "cluster.json") }

// KubeconfigPath is the cluster's admin kubeconfig on the host.
func (c *Clusters) KubeconfigPath(name string) string {
	return filepath.Join(c.dir(name), "kubeconfig")
}

func (c *Clusters) printf(format string, args ...any) {
	if c.Out != nil {
		fmt.Fprintf(c.Out, format, args...)
	}
}

// LoadState reads a cluster's state file.
func (c *Clusters) LoadState(name string) (*State, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(c.statePath(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no cluster %q on this host (`kubeforge cluster list` shows the clusters in %s)", name, c.Root)
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", c.statePath(name), err)
	}
	return &st, nil
}

func (c *Clusters) saveState(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	_, err = fsutil.WriteFile(c.statePath(st.Name), append(b, '\n'), 0o600)
	return err
}

// CreateOptions are `kubeforge cluster create`'s.
type CreateOptions struct {
	Name          string
	ControlPlanes int
	Workers       int
	// ConfigFile holds kubeadm v1beta4 documents for the nodes (optional).
	ConfigFile string
	// Subnet, when valid, is the cluster's network (else a free /24 in
	// ClusterRange is picked).
	Subnet netip.Prefix
	// Binary is the kubeforge executable the nodes run (hard-linked).
	Binary string
	// Wait bounds the wait for the nodes and CoreDNS.
	Wait time.Duration
}

// Timing is how long create's steps took.
type Timing struct {
	Nodes, Init, Joins, Ready, Total time.Duration
	// Joinable is when, after init began, the joins could start.
	Joinable time.Duration
}

// CheckHost says what this host lacks to run clusters.
func CheckHost() error {
	if os.Geteuid() != 0 {
		return errors.New("kubeforge cluster needs root (it makes network namespaces, a bridge and cgroups): run it with sudo")
	}
	var missing []string
	for _, tool := range []string{"ip", "nsenter", "unshare", "mount", "umount", "sleep", "sh", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kubeforge cluster needs %s, not found in PATH (Debian: apt-get install iproute2 util-linux mount runc)", strings.Join(missing, ", "))
	}
	return nil
}

// CheckCreate checks create's options before anything is made.
func (c *Clusters) CheckCreate(o *CreateOptions) (*NodeConfigs, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := ValidateName(o.Name); err != nil {
		return nil, fmt.Errorf("%w; choose another NAME", err)
	}
	if o.Workers < 0 {
		return nil, fmt.Errorf("--workers %d: want 0 or more worker nodes", o.Workers)
	}
	if o.ControlPlanes < 1 {
		return nil, fmt.Errorf("--control-planes %d: want 1 or more control-plane nodes", o.ControlPlanes)
	}
	if n := o.ControlPlanes + o.Workers; n > 200 {
		return nil, fmt.Errorf("--control-planes %d --workers %d: at most 200 nodes fit the cluster's /24", o.ControlPlanes, o.Workers)
	}
	var data []byte
	source := "(no --config)"
	if o.ConfigFile != "" {
		var err error
		if data, err = os.ReadFile(o.ConfigFile); err != nil {
			return nil, fmt.Errorf("--config: %w; give a file of kubeadm v1beta4 documents", err)
		}
		source = o.ConfigFile
	}
	nc, err := ParseNodeConfigs(source, data)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if _, err := os.Stat(c.statePath(o.Name)); err == nil {
		return nil, fmt.Errorf("cluster %q exists: delete it first (`kubeforge cluster delete %s`) or choose another NAME", o.Name, o.Name)
	}
	return nc, nil
}

// NodeNames are the nodes' names, control planes first (as kind names them).
func NodeNames(name string, controlPlanes, workers int) []string {
	var out []string
	for i := 1; i <= controlPlanes; i++ {
		out = append(out, name+"-control-plane"+suffix(i))
	}
	for i := 1; i <= workers; i++ {
		out = append(out, name+"-worker"+suffix(i))
	}
	return out
}

func suffix(i int) string {
	if i == 1 {
		return ""
	}
	return strconv.Itoa(i)
}

// Create makes a cluster: its bed and nodes, `kubeforge init` on the first
// control-plane node, joins of the others, then waits until every node is
// Ready and CoreDNS answers. On an error it removes what it made and says
// which node and step failed.
func (c *Clusters) Create(ctx context.Context, o CreateOptions) (st *State, tm Timing, err error) {
	start := time.Now()
	if err := CheckHost(); err != nil {
		return nil, tm, err
	}
	nc, err := c.CheckCreate(&o)
	if err != nil {
		return nil, tm, err
	}
	cfg, err := nc.Check("")
	if err != nil {
		return nil, tm, fmt.Errorf("--config: %w", err)
	}
	if o.Wait == 0 {
		o.Wait = 5 * time.Minute
	}
	if err := os.MkdirAll(c.Root, 0o755); err != nil {
		return nil, tm, err
	}
	dir := c.dir(o.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, tm, fmt.Errorf("cluster %q exists (or is being created): delete it first (`kubeforge cluster delete %s`) or choose another NAME", o.Name, o.Name)
		}
		return nil, tm, err
	}
	st = &State{Name: o.Name, Created: time.Now().UTC().Truncate(time.Second), ControlPlanes: o.ControlPlanes, Workers: o.Workers, Creator: self()}
	var stMu sync.Mutex
	save := func(rec Record) error {
		stMu.Lock()
		defer stMu.Unlock()
		st.Bed = rec
		return c.saveState(st)
	}
	if err := save(Record{}); err != nil {
		os.RemoveAll(dir)
		return nil, tm, err
	}
	logf := func(format string, args ...any) {} // details go to the error, progress to Out
	bed, err := NewBed(BedOptions{Prefix: clusterPrefix, Dir: dir, Binary: o.Binary, LinkBinary: true,
		Subnet: o.Subnet, Range: ClusterRange, Save: save, Logf: logf})
	if err != nil {
		os.RemoveAll(dir)
		if o.Subnet.IsValid() {
			return nil, tm, fmt.Errorf("cluster %s: --subnet %s: %w", o.Name, o.Subnet, err)
		}
		return nil, tm, fmt.Errorf("cluster %s: network: %w", o.Name, err)
	}
	merged := false
	defer func() {
		if err == nil {
			return
		}
		c.printf("[cluster] Creation failed; removing what was made of cluster %s\n", o.Name)
		removal := time.Now()
		errs := bed.DestroyParallel(true)
		for _, e := range errs {
			c.printf("[cluster] cleanup: %v\n", e)
		}
		if left := bed.Leftovers(removal); len(left) > 0 {
			again := "remove it by hand"
			if len(errs) > 0 {
				again = fmt.Sprintf("its state is kept: `kubeforge cluster delete %s` tries again", o.Name)
			}
			c.printf("[cluster] cleanup left on the host (%s):\n  %s\n", again, strings.Join(left, "\n  "))
		}
		if merged {
			if e := RemoveKubeconfigContext(c.Kubeconfig, o.Name); e != nil {
				c.printf("[cluster] cleanup: %v\n", e)
			}
		}
		st = nil
	}()
	c.printf("[cluster] Bridge %s, network %s (the host is %s)\n", bed.Bridge, bed.Subnet, bed.Gateway)

	// The nodes' namespaces, in parallel.
	names := NodeNames(o.Name, o.ControlPlanes, o.Workers)
	var nodes []*Node
	{
		t0 := time.Now()
		// Addresses in order: control planes first.
		if nodes, err = bed.AddNodes(names); err != nil {
			return nil, tm, fmt.Errorf("cluster %s: making the nodes: %w", o.Name, err)
		}
		tm.Nodes = time.Since(t0)
		c.printf("[cluster] Made %d nodes (network and mount namespaces, cgroup roots) in %.1fs\n", len(nodes), tm.Nodes.Seconds())
	}
	cp1 := nodes[0]
	endpoint := net.JoinHostPort(cp1.IP.String(), strconv.Itoa(config.DefaultBindPort))
	st.Endpoint = "https://" + endpoint

	token, err := tokens.Generate()
	if err != nil {
		return nil, tm, err
	}
	certKey := make([]byte, 32)
	if _, err := rand.Read(certKey); err != nil {
		return nil, tm, err
	}
	initCfg, err := nc.Init(InitFacts{Name: cp1.Name, IP: cp1.IP.String(), CgroupRoot: cp1.CgroupRoot, ResolvConf: bed.ResolvConf, Endpoint: endpoint, Token: token})
	if err != nil {
		return nil, tm, err
	}
	initFile, err := cp1.WriteConfigFile("init.yaml", string(initCfg))
	if err != nil {
		return nil, tm, err
	}
	t0 := time.Now()
	args := []string{"init", "--config", initFile, "--skip-token-print"}
	if o.ControlPlanes > 1 {
		args = append(args, "--upload-certs", "--certificate-key", hex.EncodeToString(certKey))
	}
	// The joins start as soon as init has made the bootstrap token (and
	// uploaded the certificates): its last phases (kubelet-finalize, the
	// addons) overlap with them.
	args = append(args, "--output", "json")
	joinable := make(chan struct{})
	initDone := make(chan error, 1)
	var joinableOnce sync.Once
	initStart := t0
	go func() {
		err := c.runEvents(ctx, cp1, "init", 5*time.Minute, func(ev progress.Event) {
			if ev.Action == "phase-done" && ev.Phase == "bootstrap-token" {
				joinableOnce.Do(func() { close(joinable) })
			}
		}, args...)
		tm.Init = time.Since(initStart)
		initDone <- err
	}()
	initFinished := false
	select {
	case <-joinable:
		tm.Joinable = time.Since(t0)
		c.printf("[cluster] %s: the API server is up and the join token made (%.1fs); the other nodes join now\n", cp1.Name, time.Since(t0).Seconds())
	case err := <-initDone:
		if err != nil {
			return nil, tm, err
		}
		initFinished = true
		c.printf("[cluster] %s: kubeforge init in %.1fs\n", cp1.Name, tm.Init.Seconds())
	}
	// On every return from here on, init has ended (it is not left running).
	waitInit := func() error {
		if initFinished {
			return nil
		}
		initFinished = true
		err := <-initDone
		if err == nil {
			c.printf("[cluster] %s: kubeforge init in %.1fs\n", cp1.Name, tm.Init.Seconds())
		}
		return err
	}
	defer func() { _ = waitInit() }()

	caPEM, err := cp1.ReadFile("/etc/kubernetes/pki/ca.crt")
	if err != nil {
		return nil, tm, fmt.Errorf("node %s: the cluster CA: %w", cp1.Name, err)
	}
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		return nil, tm, fmt.Errorf("node %s: /etc/kubernetes/pki/ca.crt is not PEM", cp1.Name)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, tm, fmt.Errorf("node %s: /etc/kubernetes/pki/ca.crt: %w", cp1.Name, err)
	}
	join := []string{"join", endpoint, "--token", token, "--discovery-token-ca-cert-hash", pki.CAHash(ca)}

	// The admin kubeconfig, for the host: written and merged before the
	// joins so that a failure after this point is visible with kubectl.
	admin, err := cp1.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		return nil, tm, fmt.Errorf("node %s: admin.conf: %w", cp1.Name, err)
	}
	kc, err := RenameKubeconfig(admin, ContextName(o.Name))
	if err != nil {
		return nil, tm, fmt.Errorf("node %s: admin.conf: %w", cp1.Name, err)
	}
	if _, err := fsutil.WriteFile(c.KubeconfigPath(o.Name), kc, 0o600); err != nil {
		return nil, tm, err
	}

	// Joins: control planes one after the other (etcd adds one member at
	// a time), workers all at once, both lines at the same time.
	t0 = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	joinNode := func(i int, extra ...string) {
		n := nodes[i]
		jc, err := nc.Join(JoinFacts{Name: n.Name, CgroupRoot: n.CgroupRoot})
		if err == nil {
			var f string
			if f, err = n.WriteConfigFile("join.yaml", string(jc)); err == nil {
				a := append(append(append([]string{}, join...), extra...), "--config", f)
				_, err = c.run(ctx, n, "join", 5*time.Minute, a...)
			}
		}
		errs[i] = err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i < o.ControlPlanes; i++ {
			joinNode(i, "--control-plane", "--certificate-key", hex.EncodeToString(certKey))
			if errs[i] != nil {
				return
			}
		}
	}()
	for i := o.ControlPlanes; i < len(nodes); i++ {
		wg.Add(1)
		go func() { defer wg.Done(); joinNode(i) }()
	}
	wg.Wait()
	if err := errors.Join(append([]error{waitInit()}, errs...)...); err != nil {
		return nil, tm, err
	}
	tm.Joins = time.Since(t0)
	if len(nodes) > 1 {
		c.printf("[cluster] %d nodes joined in %.1fs\n", len(nodes)-1, tm.Joins.Seconds())
	}

	t0 = time.Now()
	if err := waitReady(ctx, c.KubeconfigPath(o.Name), nodes, cfg.Cluster.Networking.DNSDomain, o.Wait); err != nil {
		return nil, tm, fmt.Errorf("cluster %s: waiting for the nodes and CoreDNS: %w", o.Name, err)
	}
	tm.Ready = time.Since(t0)

	if err := MergeKubeconfig(c.Kubeconfig, kc, ContextName(o.Name)); err != nil {
		return nil, tm, fmt.Errorf("merge the context %s into %s: %w", ContextName(o.Name), c.Kubeconfig, err)
	}
	merged = true
	stMu.Lock()
	st.Ready = true
	st.Creator = procID{}
	err = c.saveState(st)
	stMu.Unlock()
	if err != nil {
		return nil, tm, err
	}
	tm.Total = time.Since(start)
	return st, tm, nil
}

// runEvents runs kubeforge with --output json in a node and hands each
// progress event to f as it comes; its error is run's.
func (c *Clusters) runEvents(ctx context.Context, n *Node, step string, timeout time.Duration, f func(progress.Event), args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := n.Command(ctx, n.Binary, args...)
	var text, stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("node %s: step %s: %w", n.Name, step, err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var ev progress.Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			text.WriteString(sc.Text() + "\n")
			continue
		}
		fmt.Fprintf(&text, "[%s] %s\n", ev.Phase, ev.Message)
		f(ev)
	}
	if err := cmd.Wait(); err != nil {
		out := strings.TrimSpace(text.String() + stderr.String())
		if len(out) > 3000 {
			out = "…" + out[len(out)-3000:]
		}
		return fmt.Errorf("node %s: step %s (kubeforge %s) failed: %v\n%s\n(the node's logs are in %s/var-log/kubeforge until the cleanup)", n.Name, step, strings.Join(redact(args), " "), err, out, n.Dir)
	}
	return nil
}

// run runs kubeforge in a node; its error names the node and the step and
// ends with the command's output.
func (c *Clusters) run(ctx context.Context, n *Node, step string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := n.Kubeforge(ctx, args...)
	if err != nil {
		if t := strings.TrimSpace(out); len(t) > 3000 {
			out = "…" + t[len(t)-3000:]
		}
		return out, fmt.Errorf("node %s: step %s (kubeforge %s) failed: %v\n%s\n(the node's logs are in %s/var-log/kubeforge until the cleanup)", n.Name, step, strings.Join(redact(args), " "), errOnly(err), strings.TrimSpace(out), n.Dir)
	}
	return out, nil
}

func errOnly(err error) error {
	var re *RunError
	if errors.As(err, &re) {
		return re.Err
	}
	return err
}

// redact hides the token and certificate key in a printed command line.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "--token" || out[i] == "--certificate-key" {
			out[i+1] = "<redacted>"
		}
	}
	return out
}

// waitReady waits until exactly the named nodes are Ready and CoreDNS
// answers for the API server's Service name. CoreDNS is asked at its pods'
// addresses (the kube-dns Service's ready endpoints), each from inside the
// node it runs on: the nodes have no default route, so a Service address
// is reachable from pods only, not from a node's own processes.
func waitReady(ctx context.Context, kubeconfig string, nodes []*Node, domain string, timeout time.Duration) error {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	rc.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	var names []string
	byName := map[string]*Node{}
	for _, n := range nodes {
		names = append(names, n.Name)
		byName[n.Name] = n
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "nothing checked yet"
	nodesOK := false
	for {
		if !nodesOK {
			last = nodesReady(ctx, cs, names)
			nodesOK = last == ""
		}
		if nodesOK {
			if last = corednsAnswers(ctx, cs, byName, "kubernetes.default.svc."+domain+"."); last == "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %s", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// corednsAnswers reports "" once a ready CoreDNS endpoint answers.
func corednsAnswers(ctx context.Context, cs kubernetes.Interface, nodes map[string]*Node, name string) string {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := cs.DiscoveryV1().EndpointSlices("kube-system").List(c, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
	if err != nil {
		return "CoreDNS: " + err.Error()
	}
	var errs []string
	for _, sl := range l.Items {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || !*ep.Conditions.Ready || ep.NodeName == nil || len(ep.Addresses) == 0 {
				continue
			}
			n := nodes[*ep.NodeName]
			if n == nil {
				continue
			}
			if err := dnsAnswers(ctx, n, ep.Addresses[0], name); err != nil {
				errs = append(errs, ep.Addresses[0]+": "+err.Error())
				continue
			}
			return ""
		}
	}
	if len(errs) == 0 {
		return "CoreDNS has no ready endpoint yet"
	}
	return "CoreDNS does not answer: " + strings.Join(errs, "; ")
}

func nodesReady(ctx context.Context, cs kubernetes.Interface, names []string) string {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := cs.CoreV1().Nodes().List(c, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	ready := map[string]bool{}
	for _, n := range l.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready[n.Name] = true
			}
		}
	}
	var not []string
	for _, n := range names {
		if !ready[n] {
			not = append(not, n)
		}
	}
	if len(not) > 0 {
		return "nodes not Ready yet: " + strings.Join(not, ", ")
	}
	return ""
}

// ListEntry is one row of `cluster list`.
type ListEntry struct {
	Name     string
	Status   string // running, creating, degraded, stopped, failed
	Nodes    int
	Running  int // nodes whose namespace holder and node service run
	Subnet   string
	Endpoint string
	Created  time.Time
	Detail   string
}

// List finds the clusters in Root and checks which of their processes run.
func (c *Clusters) List() ([]ListEntry, error) {
	entries, err := os.ReadDir(c.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []ListEntry
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := c.LoadState(e.Name())
		if err != nil {
			detail := err.Error()
			if entries, rerr := os.ReadDir(c.dir(e.Name())); rerr == nil && len(entries) == 0 {
				detail = "empty: its create ended before it made anything: delete it"
			}
			out = append(out, ListEntry{Name: e.Name(), Status: "broken", Detail: detail})
			continue
		}
		le := ListEntry{Name: st.Name, Nodes: len(st.Bed.Nodes), Subnet: st.Bed.Subnet, Endpoint: st.Endpoint, Created: st.Created}
		bed := OpenBed(st.Bed, func(Record) error { return nil }, nil)
		var down []string
		for _, n := range bed.Nodes() {
			if n.Alive() && n.NodeServiceRunning() {
				le.Running++
			} else {
				down = append(down, n.Name)
			}
		}
		switch {
		case !st.Ready && st.Creator.alive():
			le.Status = "creating"
		case !st.Ready:
			le.Status = "failed"
			le.Detail = "its create did not finish: delete it"
		case le.Running == le.Nodes && linkExists(st.Bed.Bridge):
			le.Status = "running"
		case le.Running == 0:
			le.Status = "stopped"
			le.Detail = "no node runs (after a reboot?): delete it"
		default:
			le.Status = "degraded"
			le.Detail = "down: " + strings.Join(down, ", ")
		}
		out = append(out, le)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// NodeServiceRunning reports whether the node's kubeforge node service
// runs (its pid file names a live process in the node's network
// namespace).
func (n *Node) NodeServiceRunning() bool {
	b, err := os.ReadFile(n.Path("/run/kubeforge/node.pid"))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && pid > 0 && n.InNetNS(pid)
}

// Open finds a cluster's bed again.
func (c *Clusters) Open(name string) (*State, *Bed, error) {
	st, err := c.LoadState(name)
	if err != nil {
		return nil, nil, err
	}
	save := func(rec Record) error { st.Bed = rec; return c.saveState(st) }
	if !st.Ready && st.Creator.alive() {
		save = nil // the state file is its creator's to write
	}
	logf := func(format string, args ...any) { c.printf("[cluster] "+format+"\n", args...) }
	return st, OpenBed(st.Bed, save, logf), nil
}

// Delete removes a cluster: `kubeforge reset --force` on every node, then
// everything it made on the host; it checks that nothing is left and
// removes its context from the kubeconfig.
func (c *Clusters) Delete(name string) error {
	if err := CheckHost(); err != nil {
		return err
	}
	if ValidateName(name) == nil {
		// A create that ended (killed) between making the cluster's
		// directory and saving its state left it empty: nothing else of
		// the cluster exists.
		if _, err := os.Stat(c.statePath(name)); errors.Is(err, os.ErrNotExist) {
			if entries, err := os.ReadDir(c.dir(name)); err == nil && len(entries) == 0 {
				if err := os.Remove(c.dir(name)); err != nil {
					return err
				}
				c.printf("[cluster] Removed the empty directory of cluster %s (its create ended before it made anything)\n", name)
				return nil
			}
		}
	}
	st, bed, err := c.Open(name)
	if err != nil {
		return err
	}
	if !st.Ready && st.Creator.alive() {
		return fmt.Errorf("cluster %q is being created by process %d: wait for it, or stop that process first", name, st.Creator.PID)
	}
	start := time.Now()
	errs := bed.DestroyParallel(true)
	if left := bed.Leftovers(start); len(left) > 0 {
		errs = append(errs, fmt.Errorf("left on the host:\n  %s", strings.Join(left, "\n  ")))
	}
	if err := RemoveKubeconfigContext(c.Kubeconfig, name); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete cluster %s: %w", name, errors.Join(errs...))
	}
	c.printf("[cluster] Deleted cluster %s in %.1fs; no netns, link, cgroup, mount or process of it is left\n", name, time.Since(start).Seconds())
	return nil
}

// LoadImage imports an image archive (OCI layout or docker save tarball)
// into every node's containerd, as `kind load image-archive` does.
func (c *Clusters) LoadImage(ctx context.Context, name, file string) error {
	if err := CheckHost(); err != nil {
		return err
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("image archive: %w; give a tarball made by `docker save`, `ctr images export` or an OCI layout", err)
	}
	_, bed, err := c.Open(name)
	if err != nil {
		return err
	}
	// The nodes see the cluster's directory at the same path.
	tmp, err := os.MkdirTemp(bed.Dir, "image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	local := filepath.Join(tmp, "image.tar")
	if err := linkOrCopy(file, local); err != nil {
		return err
	}
	nodes := bed.Nodes()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if !n.Alive() {
			errs[i] = fmt.Errorf("node %s is not running", n.Name)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := c.run(ctx, n, "images import", 5*time.Minute, "images", "import", local)
			if err == nil {
				c.printf("[cluster] %s: %s\n", n.Name, strings.TrimSpace(lastLine(out)))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
