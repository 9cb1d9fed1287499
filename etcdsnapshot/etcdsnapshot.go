// Package etcdsnapshot saves, lists, verifies and prunes the etcd snapshots
// a control-plane node keeps under its data directory
// (config.Paths.EtcdSnapshotDir): each NAME.db, saved with etcd's own
// snapshot client (go.etcd.io/etcd/client/v3/snapshot), has a metadata file
// NAME.json beside it (size, revision, sha256, creation time, node, whether
// it was scheduled). It is light (etcd's client and bbolt only), so that
// phases can take a snapshot; restoring one needs etcd's server packages
// and lives in components/etcd/restore.
package etcdsnapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/join/etcdmember"
)

// Name prefixes of the snapshots kubeforge names itself (k3s's convention).
const (
	OnDemandPrefix  = "on-demand-"
	ScheduledPrefix = "etcd-snapshot-"
)

// Meta is a snapshot's metadata file.
type Meta struct {
	Name string `json:"name"`
	// File is the snapshot's file name in the directory (NAME.db).
	File string `json:"file"`
	// Size in bytes, Revision: etcd's revision in the snapshot, SHA256 of
	// the whole file.
	Size     int64  `json:"size"`
	Revision int64  `json:"revision"`
	SHA256   string `json:"sha256"`
	// CreatedAt is when the save finished.
	CreatedAt time.Time `json:"createdAt"`
	// Node that saved it; Scheduled: taken by the node service's schedule
	// (pruned to the retention count), not by hand (kept until deleted).
	Node        string `json:"node"`
	Scheduled   bool   `json:"scheduled"`
	EtcdVersion string `json:"etcdVersion,omitempty"`
	// Missing is set by List for a NAME.db without metadata (or the other
	// way round); it is never written.
	Missing string `json:"-"`
}

// Store is a directory of snapshots.
type Store struct {
	// Dir is the host path of the directory.
	Dir string
}

// NewStore is the node's snapshot store.
func NewStore(p config.Paths) Store { return Store{Dir: p.Host(p.EtcdSnapshotDir())} }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

// CheckName refuses a snapshot name that is not a plain file name.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || strings.HasSuffix(name, ".part") {
		return fmt.Errorf("snapshot name %q: use letters, digits, '.', '_' and '-' only (at most 200, not starting with '.' or '-')", name)
	}
	return nil
}

// DBPath and MetaPath are the files of snapshot name.
func (s Store) DBPath(name string) string   { return filepath.Join(s.Dir, name+".db") }
func (s Store) MetaPath(name string) string { return filepath.Join(s.Dir, name+".json") }

// SaveOptions say what to save.
type SaveOptions struct {
	// Name of the snapshot; empty: on-demand-NODE-UNIXTIME (or
	// etcd-snapshot-NODE-UNIXTIME when Scheduled).
	Name      string
	Node      string
	Scheduled bool
	// Endpoint of the etcd member to save from (one only).
	Endpoint string
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// DefaultName is the name kubeforge gives a snapshot it is not told a name for.
func DefaultName(node string, scheduled bool, t time.Time) string {
	prefix := OnDemandPrefix
	if scheduled {
		prefix = ScheduledPrefix
	}
	return fmt.Sprintf("%s%s-%d", prefix, node, t.Unix())
}

// Save takes a snapshot of the etcd member at o.Endpoint with the node's
// etcd client certificate (p), stores it and its metadata, and returns the
// metadata. An existing snapshot of the same name is refused.
func (s Store) Save(ctx context.Context, p config.Paths, o SaveOptions) (Meta, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	if o.Name == "" {
		o.Name = DefaultName(o.Node, o.Scheduled, now())
	}
	if err := CheckName(o.Name); err != nil {
		return Meta{}, err
	}
	dbPath := s.DBPath(o.Name)
	if fsutil.Exists(dbPath) || fsutil.Exists(s.MetaPath(o.Name)) {
		return Meta{}, fmt.Errorf("snapshot %s exists (%s): choose another name or delete it first (kubeforge etcd snapshot delete %s)", o.Name, dbPath, o.Name)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return Meta{}, fmt.Errorf("snapshot directory: %w", err)
	}
	cfg, err := etcdmember.ClientConfig(p, []string{o.Endpoint})
	if err != nil {
		return Meta{}, err
	}
	version, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, dbPath)
	if err != nil {
		_ = os.Remove(dbPath)
		return Meta{}, fmt.Errorf("save etcd snapshot from %s to %s: %w", o.Endpoint, dbPath, err)
	}
	m, err := Inspect(dbPath)
	if err != nil {
		_ = os.Remove(dbPath)
		return Meta{}, fmt.Errorf("the snapshot saved to %s does not check out: %w", dbPath, err)
	}
	m.Name, m.File, m.Node, m.Scheduled, m.EtcdVersion = o.Name, filepath.Base(dbPath), o.Node, o.Scheduled, version
	m.CreatedAt = now().UTC().Truncate(time.Second)
	if err := s.writeMeta(m); err != nil {
		_ = os.Remove(dbPath)
		return Meta{}, err
	}
	return m, nil
}

func (s Store) writeMeta(m Meta) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if _, err := fsutil.WriteFile(s.MetaPath(m.Name), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write snapshot metadata: %w", err)
	}
	return nil
}

// ReadMeta reads snapshot name's metadata.
func (s Store) ReadMeta(name string) (Meta, error) {
	data, err := os.ReadFile(s.MetaPath(name))
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	if err := json.Unmarshal(data, &m); err != nil {
		return Meta{}, fmt.Errorf("%s: %w", s.MetaPath(name), err)
	}
	return m, nil
}

