// Package ipam is the pod network's CNI IPAM plugin (kubeforge-ipam): it
// waits briefly for the node agent (package podnet) to write the node's pod
// CIDRs, then delegates to the standard host-local plugin with that range.
// It imports only the standard library and internal/fsutil, so that the
// small host-tool trampoline (components/hosttools/trampoline) can run it:
// containerd execs the plugin for every pod sandbox made and removed, and
// the full kubeforge executable pays ~0.3 s of package initialisation on
// each exec.
package ipam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// Name is the IPAM plugin's type, and the name of its executable link.
const Name = "kubeforge-ipam"

// ipamConfig is the plugin's section of the CNI configuration.
type ipamConfig struct {
	Type string `json:"type"`
	// PodCIDRFile holds the node's pod CIDRs (JSON list), written by the node agent.
	PodCIDRFile string `json:"podCIDRFile"`
	// Routes are passed to host-local.
	Routes []map[string]any `json:"routes,omitempty"`
	// DataDir is host-local's state directory.
	DataDir string `json:"dataDir,omitempty"`
	// WaitSeconds bounds the wait for the pod CIDR (default 30).
	WaitSeconds int `json:"waitSeconds,omitempty"`
}

// Is reports whether args start the IPAM plugin.
func Is(args []string) bool { return len(args) > 0 && filepath.Base(args[0]) == Name }

// Main runs the plugin: CNI_COMMAND and the network configuration on
// stdin, result on stdout, errors as CNI error JSON.
func Main(_ []string) int {
	if err := runIPAM(os.Stdin, os.Stdout, os.Stderr, os.Getenv("CNI_COMMAND"), os.Getenv("CNI_PATH")); err != nil {
		var de delegateExit
		if errors.As(err, &de) {
			return int(de) // host-local already printed its error result
		}
		json.NewEncoder(os.Stdout).Encode(map[string]any{"cniVersion": "1.0.0", "code": 999, "msg": err.Error()})
		return 1
	}
	return 0
}

// delegateExit is host-local's exit code when it failed: it has printed
// its CNI error result already, so the plugin exits with its code and
// prints nothing more.
type delegateExit int

func (e delegateExit) Error() string { return fmt.Sprintf("host-local exited with code %d", int(e)) }

func runIPAM(stdin io.Reader, stdout, stderr io.Writer, command, cniPath string) error {
	raw, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	if command == "VERSION" {
		_, err := stdout.Write([]byte(`{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`))
		return err
	}
	var netconf map[string]any
	if err := json.Unmarshal(raw, &netconf); err != nil {
		return fmt.Errorf("kubeforge-ipam: bad network configuration: %w", err)
	}
	ipamRaw, _ := json.Marshal(netconf["ipam"])
	var ic ipamConfig
	if err := json.Unmarshal(ipamRaw, &ic); err != nil || ic.PodCIDRFile == "" {
		return fmt.Errorf("kubeforge-ipam: the ipam section needs podCIDRFile")
	}
	wait := time.Duration(ic.WaitSeconds) * time.Second
	if wait == 0 {
		wait = 30 * time.Second
	}
	if command == "DEL" || command == "GC" || command == "STATUS" {
		wait = 0 // never block a teardown
	}
	cidrs, err := readCIDRs(ic.PodCIDRFile, wait)
	if err != nil {
		if command != "ADD" && command != "CHECK" {
			// host-local releases by container ID, whatever the range; but
			// it rejects a range smaller than /30 before it gets there.
			cidrs = []string{"0.0.0.0/30"}
		} else {
			return err
		}
	}
	var ranges [][]map[string]string
	for _, c := range cidrs {
		ranges = append(ranges, []map[string]string{{"subnet": c}})
	}
	routes := ic.Routes
	if len(routes) == 0 {
		routes = defaultRoutes(cidrs)
	}
	hl := map[string]any{"type": "host-local", "ranges": ranges, "routes": routes}
	if ic.DataDir != "" {
		hl["dataDir"] = ic.DataDir
	}
	netconf["ipam"] = hl
	delegated, _ := json.Marshal(netconf)
	bin, err := findPlugin("host-local", cniPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin)
	cmd.Stdin = bytes.NewReader(delegated)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = os.Environ()
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return delegateExit(ee.ExitCode())
		}
		return err
	}
	return nil
}

// defaultRoutes are the pods' default routes, one per IP family of the
// node's pod CIDRs (through the bridge, the pod's gateway). They are what a
// configuration without routes gets: a node that wrote its CNI
// configuration before it knew the cluster's pod subnet (a joining worker
// does not read the ClusterConfiguration) has "routes": [], and its pods
// would reach nothing beyond their own node's /24.
func defaultRoutes(cidrs []string) []map[string]any {
	var v4, v6 bool
	for _, c := range cidrs {
		if isV4CIDR(c) {
			v4 = true
		} else {
			v6 = true
		}
	}
	var routes []map[string]any
	if v4 {
		routes = append(routes, map[string]any{"dst": "0.0.0.0/0"})
	}
	if v6 {
		routes = append(routes, map[string]any{"dst": "::/0"})
	}
	return routes
}

// readCIDRs reads the node's pod CIDRs, waiting up to wait for the node
// agent to write them (the controller-manager allocates them moments after
// the node registers).
func readCIDRs(file string, wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(file)
		if err == nil {
			var cidrs []string
			if err := json.Unmarshal(b, &cidrs); err == nil && len(cidrs) > 0 {
				return cidrs, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kubeforge-ipam: this node has no pod CIDR yet (%s is missing): is the controller-manager allocating node CIDRs (--allocate-node-cidrs) and the node service running?", file)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func findPlugin(name, cniPath string) (string, error) {
	for _, dir := range filepath.SplitList(cniPath) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("kubeforge-ipam: the %s CNI plugin is not in %q (install containernetworking-plugins)", name, cniPath)
}

// WriteCIDRs stores the node's pod CIDRs for the plugin.
func WriteCIDRs(file string, cidrs []string) error {
	b, _ := json.Marshal(cidrs)
	_, err := fsutil.WriteFile(file, b, 0o644)
	return err
}

// ReadCIDRs returns the stored pod CIDRs (nil when none).
func ReadCIDRs(file string) []string {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	var cidrs []string
	_ = json.Unmarshal(b, &cidrs)
	return cidrs
}

// isV4CIDR reports whether c is an IPv4 CIDR.
func isV4CIDR(c string) bool {
	ip, _, err := net.ParseCIDR(c)
	return err == nil && ip.To4() != nil
}
