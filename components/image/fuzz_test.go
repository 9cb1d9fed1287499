package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarOf is a tar stream of the named files, in order.
func tarOf(f *testing.F, files ...[2]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, nf := range files {
		if err := tw.WriteHeader(&tar.Header{Name: nf[0], Mode: 0o644, Size: int64(len(nf[1])), Typeflag: tar.TypeReg}); err != nil {
			f.Fatal(err)
		}
		tw.Write([]byte(nf[1]))
	}
	if err := tw.Close(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// archiveSeeds are an OCI archive as kubeforge writes it (the pause image),
// the same gzip-compressed, a docker-save archive, and broken ones.
func archiveSeeds(f *testing.F) {
	s := pauseSpec(0)
	var err error
	if s.layer, err = layerDescriptor(s.entries); err != nil {
		f.Fatal(err)
	}
	b, err := build(s)
	if err != nil {
		f.Fatal(err)
	}
	var oci bytes.Buffer
	if err := writeArchive(&oci, s, b); err != nil {
		f.Fatal(err)
	}
	f.Add(oci.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(oci.Bytes())
	zw.Close()
	f.Add(gz.Bytes())

	layer := tarOf(f, [2]string{"hello", "hi\n"})
	cfg := `{"architecture":"` + platforms.DefaultSpec().Architecture + `","os":"linux","rootfs":{"type":"layers","diff_ids":["` +
		digest.FromBytes(layer).String() + `"]},"config":{"Cmd":["/hello"]}}`
	cfgName := digest.FromString(cfg).Encoded() + ".json"
	manifest := `[{"Config":"` + cfgName + `","RepoTags":["busybox:1.36","v2"],"Layers":["layer/layer.tar"]}]`
	f.Add(tarOf(f, [2]string{cfgName, cfg}, [2]string{"layer/layer.tar", string(layer)}, [2]string{"manifest.json", manifest}))
	// An OCI layout whose index names a missing manifest; one with a bad index.
	f.Add(tarOf(f, [2]string{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`},
		[2]string{"index.json", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` +
			strings.Repeat("0", 64) + `","size":2,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}`}))
	f.Add(tarOf(f, [2]string{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, [2]string{"index.json", `{"manifests":[{]}`}))
	f.Add(tarOf(f, [2]string{"manifest.json", `[{"Config":"../../etc/passwd","Layers":["/etc/shadow"]}]`}))
	f.Add(tarOf(f))
	f.Add([]byte("not a tarball\n"))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
}

// FuzzImportArchive feeds arbitrary files to `kubeforge images import`'s
// reading of an archive, without containerd: the archive check, then
// containerd's client-side parser (archive.ImportIndex, which Client.Import
// runs) into a local content store, and the walk over the imported index
// for this platform that names the images. An archive that imports passes
// the check; what is stored is what its digest says; every image name is
// a normalized reference or nothing.
func FuzzImportArchive(f *testing.F) {
	archiveSeeds(f)
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.tar")
	base := repoFromFile(path)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		checkErr := checkArchive(path)
		if checkErr != nil && !strings.Contains(checkErr.Error(), path) {
			t.Fatalf("error does not name the file: %v", checkErr)
		}
		root, err := os.MkdirTemp(dir, "content-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(root)
		cs, err := local.NewStore(root)
		if err != nil {
			t.Fatal(err)
		}
		r, err := compression.DecompressStream(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		defer r.Close()
		ctx := context.Background()
		// A decompression bomb is the user's own file; bound it here.
		index, err := archive.ImportIndex(ctx, cs, io.LimitReader(r, 16<<20))
		if err != nil {
			return
		}
		if checkErr != nil {
			t.Fatalf("the archive imports but the check refuses it: %v", checkErr)
		}
		blob, err := content.ReadBlob(ctx, cs, index)
		if err != nil {
			t.Fatalf("imported index %s not in the store: %v", index.Digest, err)
		}
		if digest.FromBytes(blob) != index.Digest || int64(len(blob)) != index.Size {
			t.Fatalf("stored index does not match its descriptor %+v", index)
		}
		// Name the images as Client.Import does.
		var names []string
		handler := images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			if desc.Digest != index.Digest {
				children, err := images.Children(ctx, cs, desc)
				if errdefs.IsNotFound(err) {
					return nil, images.ErrSkipDesc
				}
				return children, err
			}
			b, err := content.ReadBlob(ctx, cs, desc)
			if err != nil {
				return nil, err
			}
			var idx ocispec.Index
			if err := json.Unmarshal(b, &idx); err != nil {
				return nil, err
			}
			for _, m := range idx.Manifests {
				name := m.Annotations[images.AnnotationImageName]
				if name == "" {
					name = m.Annotations[ocispec.AnnotationRefName]
				}
				names = append(names, name)
			}
			return idx.Manifests, nil
		})
		// A broken manifest below the index is an error for the import;
		// the names come from the index.
		_ = images.Walk(ctx, images.FilterPlatforms(handler, platforms.Default()), index)
		for _, n := range names {
			checkName(t, n, base)
		}
	})
}

// checkName: a name from an archive normalizes to nothing or to a
// normalized reference, which normalizes to itself.
func checkName(t *testing.T, ref, base string) {
	got := normalizeRef(ref, base)
	if got == "" {
		return
	}
	named, err := reference.ParseNormalizedNamed(got)
	if err != nil || named.String() != got {
		t.Fatalf("normalizeRef(%q) = %q, not a normalized reference (%v)", ref, got, err)
	}
	if again := normalizeRef(got, base); again != got {
		t.Fatalf("normalizeRef(%q) = %q, but normalizeRef(%q) = %q", ref, got, got, again)
	}
}

// FuzzImageNames feeds arbitrary archive file names and image names to
// repoFromFile and normalizeRef: the repository is always valid, and every
// name normalizes to nothing or to a fixed point.
func FuzzImageNames(f *testing.F) {
	for _, c := range [][2]string{
		{"busybox:1.36", "/tmp/busybox.tar"}, {"docker.io/library/busybox:latest", "x.tar"},
		{"registry.local:5000/team/app:v2", "My App_v1.tar.gz"}, {"v1", "img.oci.tar.zst"},
		{"", "...tar"}, {"Not A Ref:??", "weird--__..name.tar.gz"},
		{"app@sha256:" + strings.Repeat("a", 64), "/x/Thing.TGZ"}, {"UPPER", "UPPER.tar"},
	} {
		f.Add(c[0], c[1])
	}
	f.Fuzz(func(t *testing.T, ref, file string) {
		base := repoFromFile(file)
		if _, err := reference.ParseNormalizedNamed(base); err != nil || base == "" {
			t.Fatalf("repoFromFile(%q) = %q: %v", file, base, err)
		}
		checkName(t, ref, base)
	})
}
