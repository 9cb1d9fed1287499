package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/version"
)

// Namespace is the containerd namespace of the CRI, where the kubelet's
// images live.
const Namespace = "k8s.io"

// Labels of every image kubeforge makes: pinned images are never removed by
// the kubelet's image garbage collection.
var pinnedLabels = map[string]string{
	"io.cri-containerd.pinned": "pinned",
}

// SelfBinary is where the self-image holds the kubeforge executable.
const SelfBinary = "/usr/local/bin/kubeforge"

// selfEnv is the self-image's environment.
var selfEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// layerFormat changes whenever the layout of the self-image layer changes,
// so that a remembered digest of an older layout is not trusted.
const layerFormat = 1

// selfSpec is the self-image: one layer with the running executable.
// exe is opened through /proc/self/exe, which is the running program even
// if its path has been replaced by an upgrade since it started.
func selfSpec(size int64) spec {
	return spec{
		name:      version.Image(),
		holdsSelf: true,
		config: ocispec.ImageConfig{
			Env:        selfEnv,
			Entrypoint: []string{SelfBinary},
			WorkingDir: "/",
			Labels:     map[string]string{"org.opencontainers.image.version": version.Version},
		},
		entries: []entry{
			dirEntry("etc/", 0o755),
			dirEntry("tmp/", 0o1777),
			dirEntry("usr/", 0o755),
			dirEntry("usr/local/", 0o755),
			dirEntry("usr/local/bin/", 0o755),
			{name: SelfBinary[1:], mode: 0o755, size: size, open: func() (io.ReadCloser, error) {
				return os.Open("/proc/self/exe")
			}},
			dirEntry("var/", 0o755),
		},
	}
}

// pauseSpec is the pause image: the tiny pause ELF where there is one for
// this architecture, else the self-image layer run as `kubeforge component pause`.
func pauseSpec(selfSize int64) spec {
	cfg := ocispec.ImageConfig{
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
		WorkingDir: "/",
	}
	if elf, ok := PauseELF(runtime.GOARCH); ok {
		return spec{name: version.PauseImage(), config: cfg, entries: []entry{bytesEntry("pause", 0o755, elf)}}
	}
	s := selfSpec(selfSize)
	s.name = version.PauseImage()
	s.config.Entrypoint = []string{SelfBinary, "component", "pause"}
	s.config.User = cfg.User
	return s
}

