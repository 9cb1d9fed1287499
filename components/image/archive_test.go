package image

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Two images of one multi-call executable share its layer: the archive
// holds it once, with the symbolic links, and names both images.
func TestWriteArchiveSharedLayer(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "multi")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\necho multi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	layer := []File{
		{Path: "usr/local/bin/", Mode: 0o755},
		{Path: "usr/local/bin/multi", Mode: 0o755, Source: exe},
		{Path: "usr/local/bin/one", Mode: 0o777, Symlink: "multi"},
		{Path: "usr/local/bin/two", Mode: 0o777, Symlink: "multi"},
	}
	imgs := []Image{
		{Name: "registry.example/one:v1", Config: ocispec.ImageConfig{Entrypoint: []string{"/usr/local/bin/one"}}, Layer: layer},
		{Name: "registry.example/two:v1", Config: ocispec.ImageConfig{Entrypoint: []string{"/usr/local/bin/two"}}, Layer: layer},
		{Name: "registry.example/pause:1", Layer: []File{{Path: "pause", Mode: 0o755, Data: []byte("x")}}},
	}
	path := filepath.Join(dir, "images.tar")
	if err := WriteArchive(path, imgs); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	blobs := map[string][]byte{}
	var index ocispec.Index
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		switch {
		case h.Name == ocispec.ImageIndexFile:
			if err := json.Unmarshal(b, &index); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(h.Name, "blobs/sha256/") && h.Typeflag == tar.TypeReg:
			blobs[h.Name] = b
		}
	}
	if len(index.Manifests) != 3 {
		t.Fatalf("index has %d manifests, want 3", len(index.Manifests))
	}
	layers := map[string]bool{}
	for i, m := range index.Manifests {
		if got := m.Annotations[images.AnnotationImageName]; got != imgs[i].Name {
			t.Errorf("manifest %d is named %q, want %q", i, got, imgs[i].Name)
		}
		var man ocispec.Manifest
		if err := json.Unmarshal(blobs[blobPath(m.Digest)], &man); err != nil {
			t.Fatalf("manifest %d: %v", i, err)
		}
		for _, l := range man.Layers {
			layers[l.Digest.String()] = true
		}
	}
	if len(layers) != 2 {
		t.Errorf("%d distinct layers, want 2 (one shared)", len(layers))
	}
	// 3 configs, 3 manifests, 2 layers.
	if len(blobs) != 8 {
		t.Errorf("%d blobs, want 8", len(blobs))
	}
	var links []string
	for d := range layers {
		lr := tar.NewReader(strings.NewReader(string(blobs["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")])))
		for {
			h, err := lr.Next()
			if err != nil {
				break
			}
			if h.Typeflag == tar.TypeSymlink {
				links = append(links, h.Name+"->"+h.Linkname)
			}
		}
	}
	if strings.Join(links, ",") != "usr/local/bin/one->multi,usr/local/bin/two->multi" {
		t.Errorf("symbolic links in the layers: %v", links)
	}
}
