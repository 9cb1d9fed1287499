package logship

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// Record is one log line as the store gets it (VictoriaLogs' JSON line
// format): _time and _msg, and the fields that say where it came from.
type Record struct {
	Time      string `json:"_time"`
	Msg       string `json:"_msg"`
	Node      string `json:"node"`
	Source    string `json:"source"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	Container string `json:"container,omitempty"`
	Stream    string `json:"stream,omitempty"`
	PodUID    string `json:"pod_uid,omitempty"`
}

// StreamFields are the fields that make a log stream in the store.
const StreamFields = "node,source,namespace,pod,container"

// SourcePod marks the lines of containers (Record.Source); the node's own
// programs have their own names (node-service, containerd, kubelet).
const SourcePod = "pod"

// fileSource is one log file the tailer follows.
type fileSource struct {
	path   string // host path
	source string // SourcePod or the program's name
	cri    bool   // CRI log format (container logs) or plain lines
	meta   podLogMeta
}

// offset is how far a file was read: up to Offset in the file with inode
// Inode. It is kept across restarts.
type offset struct {
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// follow is an open file the tailer reads.
type follow struct {
	src   fileSource
	f     *os.File
	inode uint64
	off   int64 // next byte to read; everything before is in the spool
	gone  bool  // its path now names another file, or none
}

// tailer follows the node's log files and turns their lines into
// records. It is not safe for concurrent use.
type tailer struct {
	node      string
	podLogDir string
	ownLogs   map[string]string // host path → source
	offsets   string            // host path of the offsets file
	maxChunk  int
	now       func() time.Time

	open  map[string]*follow // by path
	saved map[string]offset
}

func newTailer(node, podLogDir string, ownLogs map[string]string, offsetsFile string) (*tailer, error) {
	t := &tailer{node: node, podLogDir: podLogDir, ownLogs: ownLogs, offsets: offsetsFile,
		maxChunk: 1 << 20, now: time.Now, open: map[string]*follow{}, saved: map[string]offset{}}
	b, err := os.ReadFile(offsetsFile)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &t.saved); err != nil {
			return nil, fmt.Errorf("log offsets %s: %w (remove the file to ship every file from its start)", offsetsFile, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("log offsets: %w", err)
	}
	return t, nil
}

// sources lists the files to follow now, in a stable order.
func (t *tailer) sources() []fileSource {
	var out []fileSource
	paths, _ := filepath.Glob(filepath.Join(t.podLogDir, "*", "*", "*.log"))
	sort.Strings(paths)
	for _, p := range paths {
		rel, err := filepath.Rel(t.podLogDir, p)
		if err != nil {
			continue
		}
		if m, ok := parsePodLogPath(rel); ok {
			out = append(out, fileSource{path: p, source: SourcePod, cri: true, meta: m})
		}
	}
	own := make([]string, 0, len(t.ownLogs))
	for p := range t.ownLogs {
		own = append(own, p)
	}
	sort.Strings(own)
	for _, p := range own {
		if fsutil.Exists(p) {
			out = append(out, fileSource{path: p, source: t.ownLogs[p]})
		}
	}
	return out
}

func inodeOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// poll reads what the files gained since the last poll and returns the
// records; commit then saves the offsets (after the records are safely in
// the spool). Rotated files are read to their end before their successor;
// files that went away (a deleted pod) are read to their end and closed.
func (t *tailer) poll() ([][]byte, error) {
	var out [][]byte
	seen := map[string]bool{}
	for _, src := range t.sources() {
		seen[src.path] = true
		fi, err := os.Stat(src.path)
		if err != nil {
			continue
		}
		ino := inodeOf(fi)
		fw := t.open[src.path]
		if fw != nil && fw.inode != ino { // rotated: finish the old file first
			out = append(out, t.read(fw, true)...)
			fw.f.Close()
			delete(t.open, src.path)
			delete(t.saved, src.path) // the new file starts at 0
			fw = nil
		}
		if fw == nil {
			fw, err = t.openFollow(src, ino, &out)
			if err != nil {
				continue // it went away meanwhile
			}
			t.open[src.path] = fw
		}
		out = append(out, t.read(fw, false)...)
	}
	for p, fw := range t.open {
		if !seen[p] { // deleted (its pod is gone) or rotated away
			out = append(out, t.read(fw, true)...)
			fw.f.Close()
			delete(t.open, p)
		}
	}
	return out, nil
}

// openFollow opens src at its saved offset. When the saved inode is not
// the file's (it was rotated while the node service was down), the
// rotated file (PATH.*, uncompressed) is read from the saved offset first.
func (t *tailer) openFollow(src fileSource, ino uint64, out *[][]byte) (*follow, error) {
	f, err := os.Open(src.path)
	if err != nil {
		return nil, err
	}
	fw := &follow{src: src, f: f, inode: ino}
	if s, ok := t.saved[src.path]; ok {
		if s.Inode == ino {
			fw.off = s.Offset
		} else if old := findRotated(src.path, s.Inode); old != "" {
			if of, err := os.Open(old); err == nil {
				ofw := &follow{src: src, f: of, inode: s.Inode, off: s.Offset}
				*out = append(*out, t.read(ofw, true)...)
				of.Close()
			}
		}
	}
	if st, err := f.Stat(); err == nil && fw.off > st.Size() { // truncated
		fw.off = 0
	}
	return fw, nil
}

// findRotated finds path's rotated copy with the given inode.
func findRotated(path string, ino uint64) string {
	cands, _ := filepath.Glob(path + ".*")
	for _, c := range cands {
		if strings.HasSuffix(c, ".gz") || strings.HasSuffix(c, ".tmp") {
			continue
		}
		if fi, err := os.Stat(c); err == nil && inodeOf(fi) == ino {
			return c
		}
	}
	return ""
}

// read reads fw's complete lines from its offset. A CRI line's parts (P)
// are joined with its last part (F); the offset then moves past whole
// records only, so a restart never splits one. final (the file is done:
// rotated or deleted) also takes a last line without its newline.
//
// Each poll reads every followed file, four times a second: a file that
// did not grow costs one fstat and no allocation, and the buffer is sized to
// what the file gained (at most maxChunk). A fixed maxChunk buffer per file
// and poll made the idle node service spend a tenth of a core collecting
// garbage.
func (t *tailer) read(fw *follow, final bool) [][]byte {
	var out [][]byte
	var buf []byte // reused across chunks: records copies what it keeps
	for {
		st, err := fw.f.Stat()
		if err != nil || st.Size() <= fw.off {
			return out
		}
		want := int(min(st.Size()-fw.off, int64(t.maxChunk)))
		if cap(buf) < want {
			buf = make([]byte, want)
		}
		buf = buf[:want]
		n, _ := fw.f.ReadAt(buf, fw.off)
		if n == 0 {
			return out
		}
		data := buf[:n]
		// More may follow at once only after a chunk of maxChunk: a
		// smaller buffer held all the file had, and an unfinished line at
		// its end waits for the next poll.
		full := n == t.maxChunk
		end := bytes.LastIndexByte(data, '\n') + 1
		if final && !full {
			end = n
		}
		if end == 0 && !full {
			return out // a line still being written
		}
		if end == 0 {
			end = n // a line longer than a chunk: ship it in pieces
		}
		recs, used := t.records(fw.src, data[:end], final && !full)
		if used == 0 && full { // a chunk of parts only: ship them joined
			recs, used = t.records(fw.src, data[:end], true)
		}
		out = append(out, recs...)
		fw.off += int64(used)
		if used == 0 || !full {
			return out
		}
	}
}

// records turns whole lines into records. It returns how many bytes it
// used: a trailing run of partial CRI lines waits for its final part,
// unless force.
func (t *tailer) records(src fileSource, data []byte, force bool) ([][]byte, int) {
	var out [][]byte
	used := 0
	var partial []byte
	var partialTime time.Time
	var partialStream string
	pos := 0
	for pos < len(data) {
		line := data[pos:]
		next := len(data)
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, next = line[:i], pos+i+1
		}
		pos = next
		if !src.cri {
			if len(line) > 0 {
				out = append(out, t.encode(src, t.now(), "", string(line)))
			}
			used = pos
			continue
		}
		l, err := parseCRI(line)
		if err != nil { // not CRI: ship the line as it is
			out = append(out, t.encode(src, t.now(), "", string(line)))
			used = pos
			continue
		}
		if l.Partial {
			if partial == nil {
				partialTime, partialStream = l.Time, l.Stream
			}
			partial = append(partial, l.Content...)
			continue
		}
		tm, stream, msg := l.Time, l.Stream, l.Content
		if partial != nil {
			tm, stream, msg = partialTime, partialStream, append(partial, l.Content...)
			partial = nil
		}
		out = append(out, t.encode(src, tm, stream, string(msg)))
		used = pos
	}
	if partial != nil && force {
		out = append(out, t.encode(src, partialTime, partialStream, string(partial)))
		used = pos
	}
	return out, used
}

func (t *tailer) encode(src fileSource, tm time.Time, stream, msg string) []byte {
	r := Record{Time: tm.UTC().Format(time.RFC3339Nano), Msg: msg, Node: t.node, Source: src.source, Stream: stream}
	if src.cri {
		r.Namespace, r.Pod, r.Container, r.PodUID = src.meta.Namespace, src.meta.Pod, src.meta.Container, src.meta.UID
	}
	if r.Msg == "" {
		r.Msg = " " // the store drops records without a message
	}
	b, _ := json.Marshal(r)
	return b
}

// commit saves the offsets of the open files (after their records are in
// the spool).
func (t *tailer) commit() error {
	cur := make(map[string]offset, len(t.open))
	for p, fw := range t.open {
		cur[p] = offset{Inode: fw.inode, Offset: fw.off}
	}
	if mapsEqual(cur, t.saved) {
		return nil
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	if _, err := fsutil.WriteFile(t.offsets, b, 0o600); err != nil {
		return fmt.Errorf("log offsets: %w", err)
	}
	t.saved = cur
	return nil
}

func mapsEqual(a, b map[string]offset) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// close closes every open file.
func (t *tailer) close() {
	for p, fw := range t.open {
		fw.f.Close()
		delete(t.open, p)
	}
}

// files is how many files the tailer follows.
func (t *tailer) files() int { return len(t.open) }
