package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is a file, directory or symbolic link of an image layer that
// WriteArchive writes (root-owned, timestamps at the epoch).
type File struct {
	// Path is the path in the image without the leading slash; a
	// directory's ends in "/".
	Path string
	Mode int64
	// Symlink, when set, makes the entry a symbolic link to it.
	Symlink string
	// Source, when set, is the host file whose content the file gets;
	// otherwise Data is the content.
	Source string
	Data   []byte
}

// Image is one image of an archive WriteArchive writes: its full
// reference, its config and its one layer.
type Image struct {
	Name   string
	Config ocispec.ImageConfig
	Layer  []File
}

// WriteArchive writes imgs as one OCI image layout tarball at path
// (atomically), in the format kubeforge's own images have. Images whose
// layers hold the same files store that layer once (several images of one
// multi-call executable, each with its own entrypoint, cost one copy of
// it). Every index entry names its image by its full reference, which
// Import keeps.
func WriteArchive(path string, imgs []Image) error {
	type layer struct {
		entries []entry
		desc    ocispec.Descriptor
	}
	layers := map[string]*layer{}
	var order []string
	var specsOut []spec
	var builtOut []built
	for _, img := range imgs {
		key, entries, err := layerEntries(img.Layer)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Name, err)
		}
		l, ok := layers[key]
		if !ok {
			desc, err := layerDescriptor(entries)
			if err != nil {
				return fmt.Errorf("image %s: %w", img.Name, err)
			}
			l = &layer{entries: entries, desc: desc}
			layers[key] = l
			order = append(order, key)
		}
		s := spec{name: img.Name, config: img.Config, entries: l.entries, layer: l.desc}
		b, err := build(s)
		if err != nil {
			return err
		}
		specsOut, builtOut = append(specsOut, s), append(builtOut, b)
	}

	return streamFile(path, 0o755, nil, func(w io.Writer) error {
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
		written := map[digest.Digest]bool{}
		var index ocispec.Index
		index.Versioned, index.MediaType = specs.Versioned{SchemaVersion: 2}, ocispec.MediaTypeImageIndex
		for i, b := range builtOut {
			for _, blob := range [][]byte{b.config, b.manifest} {
				d := digest.FromBytes(blob)
				if written[d] {
					continue
				}
				written[d] = true
				if err := add(blobPath(d), blob); err != nil {
					return err
				}
			}
			e := b.target
			e.Annotations = map[string]string{images.AnnotationImageName: specsOut[i].name, ocispec.AnnotationRefName: specsOut[i].name}
			index.Manifests = append(index.Manifests, e)
		}
		for _, key := range order {
			l := layers[key]
			if err := tw.WriteHeader(&tar.Header{Name: blobPath(l.desc.Digest), Mode: 0o644, Size: l.desc.Size, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
				return err
			}
			dw := newDigestWriter()
			if err := writeLayer(io.MultiWriter(tw, dw), l.entries); err != nil {
				return err
			}
			if got := dw.descriptor(l.desc.MediaType); got.Digest != l.desc.Digest || got.Size != l.desc.Size {
				return fmt.Errorf("%w: a layer is %s (%d bytes), expected %s (%d bytes)", errLayerChanged, got.Digest, got.Size, l.desc.Digest, l.desc.Size)
			}
		}
		idx, err := json.Marshal(index)
		if err != nil {
			return err
		}
		if err := add(ocispec.ImageIndexFile, idx); err != nil {
			return err
		}
		return tw.Close()
	})
}

// layerEntries turns files into layer entries, and a key that is the same
// for the same files.
func layerEntries(files []File) (string, []entry, error) {
	var key strings.Builder
	var out []entry
	for _, f := range files {
		name := strings.TrimPrefix(f.Path, "/")
		if name == "" {
			return "", nil, fmt.Errorf("a layer file has no path")
		}
		e := entry{name: name, mode: f.Mode, link: f.Symlink}
		switch {
		case strings.HasSuffix(name, "/") || f.Symlink != "":
		case f.Source != "":
			fi, err := os.Stat(f.Source)
			if err != nil {
				return "", nil, fmt.Errorf("layer file /%s: %w", name, err)
			}
			src := f.Source
			e.size = fi.Size()
			e.open = func() (io.ReadCloser, error) { return os.Open(src) }
		default:
			e = bytesEntry(name, f.Mode, f.Data)
		}
		sum := sha256.Sum256(f.Data)
		fmt.Fprintf(&key, "%s\x00%o\x00%s\x00%s\x00%s\n", name, f.Mode, f.Symlink, f.Source, hex.EncodeToString(sum[:]))
		out = append(out, e)
	}
	return key.String(), out, nil
}
