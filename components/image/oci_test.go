package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kubeforge/kubeforge/internal/version"
)

// readTar returns the regular files of a tar stream by name, and the
// names in order (directories included).
func readTar(t *testing.T, r io.Reader) (map[string][]byte, []*tar.Header) {
	t.Helper()
	files := map[string][]byte{}
	var hdrs []*tar.Header
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, hdrs
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, h)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
}

func blob(t *testing.T, files map[string][]byte, d ocispec.Descriptor) []byte {
	t.Helper()
	b, ok := files[blobPath(d.Digest)]
	if !ok {
		t.Fatalf("archive has no blob %s", d.Digest)
	}
	if digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: content has digest %s and %d bytes, descriptor says %d", d.Digest, digest.FromBytes(b), len(b), d.Size)
	}
	return b
}

// checkArchive reads an OCI archive the way an importer does and returns
// the image config and the files of its single layer.
func checkOCIArchive(t *testing.T, archive []byte, wantName string) (ocispec.Image, map[string][]byte, []*tar.Header) {
	t.Helper()
	files, _ := readTar(t, bytes.NewReader(archive))
	var layout ocispec.ImageLayout
	if err := json.Unmarshal(files["oci-layout"], &layout); err != nil || layout.Version != "1.0.0" {
		t.Fatalf("oci-layout %q: %v", files["oci-layout"], err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %s", files["index.json"])
	}
	md := idx.Manifests[0]
	if md.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media type %s", md.MediaType)
	}
	if md.Annotations[images.AnnotationImageName] != wantName {
		t.Errorf("index names the image %q, want %q", md.Annotations[images.AnnotationImageName], wantName)
	}
	if md.Annotations[ocispec.AnnotationRefName] != refTag(wantName) {
		t.Errorf("ref.name annotation %q", md.Annotations[ocispec.AnnotationRefName])
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != runtime.GOARCH {
		t.Errorf("manifest platform %+v", md.Platform)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(blob(t, files, md), &man); err != nil {
		t.Fatal(err)
	}
	if man.SchemaVersion != 2 || man.Config.MediaType != ocispec.MediaTypeImageConfig || len(man.Layers) != 1 ||
		man.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
		t.Fatalf("manifest: %+v", man)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(t, files, man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || cfg.RootFS.Type != "layers" ||
		len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != man.Layers[0].Digest {
		t.Errorf("config: %+v", cfg)
	}
	layerFiles, hdrs := readTar(t, bytes.NewReader(blob(t, files, man.Layers[0])))
	return cfg, layerFiles, hdrs
}

func TestPauseArchive(t *testing.T) {
	s := pauseSpec(0)
	var err error
	if s.layer, err = layerDescriptor(s.entries); err != nil {
		t.Fatal(err)
	}
	b, err := build(s)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeArchive(&buf, s, b); err != nil {
		t.Fatal(err)
	}
	cfg, files, hdrs := checkOCIArchive(t, buf.Bytes(), version.PauseImage())
	elf, _ := PauseELF(runtime.GOARCH)
	if !bytes.Equal(files["pause"], elf) {
		t.Errorf("layer /pause is not the pause program")
	}
	if len(hdrs) != 1 || hdrs[0].Mode != 0o755 || hdrs[0].Uid != 0 || !hdrs[0].ModTime.Equal(epoch) {
		t.Errorf("layer headers: %+v", hdrs)
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/pause" || cfg.Config.User != "65535:65535" {
		t.Errorf("pause config: %+v", cfg.Config)
	}
	t.Logf("pause archive: %d bytes", buf.Len())
}

func TestSelfArchive(t *testing.T) {
	exe, err := stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	s := selfSpec(exe.Size)
	if s.layer, err = layerDescriptor(s.entries); err != nil {
		t.Fatal(err)
	}
	b, err := build(s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "images", archiveName(s.name))
	if err := writeArchiveFile(path, s, b, nil); err != nil {
		t.Fatal(err)
	}
	archive, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, files, hdrs := checkOCIArchive(t, archive, version.Image())
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["usr/local/bin/kubeforge"], self) {
		t.Error("layer /usr/local/bin/kubeforge is not the running executable")
	}
	for _, h := range hdrs {
		if h.Name == "usr/local/bin/kubeforge" && h.Mode != 0o755 {
			t.Errorf("kubeforge mode %o", h.Mode)
		}
		if h.Name == "tmp/" && h.Mode != 0o1777 {
			t.Errorf("/tmp mode %o", h.Mode)
		}
	}
	if len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/usr/local/bin/kubeforge" {
		t.Errorf("entrypoint %q", cfg.Config.Entrypoint)
	}
	if len(cfg.Config.Env) != 1 || cfg.Config.Env[0][:5] != "PATH=" {
		t.Errorf("env %q", cfg.Config.Env)
	}
	// Deterministic: building again gives the same manifest digest.
	s2 := selfSpec(exe.Size)
	s2.layer, _ = layerDescriptor(s2.entries)
	b2, _ := build(s2)
	if b2.target.Digest != b.target.Digest {
		t.Errorf("manifest digest changed between builds: %s, %s", b.target.Digest, b2.target.Digest)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// A remembered digest that no longer matches the file is caught while
// writing, before containerd sees anything.
func TestArchiveLayerChanged(t *testing.T) {
	s := spec{name: "x.local/a:1", entries: []entry{bytesEntry("a", 0o644, []byte("new"))}}
	old := spec{entries: []entry{bytesEntry("a", 0o644, []byte("old"))}}
	var err error
	if s.layer, err = layerDescriptor(old.entries); err != nil {
		t.Fatal(err)
	}
	b, err := build(s)
	if err != nil {
		t.Fatal(err)
	}
	err = writeArchive(io.Discard, s, b)
	if !errors.Is(err, errLayerChanged) {
		t.Fatalf("writeArchive = %v, want errLayerChanged", err)
	}
	path := filepath.Join(t.TempDir(), "a.tar")
	if err := writeArchiveFile(path, s, b, nil); !errors.Is(err, errLayerChanged) {
		t.Fatalf("writeArchiveFile = %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("a failed write left the archive behind")
	}
}

func TestState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "self-image.json")
	id, err := stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	st := state{Format: layerFormat, Executable: id, Layer: ocispec.Descriptor{Digest: digest.FromString("x"), Size: 1}}
	if err := writeState(path, st); err != nil {
		t.Fatal(err)
	}
	got, err := readState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.matches(id) {
		t.Errorf("state read back does not match the same file: %+v vs %+v", got.Executable, id)
	}
	for name, change := range map[string]func(*fileID){
		"size":  func(f *fileID) { f.Size++ },
		"mtime": func(f *fileID) { f.MTime = f.MTime.Add(1) },
		"inode": func(f *fileID) { f.Inode++ },
		"path":  func(f *fileID) { f.Path += ".new" },
	} {
		other := id
		change(&other)
		if got.matches(other) {
			t.Errorf("state matches a file with another %s", name)
		}
	}
	got.Format = layerFormat - 1
	if got.matches(id) {
		t.Error("state of an older layer format matches")
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ ref, base, want string }{
		{"busybox:1.36", "x", "docker.io/library/busybox:1.36"},
		{"docker.io/library/busybox:latest", "x", "docker.io/library/busybox:latest"},
		{"registry.local:5000/team/app:v2", "x", "registry.local:5000/team/app:v2"},
		{"kubeforge.local/pause:v1", "x", "kubeforge.local/pause:v1"},
		{"v1", "app", "docker.io/library/app:v1"},
		{"", "app", ""},
		{"Not A Ref:??", "app", ""},
	} {
		if got := normalizeRef(c.ref, c.base); got != c.want {
			t.Errorf("normalizeRef(%q, %q) = %q, want %q", c.ref, c.base, got, c.want)
		}
	}
	for path, want := range map[string]string{
		"/tmp/busybox.tar":       "busybox",
		"My App_v1.tar.gz":       "my-app_v1",
		"img.oci.tar.zst":        "img",
		"...tar":                 "import",
		"/x/Thing.TGZ":           "thing",
		"weird--__..name.tar.gz": "import", // not a valid repository name
	} {
		if got := repoFromFile(path); got != want {
			t.Errorf("repoFromFile(%q) = %q, want %q", path, got, want)
		}
	}
	for ref, want := range map[string]string{
		"kubeforge.local/kubeforge:v0.1.0": "kubeforge.tar",
		"kubeforge.local/pause:v1":         "pause.tar",
		"localhost:5000/x":                 "x.tar",
	} {
		if got := archiveName(ref); got != want {
			t.Errorf("archiveName(%q) = %q, want %q", ref, got, want)
		}
	}
	if refTag("localhost:5000/x") != "latest" || refTag("a/b:c") != "c" {
		t.Error("refTag")
	}
}

func TestCheckArchive(t *testing.T) {
	dir := t.TempDir()
	notTar := filepath.Join(dir, "notes.txt")
	os.WriteFile(notTar, bytes.Repeat([]byte("not a tarball\n"), 100), 0o644)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "a", Size: 1, Mode: 0o644})
	tw.Write([]byte("a"))
	tw.Close()
	good := filepath.Join(dir, "good.tar")
	os.WriteFile(good, buf.Bytes(), 0o644)
	for path, want := range map[string]string{
		filepath.Join(dir, "missing.tar"): "file not found",
		notTar:                            "not a tarball",
		dir:                               "is a directory",
		good:                              "",
	} {
		err := checkArchive(path)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", path, err)
		case want != "" && (err == nil || !bytes.Contains([]byte(err.Error()), []byte(want))):
			t.Errorf("%s: error %v, want %q", path, err, want)
		}
	}
}
