package testbed

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"time"
)

// StaticBusybox is where Debian's busybox-static puts its binary.
const StaticBusybox = "/bin/busybox"

// RequireStaticBusybox makes sure /bin/busybox is a static executable
// (Debian's busybox-static), installing the package when it is missing.
func RequireStaticBusybox() error {
	if isStatic(StaticBusybox) {
		return nil
	}
	cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "busybox-static")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("install busybox-static: %v: %s", err, out)
	}
	if !isStatic(StaticBusybox) {
		return fmt.Errorf("%s is not a static executable, even after installing busybox-static", StaticBusybox)
	}
	return nil
}

func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// WriteBusyboxImage writes an OCI image layout tarball named ref (for
// example "kftb.local/busybox:e2e") with one layer: /bin/busybox (the
// host's static busybox) and /bin/sh linking to it. It returns the
// manifest's digest.
func WriteBusyboxImage(path, ref string) (string, error) {
	return WriteImage(path, ref, nil)
}

// WriteImage writes an OCI image layout tarball named ref with one layer:
// /bin/busybox (the host's static busybox), /bin/sh linking to it, /tmp,
// and files (path in the image without the leading slash → content, mode
// 0755; their directories must be bin/ or tmp/). It returns the manifest's
// digest.
func WriteImage(path, ref string, files map[string][]byte) (string, error) {
	bin, err := os.ReadFile(StaticBusybox)
	if err != nil {
		return "", fmt.Errorf("image %s: %w (install busybox-static)", ref, err)
	}
	epoch := time.Unix(0, 0)
	contents := map[string][]byte{"bin/busybox": bin}
	headers := []*tar.Header{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch},
		{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, ModTime: epoch},
		{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: epoch},
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		contents[name] = files[name]
		headers = append(headers, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o755, ModTime: epoch})
	}
	headers = append(headers, &tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: epoch})
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, h := range headers {
		h.Size = int64(len(contents[h.Name]))
		if err := tw.WriteHeader(h); err != nil {
			return "", err
		}
		if _, err := tw.Write(contents[h.Name]); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{}
	blob := func(mediaType string, b []byte) descriptor {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return descriptor{MediaType: mediaType, Digest: d, Size: len(b)}
	}
	layerDesc := blob("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"/bin/sh"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layerDesc.Digest}},
	})
	configDesc := blob("application/vnd.oci.image.config.v1+json", config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        configDesc,
		"layers":        []descriptor{layerDesc},
	})
	manifestDesc := blob("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Annotations = map[string]string{"org.opencontainers.image.ref.name": ref}
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []descriptor{manifestDesc},
	})

	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	out := tar.NewWriter(f)
	add := func(name string, b []byte) error {
		if err := out.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := out.Write(b)
		return err
	}
	if err := add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return "", err
	}
	if err := add("index.json", index); err != nil {
		return "", err
	}
	for _, d := range []descriptor{layerDesc, configDesc, manifestDesc} {
		if err := add("blobs/sha256/"+d.Digest[len("sha256:"):], blobs[d.Digest]); err != nil {
			return "", err
		}
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return manifestDesc.Digest, f.Close()
}