// List returns every snapshot in the store, oldest first. A NAME.db
// without metadata is listed with its size and modification time, and
// Missing says so.
func (s Store) List() ([]Meta, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	byName := map[string]Meta{}
	for _, e := range entries {
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".json"):
			name := strings.TrimSuffix(n, ".json")
			m, err := s.ReadMeta(name)
			if err != nil {
				m = Meta{Name: name, Missing: "unreadable metadata: " + err.Error()}
			}
			if !fsutil.Exists(s.DBPath(name)) {
				m.Missing = "the snapshot file " + name + ".db is missing"
			}
			byName[name] = m
		case strings.HasSuffix(n, ".db"):
			name := strings.TrimSuffix(n, ".db")
			if _, ok := byName[name]; ok || fsutil.Exists(s.MetaPath(name)) {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue
			}
			byName[name] = Meta{Name: name, File: n, Size: fi.Size(), CreatedAt: fi.ModTime().UTC().Truncate(time.Second), Missing: "no metadata file"}
		}
	}
	out := make([]Meta, 0, len(byName))
	for _, m := range byName {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Delete removes snapshot name (its file and metadata).
func (s Store) Delete(name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	var found bool
	for _, f := range []string{s.DBPath(name), s.MetaPath(name)} {
		err := os.Remove(f)
		if err == nil {
			found = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete snapshot %s: %w", name, err)
		}
	}
	if !found {
		return fmt.Errorf("no snapshot %s in %s (kubeforge etcd snapshot list shows them)", name, s.Dir)
	}
	return nil
}

// Prune deletes the oldest scheduled snapshots beyond the newest keep
// (snapshots saved by hand are never pruned) and returns their names.
func (s Store) Prune(keep int) ([]string, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var scheduled []Meta
	for _, m := range all {
		if m.Scheduled {
			scheduled = append(scheduled, m)
		}
	}
	var removed []string
	var errs []error
	for i := 0; i < len(scheduled)-keep; i++ { // oldest first
		if err := s.Delete(scheduled[i].Name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, scheduled[i].Name)
	}
	return removed, errors.Join(errs...)
}

// LastScheduled is the newest scheduled snapshot's creation time (zero when
// there is none).
func (s Store) LastScheduled() (time.Time, error) {
	all, err := s.List()
	var last time.Time
	for _, m := range all {
		if m.Scheduled && m.CreatedAt.After(last) {
			last = m.CreatedAt
		}
	}
	return last, err
}

// Resolve turns what a user typed (a snapshot name in the store, or a
// file path) into a file path, and the snapshot's metadata when the
// store has it.
func (s Store) Resolve(arg string) (string, *Meta) {
	if !strings.ContainsRune(arg, '/') && CheckName(arg) == nil {
		if fsutil.Exists(s.DBPath(arg)) {
			if m, err := s.ReadMeta(arg); err == nil {
				return s.DBPath(arg), &m
			}
			return s.DBPath(arg), nil
		}
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		abs = arg
	}
	if filepath.Dir(abs) == filepath.Clean(s.Dir) && strings.HasSuffix(abs, ".db") {
		if m, err := s.ReadMeta(strings.TrimSuffix(filepath.Base(abs), ".db")); err == nil {
			return abs, &m
		}
	}
	return abs, nil
}

// Inspect checks a snapshot file the way etcd's restore will, without
// touching anything: it must end in the sha256 that etcd's snapshot API
// appends (a truncated or altered file does not), and its bolt database
// must open; it returns the size, whole-file sha256 and etcd revision.
func Inspect(path string) (Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Meta{}, err
	}
	size := fi.Size()
	// etcd's snapshot: a bolt database (a multiple of its 4 KiB pages,
	// so of 512 bytes) followed by the sha256 of it.
	if size < 512+sha256.Size || size%512 != sha256.Size {
		return Meta{}, fmt.Errorf("%s: %d bytes is not the size of an etcd snapshot (a whole database plus its sha256): the file is truncated or not a snapshot", path, size)
	}
	whole, data := sha256.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(whole, data), io.LimitReader(f, size-sha256.Size)); err != nil {
		return Meta{}, fmt.Errorf("read %s: %w", path, err)
	}
	trailer := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, trailer); err != nil {
		return Meta{}, fmt.Errorf("read %s: %w", path, err)
	}
	whole.Write(trailer)
	if !bytes.Equal(data.Sum(nil), trailer) {
		return Meta{}, fmt.Errorf("%s: the database does not match the sha256 etcd appended to it: the file is corrupt", path)
	}
	rev, err := revision(path)
	if err != nil {
		return Meta{}, fmt.Errorf("%s: not a readable etcd database: %w", path, err)
	}
	return Meta{Size: size, Revision: rev, SHA256: hex.EncodeToString(whole.Sum(nil))}, nil
}

// Check inspects path and, given its metadata, compares size and sha256.
func Check(path string, m *Meta) (Meta, error) {
	got, err := Inspect(path)
	if err != nil {
		return got, err
	}
	if m != nil && m.SHA256 != "" && (m.SHA256 != got.SHA256 || m.Size != got.Size) {
		return got, fmt.Errorf("%s: sha256 %s (%d bytes) differs from %s (%d bytes) recorded when it was saved: the file changed", path, got.SHA256, got.Size, m.SHA256, m.Size)
	}
	return got, nil
}

// revision reads the newest revision in the snapshot's key bucket.
func revision(path string) (int64, error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var rev int64
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("no key bucket")
		}
		k, _ := b.Cursor().Last()
		if len(k) >= 8 {
			rev = int64(binary.BigEndian.Uint64(k[:8]))
		}
		return nil
	})
	return rev, err
}