// EnsureImages makes sure the self-image (version.Image()) and the pause
// image (version.PauseImage()) are in containerd's k8s.io namespace,
// unpacked and pinned. An image already there with the expected digest is
// left alone; this costs a stat and two small RPCs when nothing changed.
// Otherwise the image is written as an OCI archive under p.ImagesDir(),
// imported and unpacked.
func EnsureImages(ctx context.Context, p config.Paths, socket string) error {
	c, err := connect(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	snapshotter, err := unpackSnapshotter(ctx, c)
	if err != nil {
		return err
	}
	exe, err := stat("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("self-image: %w", err)
	}
	e := ensurer{c: c, p: p, snapshotter: snapshotter, exe: exe}
	selfErr, pauseErr := e.ensureBoth(ctx)
	errs := []error{selfErr, pauseErr}
	if selfErr == nil && pauseErr == nil {
		return waitCRI(ctx, c, version.Image(), version.PauseImage())
	}
	return errors.Join(errs...)
}

// ensureBoth ensures the self-image and the pause image, both at once: each
// import has a fixed cost (fsyncs in containerd). Each error names its image.
func (e ensurer) ensureBoth(ctx context.Context) (selfErr, pauseErr error) {
	pauseDone := make(chan error, 1)
	go func() { pauseDone <- e.ensure(ctx, pauseSpec(e.exe.Size)) }()
	if err := e.ensure(ctx, selfSpec(e.exe.Size)); err != nil {
		selfErr = fmt.Errorf("self-image %s: %w", version.Image(), err)
	}
	if err := <-pauseDone; err != nil {
		pauseErr = fmt.Errorf("pause image %s: %w", version.PauseImage(), err)
	}
	return selfErr, pauseErr
}

// AliasLabel marks an image record kubeforge made under another name for
// one of its own images (the runtime's sandbox image name); its value is
// the image it points to.
const AliasLabel = "io.kubeforge.alias-of"

// EnsureInRuntime imports the self-image and the pause image into a
// containerd that kubeforge did not start (--cri-socket), through
// containerd's API only: its content store is not kubeforge's to write
// into. When sandboxAlias is set (the runtime's configured sandbox image,
// which it lacks), the pause image is also stored under that name, so that
// the runtime runs pod sandboxes without pulling. It returns the names of
// the images it put there (for reset), also when they were there already.
func EnsureInRuntime(ctx context.Context, p config.Paths, socket, sandboxAlias string) ([]string, error) {
	c, err := connect(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	snapshotter, err := unpackSnapshotter(ctx, c)
	if err != nil {
		return nil, err
	}
	exe, err := stat("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("self-image: %w", err)
	}
	e := ensurer{c: c, p: p, snapshotter: snapshotter, exe: exe, external: true}
	names := []string{version.Image(), version.PauseImage()}
	selfErr, pauseErr := e.ensureBoth(ctx)
	errs := []error{selfErr, pauseErr}
	if pauseErr == nil && sandboxAlias != "" && sandboxAlias != version.PauseImage() {
		if ours, err := e.alias(ctx, sandboxAlias, version.PauseImage()); err != nil {
			errs = append(errs, fmt.Errorf("pause image %s as the runtime's sandbox image %s: %w", version.PauseImage(), sandboxAlias, err))
		} else if ours {
			names = append(names, sandboxAlias)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return names, waitCRI(ctx, c, names...)
}

// alias stores image from under name too (same manifest), unless name
// exists already as an image of the runtime's own, which is never
// replaced (ours is then false).
func (e *ensurer) alias(ctx context.Context, name, from string) (ours bool, err error) {
	is := e.c.ImageService()
	src, err := is.Get(ctx, from)
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", from, err)
	}
	for attempt := 0; ; attempt++ {
		cur, err := is.Get(ctx, name)
		switch {
		case err == nil:
			return cur.Labels[AliasLabel] == from && cur.Target.Digest == src.Target.Digest, nil
		case !errdefs.IsNotFound(err):
			return false, fmt.Errorf("look up %s: %w", name, err)
		}
		_, err = is.Create(ctx, images.Image{Name: name, Target: src.Target,
			Labels: mergeLabels(pinnedLabels, map[string]string{AliasLabel: from})})
		if err == nil {
			return true, nil
		}
		if !errdefs.IsAlreadyExists(err) || attempt > 0 {
			return false, err
		}
	}
}

// waitCRI waits until the CRI's image cache knows refs. The CRI plugin
// learns of images created through containerd's API from their events,
// asynchronously; a CreateContainer right after the import may otherwise
// still fail with "failed to resolve image".
func waitCRI(ctx context.Context, c *containerd.Client, refs ...string) error {
	conn, ok := c.Conn().(grpc.ClientConnInterface)
	if !ok {
		return nil
	}
	is := runtimeapi.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, ref := range refs {
		for {
			st, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			if status.Code(err) == codes.Unimplemented {
				return nil // a containerd without the CRI plugin
			}
			if err == nil && st.GetImage() != nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("the CRI does not list %s 30s after its import (last error: %v)", ref, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

type ensurer struct {
	c           *containerd.Client
	p           config.Paths
	snapshotter string
	exe         fileID
	// external: the containerd is not the bundled one, so its content
	// store is not ours to write into (no direct load).
	external bool
}

// layerOf returns the layer descriptor of s. A layer holding the executable
// is hashed only when the state file does not remember its digest for this
// exact file (path, size, mtime, inode), or when fresh says not to trust it.
func (e *ensurer) layerOf(s spec, fresh bool) (ocispec.Descriptor, error) {
	if !s.holdsSelf {
		return layerDescriptor(s.entries) // the pause ELF: a few hundred bytes
	}
	statePath := e.p.Host(StateFile(e.p))
	if !fresh {
		if st, err := readState(statePath); err == nil && st.matches(e.exe) {
			return st.Layer, nil
		}
	}
	start := time.Now()
	desc, err := layerDescriptor(s.entries)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	slog.Debug("hashed self-image layer", "digest", desc.Digest, "size", desc.Size, "took", time.Since(start))
	st := state{Format: layerFormat, Executable: e.exe, Layer: desc}
	if err := writeState(statePath, st); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

func (e *ensurer) ensure(ctx context.Context, s spec) error {
	if s.holdsSelf && !e.external {
		// Present already? Only when the executable's layer digest is
		// remembered; a first load goes the direct way (direct.go).
		if st, err := readState(e.p.Host(StateFile(e.p))); err == nil && st.matches(e.exe) {
			s.layer = st.Layer
			if b, err := build(s); err == nil {
				if ok, err := e.present(ctx, s.name, b.target); err != nil || ok {
					return err
				}
			}
		}
		return e.loadDirect(ctx, s)
	}
	var err error
	if s.layer, err = e.layerOf(s, false); err != nil {
		return err
	}
	b, err := build(s)
	if err != nil {
		return err
	}
	if ok, err := e.present(ctx, s.name, b.target); err != nil || ok {
		return err
	}
	err = e.load(ctx, s, b)
	if errors.Is(err, errLayerChanged) || errdefs.IsFailedPrecondition(err) {
		// The remembered digest did not match the file (or containerd
		// said so): hash it again and retry once.
		if s.layer, err = e.layerOf(s, true); err != nil {
			return err
		}
		if b, err = build(s); err != nil {
			return err
		}
		err = e.load(ctx, s, b)
	}
	return err
}

// present reports whether name is in containerd with target as its
// manifest, unpacked; it pins the image if it is not yet.
func (e *ensurer) present(ctx context.Context, name string, target ocispec.Descriptor) (bool, error) {
	img, err := e.c.ImageService().Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("look up image: %w", err)
	}
	if img.Target.Digest != target.Digest {
		return false, nil
	}
	unpacked, err := containerd.NewImageWithPlatform(e.c, img, platforms.Default()).IsUnpacked(ctx, e.snapshotter)
	if err != nil || !unpacked {
		return false, nil
	}
	if !hasLabels(img.Labels, pinnedLabels) {
		img.Labels = mergeLabels(img.Labels, pinnedLabels)
		if _, err := e.c.ImageService().Update(ctx, img, "labels"); err != nil {
			return false, fmt.Errorf("pin image: %w", err)
		}
	}
	return true, nil
}

// load writes s as an OCI archive under the images dir and imports and
// unpacks it. The import reads the archive as it is being written.
func (e *ensurer) load(ctx context.Context, s spec, b built) error {
	path := e.p.Host(filepath.Join(e.p.ImagesDir(), archiveName(s.name)))
	start := time.Now()
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := writeArchiveFile(path, s, b, pw)
		pw.CloseWithError(err)
		written <- err
	}()
	imgs, err := importStream(ctx, e.c, pr, e.snapshotter, nil, containerd.WithImageLabels(pinnedLabels))
	if err != nil {
		pr.CloseWithError(err) // stop the writer
	} else {
		_, _ = io.Copy(io.Discard, pr) // the tar's end padding
	}
	// After a failed import the writer's error is mostly "closed pipe",
	// unless the layer was not what its digest said.
	switch werr := <-written; {
	case err != nil && errors.Is(werr, errLayerChanged):
		return werr
	case err != nil:
		return fmt.Errorf("import %s: %w", path, err)
	case werr != nil:
		return werr
	}
	for _, img := range imgs {
		if img.Name == s.name && img.Target.Digest == b.target.Digest {
			slog.Debug("loaded image", "image", s.name, "digest", b.target.Digest, "took", time.Since(start))
			return nil
		}
	}
	return fmt.Errorf("import %s: image %s@%s not found in the archive", path, s.name, b.target.Digest)
}

// archiveName is the file name of an image's archive: kubeforge.local/pause:v1 → pause.tar.
func archiveName(ref string) string {
	name := ref
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	return name + ".tar"
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func mergeLabels(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// StateFile is the logical path of the file remembering the self-image
// layer digest of the executable.
func StateFile(p config.Paths) string {
	return filepath.Join(p.StateDir, "self-image.json")
}

// fileID identifies a version of a file without reading it.
type fileID struct {
	Path  string    `json:"path"`
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
	Inode uint64    `json:"inode"`
	Dev   uint64    `json:"dev"`
}

func stat(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{Size: fi.Size(), MTime: fi.ModTime().UTC()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Inode, id.Dev = st.Ino, uint64(st.Dev)
	}
	// The path is for people reading the state file; identity is the rest.
	if exe, err := os.Executable(); err == nil {
		id.Path = exe
	}
	return id, nil
}

type state struct {
	Format     int                `json:"format"`
	Executable fileID             `json:"executable"`
	Layer      ocispec.Descriptor `json:"layer"`
}

func (s state) matches(id fileID) bool {
	return s.Format == layerFormat && s.Layer.Digest != "" &&
		s.Executable.Path == id.Path && s.Executable.Size == id.Size &&
		s.Executable.MTime.Equal(id.MTime) && s.Executable.Inode == id.Inode && s.Executable.Dev == id.Dev
}

func readState(path string) (state, error) {
	var s state
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(b, &s)
	return s, err
}

func writeState(path string, s state) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if _, err := fsutil.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("remember self-image digest: %w", err)
	}
	return nil
}

// unpackSnapshotter is the snapshotter images are unpacked into: overlayfs
// when containerd could load it, else native (the choice the generated
// containerd config makes for the CRI).
func unpackSnapshotter(ctx context.Context, c *containerd.Client) (string, error) {
	resp, err := c.IntrospectionService().Plugins(ctx, `type=="io.containerd.snapshotter.v1"`)
	if err != nil {
		return "", fmt.Errorf("list containerd snapshotters: %w", err)
	}
	ok := map[string]bool{}
	for _, p := range resp.Plugins {
		ok[p.ID] = p.InitErr == nil
	}
	for _, name := range []string{"overlayfs", "native"} {
		if ok[name] {
			return name, nil
		}
	}
	return "", errors.New("containerd has neither the overlayfs nor the native snapshotter")
}
