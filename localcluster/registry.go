package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// registryDir holds one JSON record per live testbed on this machine: what
// it created and which process owns it. A testbed whose owner died (a test
// binary killed by a timeout or a signal runs no cleanup) is removed by
// the next New (Sweep).
const registryDir = "/run/kftb"

type procID struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // /proc/PID/stat starttime: tells a reused pid apart
}

func self() procID { return procOf(os.Getpid()) }

func procOf(pid int) procID {
	st, _ := startTime(pid)
	return procID{PID: pid, Start: st}
}

// alive reports whether the process still runs (same pid, same start).
func (p procID) alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, err := startTime(p.PID)
	return err == nil && st == p.Start
}

func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// Fields after the command: state is field 3, starttime field 22.
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	if f[0] == "Z" {
		return 0, fmt.Errorf("pid %d is a zombie", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

type record struct {
	ID     string       `json:"id"`
	Owner  procID       `json:"owner"`
	Bridge string       `json:"bridge"`
	Subnet string       `json:"subnet"`
	Dir    string       `json:"dir"`
	Nodes  []nodeRecord `json:"nodes"`
}

type nodeRecord struct {
	NetNS      string `json:"netns"`
	HostVeth   string `json:"hostVeth"`
	CgroupRoot string `json:"cgroupRoot"`
	Holder     procID `json:"holder"`
	NetNSID    string `json:"netnsID"`   // readlink of /proc/PID/ns/net: net:[inode]
	MountNSID  string `json:"mountNSID"` // mnt:[inode]
}

type registry struct{ dir string }

// withRegistry runs f holding the registry's lock (flock on its directory).
// The directory goes away when the last record does.
func withRegistry(f func(*registry) error) error {
	for attempt := 0; ; attempt++ {
		if err := os.MkdirAll(registryDir, 0o700); err != nil {
			return err
		}
		d, err := os.Open(registryDir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && attempt < 10 {
				continue // removed by another testbed in between
			}
			return err
		}
		if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
			d.Close()
			return fmt.Errorf("lock %s: %w", registryDir, err)
		}
		held, _ := d.Stat()
		cur, err := os.Stat(registryDir)
		if err != nil || !os.SameFile(held, cur) {
			d.Close() // locked a directory that was removed meanwhile
			if attempt < 10 {
				continue
			}
			return fmt.Errorf("lock %s: it keeps being replaced", registryDir)
		}
		r := &registry{dir: registryDir}
		ferr := f(r)
		if entries, err := os.ReadDir(registryDir); err == nil && len(entries) == 0 {
			_ = os.Remove(registryDir)
		}
		d.Close()
		return ferr
	}
}

func (r *registry) path(id string) string { return filepath.Join(r.dir, id+".json") }

func (r *registry) save(rec record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	tmp := r.path(rec.ID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, r.path(rec.ID))
}

func (r *registry) remove(id string) error {
	if err := os.Remove(r.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func (r *registry) records() []record {
	var out []record
	entries, _ := os.ReadDir(r.dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
		if err != nil {
			continue
		}
		var rec record
		if json.Unmarshal(b, &rec) == nil && rec.ID != "" {
			out = append(out, rec)
		}
	}
	return out
}

// freeSubnet picks a 10.x.y.0/24 that overlaps no address or route of the
// host and no other testbed's subnet. x stays in 160–199: clear of the
// default service (10.96.0.0/12) and pod (10.244.0.0/16) networks.
func (r *registry) freeSubnet() (netip.Prefix, error) {
	var used []netip.Prefix
	for _, rec := range r.records() {
		if p, err := netip.ParsePrefix(rec.Subnet); err == nil {
			used = append(used, p)
		}
	}
	for _, args := range [][]string{{"-4", "-o", "route", "show", "table", "all"}, {"-4", "-o", "addr", "show"}} {
		out, err := outputHost("ip", args...)
		if err != nil {
			return netip.Prefix{}, err
		}
		for _, tok := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(tok); err == nil && p.Addr().Is4() {
				used = append(used, p.Masked())
			} else if a, err := netip.ParseAddr(tok); err == nil && a.Is4() {
				used = append(used, netip.PrefixFrom(a, 32))
			}
		}
	}
	for i := 0; i < 1000; i++ {
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(160 + rand.IntN(40)), byte(rand.IntN(256)), 0}), 24)
		free := true
		for _, u := range used {
			if u.Bits() > 0 && u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, errors.New("no free 10.x.y.0/24 subnet in 10.160.0.0–10.199.255.255")
}

// Sweep removes the testbeds whose owning process is gone: a test binary
// that was killed (timeout, signal) ran no cleanup. New calls it.
func Sweep(logf func(format string, args ...any)) {
	var stale []record
	_ = withRegistry(func(r *registry) error {
		for _, rec := range r.records() {
			if !rec.Owner.alive() {
				stale = append(stale, rec)
			}
		}
		return nil
	})
	for _, rec := range stale {
		logf("testbed: removing testbed %s left by process %d, which is gone", rec.ID, rec.Owner.PID)
		for i := len(rec.Nodes) - 1; i >= 0; i-- {
			nr := rec.Nodes[i]
			n := &Node{NetNS: nr.NetNS, HostVeth: nr.HostVeth, CgroupRoot: nr.CgroupRoot,
				netnsID: nr.NetNSID, mountNSID: nr.MountNSID, holder: nr.Holder, holderPID: nr.Holder.PID}
			for _, err := range n.destroy(false) {
				logf("testbed %s: %v", rec.ID, err)
			}
		}
		if rec.Bridge != "" && linkExists(rec.Bridge) {
			if err := runHost("ip", "link", "delete", rec.Bridge); err != nil {
				logf("testbed %s: %v", rec.ID, err)
			}
		}
		if rec.Dir != "" && strings.HasPrefix(filepath.Base(rec.Dir), "kftb-") {
			if err := removeAll(rec.Dir); err != nil {
				logf("testbed %s: %v", rec.ID, err)
			}
		}
		_ = withRegistry(func(r *registry) error { return r.remove(rec.ID) })
	}
}
