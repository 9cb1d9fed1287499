package localcluster

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
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RegistryDir holds one JSON record per live owned bed (a test's) on this
// machine: what it created and which process owns it. A bed whose owner
// died (a test binary killed by a timeout or a signal runs no cleanup) is
// removed by the next Sweep. Its lock also serialises the choice of
// subnets between all beds, clusters included.
const RegistryDir = "/run/kftb"

const registryDir = RegistryDir

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

// kill sends sig to the process if it still is p. The pidfd keeps its
// process, so a pid that is reused after the check is never signalled.
func (p procID) kill(sig syscall.Signal) error {
	if p.PID <= 0 {
		return fmt.Errorf("no process")
	}
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ENOSYS) {
		if !p.alive() {
			return fmt.Errorf("pid %d is gone", p.PID)
		}
		return syscall.Kill(p.PID, sig)
	}
	if err != nil {
		return fmt.Errorf("pid %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	if !p.alive() {
		return fmt.Errorf("pid %d is gone", p.PID)
	}
	return unix.PidfdSendSignal(fd, sig, nil, 0)
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

// Record is what a bed made: enough for another process to find it again
// (OpenBed) and remove it.
type Record struct {
	ID     string       `json:"id"`
	Prefix string       `json:"prefix,omitempty"`
	Owner  procID       `json:"owner"`
	Bridge string       `json:"bridge"`
	Subnet string       `json:"subnet"`
	Dir    string       `json:"dir"`
	Nodes  []NodeRecord `json:"nodes"`
	// StateDir marks a guard (GuardStateDir), not a bed: every cluster
	// made under this state directory belongs to Owner.
	StateDir string `json:"stateDir,omitempty"`
	// BootID is the kernel's boot_id when the bed was made: after a
	// reboot its pids and namespace numbers are other processes'.
	BootID string `json:"bootID,omitempty"`
	// Sweeper is the process that removes the bed after its owner died
	// (Sweep); other sweeps leave it to that one.
	Sweeper procID `json:"sweeper,omitzero"`
}

// bootID is this boot's ID (/proc/sys/kernel/random/boot_id).
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// NodeRecord is what a node is made of.
type NodeRecord struct {
	Name       string `json:"name,omitempty"`
	IP         string `json:"ip,omitempty"`
	Dir        string `json:"dir,omitempty"`
	NetNS      string `json:"netns"`
	HostVeth   string `json:"hostVeth"`
	CgroupRoot string `json:"cgroupRoot"`
	Holder     procID `json:"holder"`
	NetNSID    string `json:"netnsID"`   // readlink of /proc/PID/ns/net: net:[inode]
	MountNSID  string `json:"mountNSID"` // mnt:[inode]
}

// HolderAlive reports whether the node's namespace holder still runs.
func (nr NodeRecord) HolderAlive() bool { return nr.Holder.alive() }

// HolderPID is the pid of the node's namespace holder.
func (nr NodeRecord) HolderPID() int { return nr.Holder.PID }

// node makes the record's node again. The recorded holder and namespace
// numbers are kept only while something pins them: the holder (the same
// process, in this boot) pins both namespaces, the netns file its network
// namespace. Otherwise the kernel may have given those numbers to other
// namespaces, whose processes are not the node's to kill.
func (nr NodeRecord) node(b *Bed, sameBoot bool) *Node {
	n := &Node{bed: b, Name: nr.Name, Dir: nr.Dir, NetNS: nr.NetNS, HostVeth: nr.HostVeth, CgroupRoot: nr.CgroupRoot,
		netnsID: nr.NetNSID, mountNSID: nr.MountNSID, holder: nr.Holder, holderPID: nr.Holder.PID}
	n.IP, _ = netip.ParseAddr(nr.IP)
	if sameBoot && n.holder.alive() {
		n.Binary = filepath.Join(binaryDirOf(b.Prefix), "kubeforge")
		return n
	}
	n.holder, n.holderPID, n.mountNSID = procID{}, 0, ""
	if n.netnsID != "" && n.netnsFileID() != n.netnsID {
		n.netnsID = ""
	}
	return n
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

func (r *registry) save(rec Record) error {
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

func (r *registry) records() []Record {
	var out []Record
	entries, _ := os.ReadDir(r.dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
		if err != nil {
			continue
		}
		var rec Record
		if json.Unmarshal(b, &rec) == nil && rec.ID != "" {
			out = append(out, rec)
		}
	}
	return out
}

// usedSubnets lists the owned beds' subnets and every IPv4 address and
// route of the host (in all routing tables).
func (r *registry) usedSubnets() ([]netip.Prefix, error) {
	var used []netip.Prefix
	for _, rec := range r.records() {
		if p, err := netip.ParsePrefix(rec.Subnet); err == nil {
			used = append(used, p)
		}
	}
	for _, args := range [][]string{{"-4", "-o", "route", "show", "table", "all"}, {"-4", "-o", "addr", "show"}} {
		out, err := outputHost("ip", args...)
		if err != nil {
			return nil, err
		}
		used = append(used, ParseIPOutput(out)...)
	}
	return used, nil
}

// ParseIPOutput picks the IPv4 prefixes and addresses (as /32) out of the
// output of `ip -4 -o route|addr show`.
func ParseIPOutput(out string) []netip.Prefix {
	var used []netip.Prefix
	for _, tok := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(tok); err == nil && p.Addr().Is4() {
			used = append(used, p.Masked())
		} else if a, err := netip.ParseAddr(tok); err == nil && a.Is4() {
			used = append(used, netip.PrefixFrom(a, 32))
		}
	}
	return used
}

// Overlapping returns the first of used that overlaps p (a default route,
// 0.0.0.0/0, overlaps nothing here: it is where everything else goes).
func Overlapping(p netip.Prefix, used []netip.Prefix) netip.Prefix {
	for _, u := range used {
		if u.Bits() > 0 && u.Overlaps(p) {
			return u
		}
	}
	return netip.Prefix{}
}

// FreeSubnet picks a /24 in rng that overlaps nothing in used: at random,
// or the lowest free one.
func FreeSubnet(rng netip.Prefix, used []netip.Prefix, random bool) (netip.Prefix, error) {
	rng = rng.Masked()
	if !rng.Addr().Is4() || rng.Bits() > 24 {
		return netip.Prefix{}, fmt.Errorf("range %s: want an IPv4 range of at least a /24", rng)
	}
	count := 1 << (24 - rng.Bits())
	base := rng.Addr().As4()
	nth := func(i int) netip.Prefix {
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8
		v += uint32(i) << 8
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0}), 24)
	}
	if random {
		for i := 0; i < 1000; i++ {
			if cand := nth(rand.IntN(count)); !Overlapping(cand, used).IsValid() {
				return cand, nil
			}
		}
	}
	for i := 0; i < count; i++ {
		if cand := nth(i); !Overlapping(cand, used).IsValid() {
			return cand, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w in %s: every one overlaps an address or route of this host or another bed", errNoSubnet, rng)
}

// sweeping holds the IDs of the records that a Sweep of this process is
// removing.
var sweeping sync.Map

// Sweep removes the testbeds whose owning process is gone: a test binary
// that was killed (timeout, signal) ran no cleanup. New calls it. A bed
// that another process is sweeping at the same time is left to it, and
// Sweep waits (up to 3 minutes) until it is gone, so that every stale bed
// is removed when Sweep returns.
func Sweep(logf func(format string, args ...any)) {
	me := self()
	deadline := time.Now().Add(3 * time.Minute)
	failed := map[string]bool{} // tried once in this call
	for {
		var stale []Record
		busy := false
		_ = withRegistry(func(r *registry) error {
			for _, rec := range r.records() {
				if rec.Owner.alive() || failed[rec.ID] {
					continue
				}
				if _, mine := sweeping.Load(rec.ID); mine || rec.Sweeper != me && rec.Sweeper.alive() {
					busy = true // another goroutine or process removes it
					continue
				}
				rec.Sweeper = me
				if r.save(rec) == nil {
					sweeping.Store(rec.ID, true)
					stale = append(stale, rec)
				}
			}
			return nil
		})
		for _, rec := range stale {
			var done bool
			if rec.StateDir != "" {
				done = sweepStateDir(rec, logf)
			} else {
				done = sweepBed(rec, logf)
			}
			failed[rec.ID] = !done
			_ = withRegistry(func(r *registry) error {
				sweeping.Delete(rec.ID)
				if done {
					return r.remove(rec.ID)
				}
				rec.Sweeper = procID{} // the next sweep tries again
				return r.save(rec)
			})
		}
		if !busy || time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sweepBed removes a dead owner's bed and reports whether all of it went.
func sweepBed(rec Record, logf func(format string, args ...any)) bool {
	logf("testbed: removing testbed %s left by process %d, which is gone", rec.ID, rec.Owner.PID)
	b := OpenBed(rec, func(Record) error { return nil }, logf)
	errs := b.Destroy(false)
	for _, err := range errs {
		logf("testbed %s: %v", rec.ID, err)
	}
	return len(errs) == 0
}

// GuardStateDir makes the clusters that `kubeforge cluster create
// --state-dir dir` makes belong to this process, as a test's beds do: if the
// process dies without deleting them (a test binary killed by its timeout
// runs no cleanup), the next Sweep removes them. A cluster normally outlives
// the process that made it, so only a test asks for this. release drops the
// guard once the clusters are deleted.
func GuardStateDir(dir string) (release func() error, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	rec := Record{ID: "guard-" + randomID(), Owner: self(), StateDir: abs}
	if err := withRegistry(func(r *registry) error { return r.save(rec) }); err != nil {
		return nil, fmt.Errorf("guard %s: %w", abs, err)
	}
	return func() error { return withRegistry(func(r *registry) error { return r.remove(rec.ID) }) }, nil
}

// sweepStateDir removes every cluster under a dead owner's guarded state
// directory: its processes, namespaces, links and cgroups, as for a bed.
// It reports whether all of them went (a cluster still being created, or
// one that could not be removed, keeps the guard for the next sweep).
func sweepStateDir(rec Record, logf func(format string, args ...any)) bool {
	c := &Clusters{Root: rec.StateDir}
	entries, _ := os.ReadDir(rec.StateDir)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := c.LoadState(e.Name())
		if err != nil {
			logf("testbed: cluster %s in %s: %v", e.Name(), rec.StateDir, err)
			continue
		}
		if !st.Ready && st.Creator.alive() {
			logf("testbed: cluster %s in %s is still being created by process %d: left alone", e.Name(), rec.StateDir, st.Creator.PID)
			return false
		}
		logf("testbed: removing cluster %s (in %s) left by process %d, which is gone", st.Name, rec.StateDir, rec.Owner.PID)
		b := OpenBed(st.Bed, func(Record) error { return nil }, logf)
		if errs := b.Destroy(false); len(errs) > 0 {
			for _, err := range errs {
				logf("cluster %s: %v", st.Name, err)
			}
			return false
		}
		_ = os.RemoveAll(c.dir(e.Name()))
	}
	return true
}
