package image

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNotRunning means nothing answers on the containerd socket.
var ErrNotRunning = errors.New("containerd is not running")

// connect opens a client for the k8s.io namespace and checks that
// containerd answers, so that a stopped node gives one clear error.
func connect(ctx context.Context, socket string) (*containerd.Client, error) {
	socket = strings.TrimPrefix(socket, "unix://") // a CRI endpoint (--cri-socket)
	if _, err := os.Stat(socket); err != nil {
		return nil, fmt.Errorf("%w (no socket %s)", ErrNotRunning, socket)
	}
	c, err := containerd.New(socket, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", socket, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Version(pctx); err != nil {
		c.Close()
		if s, ok := status.FromError(err); ok && (s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded) {
			return nil, fmt.Errorf("%w at %s: %v", ErrNotRunning, socket, err)
		}
		return nil, fmt.Errorf("containerd at %s: %w", socket, err)
	}
	return c, nil
}

// Import loads image archives into containerd's k8s.io namespace and
// unpacks them for this machine's platform: OCI image layouts and docker
// save archives, plain or compressed (gzip, zstd). Images of other
// platforms in a multi-platform archive are skipped. It prints one line per
// image to out.
//
// Names: an archive's full references are normalized as the kubelet does
// (busybox:1.36 → docker.io/library/busybox:1.36); an OCI ref.name that is
// only a tag gets the file's base name as repository (app.tar with "v1" →
// docker.io/library/app:v1); an unnamed manifest becomes <base>@<digest>.
func Import(ctx context.Context, socket string, files []string, out io.Writer) error {
	for _, f := range files {
		if err := checkArchive(f); err != nil {
			return err
		}
	}
	c, err := connect(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	snapshotter, err := unpackSnapshotter(ctx, c)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := importFile(ctx, c, f, snapshotter, out); err != nil {
			return err
		}
	}
	return nil
}

func importFile(ctx context.Context, c *containerd.Client, path, snapshotter string, out io.Writer) error {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := compression.DecompressStream(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	defer r.Close()
	base := repoFromFile(path)
	imgs, err := importStream(ctx, c, r, snapshotter,
		func(desc digest.Digest) string { return base + "@" + desc.String() },
		containerd.WithImageRefTranslator(func(ref string) string { return normalizeRef(ref, base) }),
		containerd.WithSkipDigestRef(func(name string) bool { return name != "" }),
	)
	if err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	if len(imgs) == 0 {
		return fmt.Errorf("import %s: no image for %s in the archive", path, platforms.DefaultString())
	}
	took := time.Since(start).Round(time.Millisecond)
	for _, img := range imgs {
		fmt.Fprintf(out, "imported %s (%s, %s)\n", img.Name, img.Target.Digest, took)
	}
	return nil
}

// importStream imports one archive and unpacks its images for the local
// platform into snapshotter. digestRef, when set, names unnamed manifests.
func importStream(ctx context.Context, c *containerd.Client, r io.Reader, snapshotter string,
	digestRef func(digest.Digest) string, opts ...containerd.ImportOpt) ([]images.Image, error) {
	// One lease over import and unpack, so that the garbage collector
	// cannot take content in between.
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	plat := platforms.Default()
	opts = append(opts, containerd.WithImportPlatform(plat), containerd.WithSkipMissing())
	if digestRef != nil {
		opts = append(opts, containerd.WithDigestRef(digestRef))
	}
	start := time.Now()
	imgs, err := c.Import(ctx, r, opts...)
	if err != nil {
		return nil, err
	}
	imported := time.Since(start)
	var kept []images.Image
	for _, img := range imgs {
		i := containerd.NewImageWithPlatform(c, img, plat)
		if err := i.Unpack(ctx, snapshotter); err != nil {
			if errdefs.IsNotFound(err) {
				// Not for this platform (or an attestation manifest).
				if derr := c.ImageService().Delete(ctx, img.Name); derr != nil && !errdefs.IsNotFound(derr) {
					return nil, derr
				}
				continue
			}
			return nil, fmt.Errorf("unpack %s: %w", img.Name, err)
		}
		kept = append(kept, img)
	}
	slog.Debug("imported images", "count", len(kept), "import", imported, "unpack", time.Since(start)-imported)
	return kept, nil
}

// checkArchive fails with a clear message when path is not a readable
// (possibly compressed) tar archive.
func checkArchive(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("image archive %s: file not found", path)
		}
		return fmt.Errorf("image archive %s: %w", path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return fmt.Errorf("image archive %s: is a directory, not a tarball", path)
	}
	r, err := compression.DecompressStream(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("image archive %s: %w", path, err)
	}
	defer r.Close()
	if _, err := tar.NewReader(r).Next(); err != nil {
		return fmt.Errorf("image archive %s: not a tarball (want an OCI or docker-archive .tar, plain or gzip/zstd compressed): %v", path, err)
	}
	return nil
}

var nonRepoChars = regexp.MustCompile(`[^a-z0-9._-]+`)

// repoFromFile turns an archive's file name into a repository name:
// "My App_v1.tar.gz" → "my-app_v1".
func repoFromFile(path string) string {
	name := strings.ToLower(filepath.Base(path))
	for _, ext := range []string{".gz", ".tgz", ".zst", ".tar", ".oci"} {
		name = strings.TrimSuffix(name, ext)
	}
	name = strings.Trim(nonRepoChars.ReplaceAllString(name, "-"), "-._")
	if name == "" {
		name = "import"
	}
	if _, err := reference.ParseNormalizedNamed(name); err != nil {
		return "import"
	}
	return name
}

// normalizeRef names an image from an archive annotation (see Import).
func normalizeRef(ref, base string) string {
	if ref == "" {
		return ""
	}
	if !strings.ContainsAny(ref, "/:@") { // OCI ref.name that is only a tag
		ref = base + ":" + ref
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return ""
	}
	return named.String()
}

// List prints the images of containerd's k8s.io namespace as a table:
// reference, digest (of the manifest or index), size (of the content for
// this platform).
func List(ctx context.Context, socket string, out io.Writer) error {
	c, err := connect(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	imgs, err := c.ImageService().List(ctx)
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Name < imgs[j].Name })
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tDIGEST\tSIZE\tPINNED")
	for _, img := range imgs {
		if strings.HasPrefix(img.Name, "sha256:") {
			continue // the CRI's by-ID alias of an image listed under its name
		}
		size := "-"
		if n, err := containerd.NewImageWithPlatform(c, img, platforms.Default()).Size(ctx); err == nil {
			size = humanSize(n)
		}
		pinned := ""
		if hasLabels(img.Labels, pinnedLabels) {
			pinned = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", img.Name, shortDigest(img.Target.Digest), size, pinned)
	}
	return tw.Flush()
}

func shortDigest(d digest.Digest) string {
	if enc := d.Encoded(); len(enc) > 12 {
		return d.Algorithm().String() + ":" + enc[:12]
	}
	return d.String()
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
