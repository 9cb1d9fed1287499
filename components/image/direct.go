package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The self-image is loaded without containerd's import path, which streams
// the ~200 MB layer over gRPC, fsyncs it, then copies it again into a
// snapshot (2.5 s here, on init's critical path). Instead:
//
//  1. the layer tar is written straight into containerd's content store
//     directory (hashed on the way; skipped when the blob is there), and
//     registered with content sharing, so no byte crosses the socket;
//  2. the snapshot for the layer is prepared through the snapshotter API
//     and filled by hard-linking the executable into it (copying where a
//     link is impossible), then committed under the layer's chain ID: the
//     same state an unpack produces, without the copy;
//  3. config, manifest and image record are written as usual.
//
// The result is an ordinary image, unpacked and pinned.

// contentDir is the bundled containerd's local content store.
func (e *ensurer) contentDir() string {
	return e.p.Host(filepath.Join(e.p.ContainerdRoot(), "io.containerd.content.v1.content"))
}

func (e *ensurer) blobFile(d digest.Digest) string {
	return filepath.Join(e.contentDir(), "blobs", d.Algorithm().String(), d.Encoded())
}

// loadDirect loads s (a one-layer image) as described above.
func (e *ensurer) loadDirect(ctx context.Context, s spec) error {
	start := time.Now()
	ctx, done, err := e.c.WithLease(ctx)
	if err != nil {
		return err
	}
	defer done(context.WithoutCancel(ctx))

	layer, err := e.writeLayerBlob(s)
	if err != nil {
		return err
	}
	s.layer = layer
	b, err := build(s)
	if err != nil {
		return err
	}
	chainID := layer.Digest.String() // one layer: its chain ID is its diff ID
	cs := e.c.ContentStore()
	blob, err := os.Open(e.blobFile(layer.Digest))
	if err != nil {
		return err
	}
	defer blob.Close()
	// Shared content: the store already has the blob, so this only records it.
	if err := content.WriteBlob(ctx, cs, "kubeforge-layer-"+layer.Digest.Encoded(), blob, layer); err != nil {
		return fmt.Errorf("register layer: %w", err)
	}
	cfgDesc := blobDescriptor(ocispec.MediaTypeImageConfig, b.config)
	if err := content.WriteBlob(ctx, cs, "kubeforge-config-"+cfgDesc.Digest.Encoded(), strings.NewReader(string(b.config)), cfgDesc,
		content.WithLabels(map[string]string{"containerd.io/gc.ref.snapshot." + e.snapshotter: chainID})); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := content.WriteBlob(ctx, cs, "kubeforge-manifest-"+b.target.Digest.Encoded(), strings.NewReader(string(b.manifest)), b.target,
		content.WithLabels(map[string]string{
			"containerd.io/gc.ref.content.config": cfgDesc.Digest.String(),
			"containerd.io/gc.ref.content.l.0":    layer.Digest.String(),
		})); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := e.ensureSnapshot(ctx, s, chainID); err != nil {
		return err
	}
	img := images.Image{Name: s.name, Target: b.target, Labels: pinnedLabels}
	is := e.c.ImageService()
	if _, err := is.Create(ctx, img); errdefs.IsAlreadyExists(err) {
		_, err = is.Update(ctx, img, "target", "labels")
		if err != nil {
			return fmt.Errorf("update image %s: %w", s.name, err)
		}
	} else if err != nil {
		return fmt.Errorf("create image %s: %w", s.name, err)
	}
	slog.Debug("loaded image directly", "image", s.name, "digest", b.target.Digest, "took", time.Since(start))
	return nil
}

// writeLayerBlob makes sure the layer tar of s is in the content store and
// returns its descriptor. A remembered digest whose blob exists is trusted.
func (e *ensurer) writeLayerBlob(s spec) (ocispec.Descriptor, error) {
	statePath := e.p.Host(StateFile(e.p))
	if st, err := readState(statePath); err == nil && st.matches(e.exe) {
		if fi, err := os.Stat(e.blobFile(st.Layer.Digest)); err == nil && fi.Size() == st.Layer.Size {
			return st.Layer, nil
		}
	}
	dir := filepath.Join(e.contentDir(), "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ocispec.Descriptor{}, err
	}
	tmp, err := os.CreateTemp(e.contentDir(), ".kubeforge-layer-*")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer os.Remove(tmp.Name())
	dw := newDigestWriter()
	if err := writeLayer(io.MultiWriter(tmp, dw), s.entries); err != nil {
		tmp.Close()
		return ocispec.Descriptor{}, err
	}
	if err := tmp.Chmod(0o444); err != nil {
		tmp.Close()
		return ocispec.Descriptor{}, err
	}
	if err := tmp.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := dw.descriptor(ocispec.MediaTypeImageLayer)
	if err := os.Rename(tmp.Name(), e.blobFile(desc.Digest)); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := writeState(statePath, state{Format: layerFormat, Executable: e.exe, Layer: desc}); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// ensureSnapshot commits the unpacked layer as snapshot chainID unless it exists.
func (e *ensurer) ensureSnapshot(ctx context.Context, s spec, chainID string) error {
	sn := e.c.SnapshotService(e.snapshotter)
	if _, err := sn.Stat(ctx, chainID); err == nil {
		return nil
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	key := "kubeforge-extract-" + hex.EncodeToString(suffix) + " " + chainID
	mounts, err := sn.Prepare(ctx, key, "")
	if err != nil {
		return fmt.Errorf("prepare snapshot: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = sn.Remove(context.WithoutCancel(ctx), key)
		}
	}()
	root, err := bindRoot(mounts)
	if err != nil {
		return err
	}
	if err := populate(root, s.entries); err != nil {
		return fmt.Errorf("fill snapshot: %w", err)
	}
	if err := sn.Commit(ctx, chainID, key, snapshots.WithLabels(map[string]string{
		"containerd.io/snapshot.ref": chainID,
	})); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("commit snapshot: %w", err)
	}
	committed = true
	return nil
}

// bindRoot returns the directory behind a parentless snapshot's mounts,
// which both the overlayfs and the native snapshotter give as one bind mount.
func bindRoot(mounts []mount.Mount) (string, error) {
	if len(mounts) != 1 || mounts[0].Type != "bind" {
		return "", fmt.Errorf("unexpected mounts for a new snapshot: %+v", mounts)
	}
	return mounts[0].Source, nil
}

// populate creates the layer's entries under root: directories with their
// modes, files hard-linked from their source when possible, else copied.
func populate(root string, entries []entry) error {
	exe, _ := os.Readlink("/proc/self/exe")
	for _, en := range entries {
		dst := filepath.Join(root, en.name)
		if strings.HasSuffix(en.name, "/") {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(dst, os.FileMode(en.mode&0o777)|modeBits(en.mode)); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if en.link != "" {
			if err := os.Symlink(en.link, dst); err != nil {
				return err
			}
			continue
		}
		if en.name == SelfBinary[1:] && exe != "" && !strings.HasSuffix(exe, " (deleted)") {
			if err := os.Link(exe, dst); err == nil {
				continue
			}
		}
		if err := copyEntry(dst, en); err != nil {
			return err
		}
	}
	return nil
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

func copyEntry(dst string, en entry) error {
	r, err := en.open()
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(en.mode&0o777))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
