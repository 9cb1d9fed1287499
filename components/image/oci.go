// Package image makes the images kubeforge runs on (the self-image holding
// the kubeforge executable, and the pause image) as OCI archives, and loads
// them and user images into the bundled containerd.
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the timestamp of every file in a generated layer, so that the
// same content always gives the same digest.
var epoch = time.Unix(0, 0).UTC()

// entry is one file or directory of a generated layer.
type entry struct {
	name string // path in the image, without a leading slash; dirs end in "/"
	mode int64
	size int64
	// link, when set, makes the entry a symbolic link to link.
	link string
	// open returns the file's content (nil for directories); it must yield
	// exactly size bytes.
	open func() (io.ReadCloser, error)
}

func dirEntry(name string, mode int64) entry { return entry{name: name, mode: mode} }

func bytesEntry(name string, mode int64, data []byte) entry {
	return entry{name: name, mode: mode, size: int64(len(data)), open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}}
}

// writeLayer writes entries as an uncompressed tar layer: root-owned,
// timestamps at the epoch, so the digest depends on the content only.
func writeLayer(w io.Writer, entries []entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag = tar.TypeReg
			h.Size = e.size
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if e.open == nil {
			continue
		}
		r, err := e.open()
		if err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("layer file /%s: %w", e.name, err)
		}
		if n != e.size {
			return fmt.Errorf("layer file /%s: read %d bytes, expected %d (did it change?)", e.name, n, e.size)
		}
	}
	return tw.Close()
}

// digestWriter counts and hashes what is written to it.
type digestWriter struct {
	h hash.Hash
	n int64
}

func newDigestWriter() *digestWriter { return &digestWriter{h: sha256.New()} }

func (d *digestWriter) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

func (d *digestWriter) descriptor(mediaType string) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: mediaType,
		Digest:    digest.NewDigestFromBytes(digest.SHA256, d.h.Sum(nil)),
		Size:      d.n,
	}
}

// layerDescriptor hashes the layer of entries (reading every file once).
func layerDescriptor(entries []entry) (ocispec.Descriptor, error) {
	dw := newDigestWriter()
	if err := writeLayer(dw, entries); err != nil {
		return ocispec.Descriptor{}, err
	}
	return dw.descriptor(ocispec.MediaTypeImageLayer), nil
}

// spec describes a one-layer image.
type spec struct {
	name    string // full reference: kubeforge.local/pause:v1
	config  ocispec.ImageConfig
	entries []entry
	// layer is the layer's descriptor when already known (see layerDescriptor).
	layer ocispec.Descriptor
	// holdsSelf: the layer holds the running executable (hashing it is costly).
	holdsSelf bool
}

// built holds an image's metadata blobs, whose digests are known without
// touching the layer content again.
type built struct {
	layer    ocispec.Descriptor
	config   []byte
	manifest []byte
	index    []byte
	// target is the manifest descriptor, the image's target in containerd.
	target ocispec.Descriptor
}

func blobDescriptor(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// build renders config, manifest and index for s, whose layer descriptor
// must be set.
func build(s spec) (built, error) {
	if s.layer.Digest == "" {
		return built{}, errors.New("image " + s.name + ": layer digest unknown")
	}
	plat := platforms.DefaultSpec()
	img := ocispec.Image{
		Platform: ocispec.Platform{Architecture: plat.Architecture, OS: plat.OS, Variant: plat.Variant},
		Created:  &epoch,
		Config:   s.config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{s.layer.Digest}},
		History:  []ocispec.History{{Created: &epoch, CreatedBy: "kubeforge", Comment: s.name}},
	}
	cfg, err := json.Marshal(img)
	if err != nil {
		return built{}, err
	}
	cfgDesc := blobDescriptor(ocispec.MediaTypeImageConfig, cfg)
	man, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{s.layer},
	})
	if err != nil {
		return built{}, err
	}
	target := blobDescriptor(ocispec.MediaTypeImageManifest, man)
	target.Platform = &ocispec.Platform{Architecture: plat.Architecture, OS: plat.OS, Variant: plat.Variant}
	indexEntry := target
	indexEntry.Annotations = map[string]string{
		images.AnnotationImageName: s.name,
		ocispec.AnnotationRefName:  refTag(s.name),
	}
	idx, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{indexEntry},
	})
	if err != nil {
		return built{}, err
	}
	return built{layer: s.layer, config: cfg, manifest: man, index: idx, target: target}, nil
}

// refTag is the tag of a reference ("v1" of "kubeforge.local/pause:v1"),
// what OCI's org.opencontainers.image.ref.name holds.
func refTag(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}

// writeArchive writes the OCI image layout of s and b as a tar stream.
func writeArchive(w io.Writer, s spec, b built) error {
	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := add(ocispec.ImageLayoutFile, layout); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	for _, blob := range [][]byte{b.config, b.manifest} {
		if err := add(blobPath(digest.FromBytes(blob)), blob); err != nil {
			return err
		}
	}
	// The layer is streamed: it may be the 200 MB executable.
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(b.layer.Digest), Mode: 0o644, Size: b.layer.Size, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return err
	}
	dw := newDigestWriter()
	if err := writeLayer(io.MultiWriter(tw, dw), s.entries); err != nil {
		return err
	}
	if got := dw.descriptor(b.layer.MediaType); got.Digest != b.layer.Digest || got.Size != b.layer.Size {
		return fmt.Errorf("%w: layer of %s is %s (%d bytes), expected %s (%d bytes)",
			errLayerChanged, s.name, got.Digest, got.Size, b.layer.Digest, b.layer.Size)
	}
	if err := add(ocispec.ImageIndexFile, b.index); err != nil {
		return err
	}
	return tw.Close()
}

// errLayerChanged: a file changed between hashing a layer and writing it.
var errLayerChanged = errors.New("layer content changed")

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// writeArchiveFile writes the archive to path atomically (streamFile). The
// same bytes also go to tee when it is not nil, so that an import can read
// the archive while it is written.
func writeArchiveFile(path string, s spec, b built, tee io.Writer) error {
	return streamFile(path, 0o700, tee, func(w io.Writer) error { return writeArchive(w, s, b) })
}

// streamFile writes what write produces to path atomically: a temporary
// file (0600) in the same directory (made with dirMode if missing),
// buffered, fsynced, renamed over path, the directory fsynced; a copy of
// the bytes goes to tee when it is not nil. (fsutil.WriteFile takes the
// content as one []byte; this streams a layer instead of holding a 200 MB
// executable in memory.)
func streamFile(path string, dirMode os.FileMode, tee io.Writer, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	var w io.Writer = tmp
	if tee != nil {
		w = io.MultiWriter(tmp, tee)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if err := write(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
