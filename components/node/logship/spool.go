package logship

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// Spool is the node's on-disk buffer of log records on their way to the
// store: JSON lines appended to numbered segment files, read in order from
// a cursor that moves only once the store took a batch. Its size is
// bounded: when the segments exceed the bound, the oldest segment goes,
// unsent lines and all, and the lines lost are counted (Dropped).
type Spool struct {
	dir    string
	max    int64 // bound on the segments' total size
	segMax int64 // a segment is closed past this size

	mu    sync.Mutex
	cur   spoolCursor
	segs  []segment // in order; the last is the one written to
	w     *os.File
	ready chan struct{} // signalled on Append
}

type segment struct {
	n    uint64
	size int64
}

// spoolCursor is what the sender has delivered: everything before Off in
// segment Seg (earlier segments are gone). Dropped counts lines lost to
// the bound since the spool was made.
type spoolCursor struct {
	Seg     uint64 `json:"segment"`
	Off     int64  `json:"offset"`
	Dropped uint64 `json:"dropped"`
}

// SpoolPos is a position in the spool: a batch's end, for Commit.
type SpoolPos struct {
	Seg uint64
	Off int64
}

const (
	cursorFile = "cursor.json"
	segSuffix  = ".jsonl"
)

// OpenSpool opens (or makes) the spool in dir, bounded to max bytes.
func OpenSpool(dir string, max int64) (*Spool, error) {
	if max < 1024 {
		return nil, fmt.Errorf("log buffer bound %d bytes is too small (at least 1 KiB)", max)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("log buffer %s: %w", dir, err)
	}
	s := &Spool{dir: dir, max: max, segMax: max / 16, ready: make(chan struct{}, 1)}
	if s.segMax < 512 {
		s.segMax = 512
	}
	b, err := os.ReadFile(filepath.Join(dir, cursorFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s.cur); err != nil {
			return nil, fmt.Errorf("log buffer cursor %s: %w (remove the file to start over)", filepath.Join(dir, cursorFile), err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("log buffer cursor: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("log buffer %s: %w", dir, err)
	}
	for _, e := range ents {
		num, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		if n < s.cur.Seg { // delivered before a crash removed it
			_ = os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		s.segs = append(s.segs, segment{n: n, size: info.Size()})
	}
	slices.SortFunc(s.segs, func(a, b segment) int { return cmpU64(a.n, b.n) })
	if len(s.segs) == 0 {
		s.segs = []segment{{n: s.cur.Seg}}
	}
	if s.cur.Seg < s.segs[0].n {
		s.cur.Seg, s.cur.Off = s.segs[0].n, 0
	}
	return s, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Spool) segPath(n uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016d%s", n, segSuffix))
}

// Ready is signalled after an Append.
func (s *Spool) Ready() <-chan struct{} { return s.ready }

// Append adds records (each one JSON line, no newline) durably: they are
// on disk (fsync) when it returns. Past the bound the oldest segments go.
func (s *Spool) Append(records [][]byte) error {
	if len(records) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last := &s.segs[len(s.segs)-1]
	if last.size >= s.segMax {
		if s.w != nil {
			_ = s.w.Close()
			s.w = nil
		}
		s.segs = append(s.segs, segment{n: last.n + 1})
		last = &s.segs[len(s.segs)-1]
	}
	if s.w == nil {
		f, err := os.OpenFile(s.segPath(last.n), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("log buffer: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		s.w, last.size = f, st.Size()
	}
	var buf bytes.Buffer
	for _, r := range records {
		buf.Write(r)
		buf.WriteByte('\n')
	}
	n, err := s.w.Write(buf.Bytes())
	last.size += int64(n)
	if err == nil {
		err = s.w.Sync()
	}
	if err != nil {
		return fmt.Errorf("log buffer %s: %w", s.dir, err)
	}
	if err := s.enforceBound(); err != nil {
		return err
	}
	select {
	case s.ready <- struct{}{}:
	default:
	}
	return nil
}

// enforceBound removes the oldest segments while the spool is over its
// bound, counting the undelivered lines they held. The segment being
// written stays.
func (s *Spool) enforceBound() error {
	changed := false
	for s.total() > s.max && len(s.segs) > 1 {
		old := s.segs[0]
		from := int64(0)
		if old.n == s.cur.Seg {
			from = s.cur.Off
		}
		lost, err := countLines(s.segPath(old.n), from)
		if err != nil {
			return err
		}
		if err := os.Remove(s.segPath(old.n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("log buffer: %w", err)
		}
		s.segs = s.segs[1:]
		s.cur.Dropped += lost
		if s.cur.Seg <= old.n {
			s.cur.Seg, s.cur.Off = s.segs[0].n, 0
		}
		changed = true
	}
	if changed {
		return s.saveCursor()
	}
	return nil
}

func (s *Spool) total() int64 {
	var t int64
	for _, g := range s.segs {
		t += g.size
	}
	return t
}

func countLines(path string, from int64) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, err
	}
	var n uint64
	buf := make([]byte, 64<<10)
	for {
		k, err := f.Read(buf)
		n += uint64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Next returns the oldest undelivered records, whole lines of at most max
// bytes (at least one line, however long), how many, and the position to
// Commit once the store took them. It returns no data when all is
// delivered.
func (s *Spool) Next(max int) ([]byte, int, SpoolPos, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		seg := s.cur.Seg
		idx := slices.IndexFunc(s.segs, func(g segment) bool { return g.n == seg })
		if idx < 0 {
			return nil, 0, SpoolPos{}, fmt.Errorf("log buffer: segment %d is missing", seg)
		}
		if s.cur.Off < s.segs[idx].size {
			data, err := readLines(s.segPath(seg), s.cur.Off, max)
			if err != nil {
				return nil, 0, SpoolPos{}, err
			}
			if len(data) > 0 {
				return data, bytes.Count(data, []byte{'\n'}), SpoolPos{Seg: seg, Off: s.cur.Off + int64(len(data))}, nil
			}
		}
		if idx == len(s.segs)-1 {
			return nil, 0, SpoolPos{}, nil
		}
		// This segment is delivered and another follows: drop it.
		if err := os.Remove(s.segPath(seg)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, 0, SpoolPos{}, fmt.Errorf("log buffer: %w", err)
		}
		s.segs = slices.Delete(s.segs, idx, idx+1)
		s.cur.Seg, s.cur.Off = s.segs[idx].n, 0
		if err := s.saveCursor(); err != nil {
			return nil, 0, SpoolPos{}, err
		}
	}
}

// readLines reads whole lines from path at off, up to max bytes (or one
// line when the first is longer).
func readLines(path string, off int64, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("log buffer: %w", err)
	}
	defer f.Close()
	buf := make([]byte, max)
	for {
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("log buffer: %w", err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return buf[:i+1], nil
		}
		if n < len(buf) { // an incomplete last line (a crash mid-write)
			return nil, nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Commit records that the store took everything before pos.
func (s *Spool) Commit(pos SpoolPos) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pos.Seg < s.cur.Seg || (pos.Seg == s.cur.Seg && pos.Off <= s.cur.Off) {
		return nil // the bound dropped it meanwhile
	}
	s.cur.Seg, s.cur.Off = pos.Seg, pos.Off
	return s.saveCursor()
}

func (s *Spool) saveCursor() error {
	b, err := json.Marshal(s.cur)
	if err != nil {
		return err
	}
	if _, err := fsutil.WriteFile(filepath.Join(s.dir, cursorFile), b, 0o600); err != nil {
		return fmt.Errorf("log buffer cursor: %w", err)
	}
	return nil
}

// SpoolStats is the spool's state for `kubeforge node status`.
type SpoolStats struct {
	// Pending is the undelivered bytes; Bound, the spool's bound.
	Pending, Bound int64
	// Dropped counts the lines lost to the bound.
	Dropped uint64
}

// Stats reports the spool's state.
func (s *Spool) Stats() SpoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := int64(0)
	for _, g := range s.segs {
		switch {
		case g.n == s.cur.Seg:
			p += g.size - s.cur.Off
		case g.n > s.cur.Seg:
			p += g.size
		}
	}
	return SpoolStats{Pending: p, Bound: s.max, Dropped: s.cur.Dropped}
}

// Close closes the segment being written.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		err := s.w.Close()
		s.w = nil
		return err
	}
	return nil
}
