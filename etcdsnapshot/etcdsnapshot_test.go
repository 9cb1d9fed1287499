package etcdsnapshot

import (
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"sigs.k8s.io/yaml"

	"github.com/kubeforge/kubeforge/manifests"
)

// writeSnapshot writes a file shaped like etcd's snapshot: a bolt database
// with a key bucket whose newest revision is rev, then the sha256 of it.
func writeSnapshot(t *testing.T, path string, rev int64) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("key"))
		if err != nil {
			return err
		}
		for r := int64(1); r <= rev; r++ {
			k := make([]byte, 17)
			binary.BigEndian.PutUint64(k, uint64(r))
			k[8] = '_'
			if err := b.Put(k, []byte("value")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if err := os.WriteFile(path, append(data, sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestInspect(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	writeSnapshot(t, good, 42)
	m, err := Inspect(good)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(good)
	if m.Revision != 42 || m.Size != fi.Size() || len(m.SHA256) != 64 {
		t.Errorf("Inspect = %+v, want revision 42, size %d, a sha256", m, fi.Size())
	}
	data, _ := os.ReadFile(good)
	cases := map[string][]byte{
		"truncated":        data[:len(data)/2],
		"truncated by one": data[:len(data)-1],
		"empty":            {},
		"flipped byte":     append(append([]byte{}, data[:100]...), append([]byte{data[100] ^ 0xff}, data[101:]...)...),
		"no trailer":       data[:len(data)-sha256.Size],
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".db")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Inspect(p); err == nil || !strings.Contains(err.Error(), p) {
				t.Errorf("Inspect(%s) = %v, want an error naming the file", name, err)
			}
		})
	}
	// A sound file whose recorded checksum differs is refused by Check.
	if _, err := Check(good, &Meta{SHA256: strings.Repeat("0", 64), Size: m.Size}); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("Check with a wrong recorded sha256 = %v, want refused", err)
	}
	if _, err := Check(good, &m); err != nil {
		t.Errorf("Check with its own metadata: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "on-demand-n1-1700000000", "before_upgrade.v1"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "a/b", "../x", "a b", "x.part", strings.Repeat("a", 201)} {
		if err := CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted", bad)
		}
	}
}

// put adds a snapshot with metadata to s, as Save would.
func put(t *testing.T, s Store, name string, scheduled bool, at time.Time) {
	t.Helper()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSnapshot(t, s.DBPath(name), 3)
	m, err := Inspect(s.DBPath(name))
	if err != nil {
		t.Fatal(err)
	}
	m.Name, m.File, m.Node, m.Scheduled, m.CreatedAt = name, name+".db", "n1", scheduled, at.UTC()
	if err := s.writeMeta(m); err != nil {
		t.Fatal(err)
	}
}

func names(ms []Meta) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return strings.Join(out, ",")
}

