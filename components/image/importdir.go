package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// ImportDir is where image archives dropped by hand are imported from at
// every node service start (k3s's agent/images convention): an offline
// node gets its images by copying files.
func ImportDir(p config.Paths) string { return filepath.Join(p.StateDir, "agent", "images") }

// importRecordFile remembers which archives of ImportDir were imported, by
// name, size and modification time, so that a start re-imports nothing.
func importRecordFile(p config.Paths) string {
	return filepath.Join(p.StateDir, "agent", "images-imported.json")
}

// archiveExts are the file names ImportDir's import takes.
var archiveExts = []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".oci"}

// DirResult is what ImportFromDir did.
type DirResult struct {
	// Imported and Skipped count archives: imported now, or already
	// imported with the same size and modification time.
	Imported, Skipped int
	// Failed maps an archive's name to why it could not be imported; it is
	// tried again at the next start.
	Failed map[string]string
}

type importRecord struct {
	Size    int64 `json:"size"`
	ModTime int64 `json:"modTimeNs"`
}

// ImportFromDir imports the archives in ImportDir(p) that were not
// imported before (or changed since) into the containerd at socket. A bad
// archive is reported in the result and does not stop the others; the
// error is for what stops all of them (containerd unreachable).
func ImportFromDir(ctx context.Context, p config.Paths, socket string, out io.Writer) (DirResult, error) {
	res := DirResult{}
	dir := p.Host(ImportDir(p))
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("read the image import directory %s: %w", ImportDir(p), err)
	}
	recPath := p.Host(importRecordFile(p))
	rec := map[string]importRecord{}
	if b, err := os.ReadFile(recPath); err == nil {
		_ = json.Unmarshal(b, &rec) // a damaged record only costs a re-import
	}
	type todo struct {
		name string
		id   importRecord
	}
	var work []todo
	present := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !hasArchiveExt(name) {
			continue
		}
		st, err := e.Info()
		if err != nil {
			continue
		}
		present[name] = true
		id := importRecord{Size: st.Size(), ModTime: st.ModTime().UnixNano()}
		if rec[name] == id {
			res.Skipped++
			continue
		}
		work = append(work, todo{name, id})
	}
	sort.Slice(work, func(i, j int) bool { return work[i].name < work[j].name })
	if len(work) > 0 {
		c, err := connect(ctx, socket)
		if err != nil {
			return res, err
		}
		defer c.Close()
		snapshotter, err := unpackSnapshotter(ctx, c)
		if err != nil {
			return res, err
		}
		for _, w := range work {
			path := filepath.Join(dir, w.name)
			err := checkArchive(path)
			if err == nil {
				err = importFile(ctx, c, path, snapshotter, out)
			}
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			if err != nil {
				if res.Failed == nil {
					res.Failed = map[string]string{}
				}
				res.Failed[w.name] = err.Error()
				delete(rec, w.name)
				continue
			}
			rec[w.name] = w.id
			res.Imported++
		}
	}
	for name := range rec {
		if !present[name] {
			delete(rec, name) // removed: a copy dropped again is imported again
		}
	}
	b, _ := json.MarshalIndent(rec, "", "  ")
	if _, err := fsutil.WriteFile(recPath, append(b, '\n'), 0o644); err != nil {
		return res, fmt.Errorf("record the imported archives: %w", err)
	}
	return res, nil
}

func hasArchiveExt(name string) bool {
	n := strings.ToLower(name)
	for _, ext := range archiveExts {
		if strings.HasSuffix(n, ext) {
			return true
		}
	}
	return false
}