func TestStoreListDeletePrune(t *testing.T) {
	s := Store{Dir: filepath.Join(t.TempDir(), "snaps")}
	if all, err := s.List(); err != nil || len(all) != 0 {
		t.Fatalf("List of a missing directory = %v, %v", all, err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	put(t, s, "s1", true, t0.Add(1*time.Hour))
	put(t, s, "manual-old", false, t0)
	put(t, s, "s2", true, t0.Add(2*time.Hour))
	put(t, s, "s3", true, t0.Add(3*time.Hour))
	put(t, s, "manual", false, t0.Add(150*time.Minute))
	writeSnapshot(t, filepath.Join(s.Dir, "copied.db"), 1) // no metadata

	all, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	// copied.db has its mtime (now): last.
	if got := names(all); got != "manual-old,s1,s2,manual,s3,copied" {
		t.Errorf("List = %s", got)
	}
	if all[len(all)-1].Missing == "" || all[0].Missing != "" {
		t.Errorf("Missing: copied %q, manual-old %q", all[len(all)-1].Missing, all[0].Missing)
	}
	last, err := s.LastScheduled()
	if err != nil || !last.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("LastScheduled = %v, %v", last, err)
	}

	removed, err := s.Prune(2)
	if err != nil || strings.Join(removed, ",") != "s1" {
		t.Errorf("Prune(2) removed %v, %v; want s1", removed, err)
	}
	removed, err = s.Prune(2) // idempotent
	if err != nil || len(removed) != 0 {
		t.Errorf("second Prune(2) removed %v, %v", removed, err)
	}
	removed, _ = s.Prune(1)
	if strings.Join(removed, ",") != "s2" {
		t.Errorf("Prune(1) removed %v, want s2", removed)
	}
	all, _ = s.List()
	if got := names(all); got != "manual-old,manual,s3,copied" {
		t.Errorf("after pruning, List = %s (manual snapshots must stay)", got)
	}
	for _, f := range []string{s.DBPath("s1"), s.MetaPath("s1"), s.DBPath("s2"), s.MetaPath("s2")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s still there after prune", f)
		}
	}

	if err := s.Delete("manual"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("manual"); err == nil || !strings.Contains(err.Error(), "no snapshot manual") {
		t.Errorf("deleting a missing snapshot = %v", err)
	}
	if err := s.Delete("../etc"); err == nil {
		t.Error("Delete accepted a path")
	}

	// Resolve: a name in the store brings its metadata; a path does too
	// when it points into the store; another path does not.
	p, m := s.Resolve("s3")
	if p != s.DBPath("s3") || m == nil || m.Name != "s3" {
		t.Errorf("Resolve(s3) = %s, %+v", p, m)
	}
	if _, m := s.Resolve(s.DBPath("s3")); m == nil {
		t.Error("Resolve(path in store) has no metadata")
	}
	if p, m := s.Resolve("/tmp/x.db"); p != "/tmp/x.db" || m != nil {
		t.Errorf("Resolve(/tmp/x.db) = %s, %v", p, m)
	}
}

func TestDefaultName(t *testing.T) {
	at := time.Unix(1700000000, 0)
	if got := DefaultName("n1", false, at); got != "on-demand-n1-1700000000" {
		t.Error(got)
	}
	if got := DefaultName("n1", true, at); got != "etcd-snapshot-n1-1700000000" {
		t.Error(got)
	}
}

func TestMemberAndSingleMemberPod(t *testing.T) {
	golden, err := os.ReadFile("../testdata/etcd.yaml.golden")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMember("etcd.yaml", golden)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "n1" || m.PeerURL != "https://10.201.0.2:2380" || m.DataDir != "/var/lib/etcd" || strings.Join(m.ClientURLs, ",") != "https://10.201.0.2:2379" {
		t.Errorf("ParseMember = %+v", m)
	}
	// Re-encoded, a manifest as kubeforge renders it comes out byte for
	// byte as it went in: the restore changes only what it means to.
	pod, changed, err := m.SingleMemberPod()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := manifests.MarshalPod(pod); err != nil || changed || string(out) != string(golden) {
		t.Errorf("an init manifest (single member already) changed (%v, %v):\n%s", changed, err, out)
	}
	// A joined member: other members listed, cluster state existing.
	joined := strings.Replace(string(golden), "    - --initial-cluster=n1=https://10.201.0.2:2380\n",
		"    - --initial-cluster=n0=https://10.201.0.9:2380,n1=https://10.201.0.2:2380\n    - --initial-cluster-state=existing\n", 1)
	if joined == string(golden) {
		t.Fatal("the golden manifest has no --initial-cluster line to replace")
	}
	m, err = ParseMember("etcd.yaml", []byte(joined))
	if err != nil {
		t.Fatal(err)
	}
	pod, changed, err = m.SingleMemberPod()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := manifests.MarshalPod(pod); err != nil || !changed || string(out) != string(golden) {
		t.Errorf("the joined member's manifest was not made a single member's (changed %v, %v):\n%s", changed, err, out)
	}
	if _, err := ParseMember("etcd.yaml", []byte("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd]\n")); err == nil {
		t.Error("a manifest without --name was accepted")
	}
}

func TestAnnotate(t *testing.T) {
	golden, err := os.ReadFile("../testdata/etcd.yaml.golden")
	if err != nil {
		t.Fatal(err)
	}
	pod, err := manifests.UnmarshalPod(golden)
	if err != nil {
		t.Fatal(err)
	}
	Annotate(pod, "kubeforge.io/etcd-restored", "t1 abc")
	once, err := manifests.MarshalPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	Annotate(pod, "kubeforge.io/etcd-restored", "t2 def")
	twice, err := manifests.MarshalPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		data []byte
		want string
	}{{once, "t1 abc"}, {twice, "t2 def"}} {
		m, err := ParseMember("etcd.yaml", tc.data)
		if err != nil {
			t.Fatal(err)
		}
		var pod struct {
			Metadata struct{ Annotations map[string]string }
		}
		if err := yaml.Unmarshal(tc.data, &pod); err != nil {
			t.Fatal(err)
		}
		a := pod.Metadata.Annotations
		if a["kubeforge.io/etcd-restored"] != tc.want || a["kubeadm.kubernetes.io/etcd.advertise-client-urls"] == "" || m.Name != "n1" {
			t.Errorf("annotations %v (want %q kept beside the others), member %+v", a, tc.want, m.Name)
		}
	}
	// Only the annotation's line is new: the rest of the manifest stays.
	if strings.Count(string(twice), "etcd-restored") != 1 || len(strings.Split(string(twice), "\n")) != len(strings.Split(string(golden), "\n"))+1 {
		t.Errorf("Annotate twice:\n%s", twice)
	}
	bare, err := manifests.UnmarshalPod([]byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec:\n  containers:\n  - name: etcd\n"))
	if err != nil {
		t.Fatal(err)
	}
	Annotate(bare, "k", "v")
	if bare.Annotations["k"] != "v" || bare.Name != "etcd" {
		t.Errorf("annotating a pod without annotations: %v", bare.ObjectMeta)
	}
}
