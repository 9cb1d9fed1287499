package logship

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/kubeforge/kubeforge/components/node/duty"
	"time"
)

func TestParseCRI(t *testing.T) {
	for _, c := range []struct {
		in      string
		stream  string
		partial bool
		content string
		wantErr bool
	}{
		{in: "2026-12-05T14:00:00.123456789Z stdout F hello world", stream: "stdout", content: "hello world"},
		{in: "2026-12-05T14:00:00.1Z stderr P part one ", stream: "stderr", partial: true, content: "part one "},
		{in: "2026-12-05T14:00:00Z stdout F", stream: "stdout", content: ""},
		{in: "2026-12-05T14:00:00Z stdout F:x spaced  out", stream: "stdout", content: "spaced  out"},
		{in: "2026-12-05T14:00:00+01:00 stdout F tz", stream: "stdout", content: "tz"},
		{in: "hello", wantErr: true},
		{in: "2026-12-05 stdout F x", wantErr: true},
		{in: "2026-12-05T14:00:00Z stdin F x", wantErr: true},
		{in: "2026-12-05T14:00:00Z stdout Q x", wantErr: true},
	} {
		l, err := parseCRI([]byte(c.in))
		if c.wantErr {
			if err == nil {
				t.Errorf("%q: no error", c.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if l.Stream != c.stream || l.Partial != c.partial || string(l.Content) != c.content || l.Time.IsZero() {
			t.Errorf("%q: got %+v", c.in, l)
		}
	}
}

func TestParsePodLogPath(t *testing.T) {
	m, ok := parsePodLogPath("kube-system_coredns-7d9f-abcde_0b1c2d3e-1111/coredns/0.log")
	if !ok || m.Namespace != "kube-system" || m.Pod != "coredns-7d9f-abcde" || m.UID != "0b1c2d3e-1111" || m.Container != "coredns" {
		t.Errorf("got %+v %v", m, ok)
	}
	for _, bad := range []string{"ns_pod/c/0.log", "ns_pod_uid/c/0.log.20261205-140000", "ns_pod_uid/0.log", "x/ns_pod_uid/c/0.log"} {
		if _, ok := parsePodLogPath(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

// bed is a node's log directories for the tailer.
type bed struct {
	t       *testing.T
	podLogs string
	own     string
	state   string
}

func newBed(t *testing.T) *bed {
	d := t.TempDir()
	b := &bed{t: t, podLogs: filepath.Join(d, "pods"), own: filepath.Join(d, "kubeforge"), state: filepath.Join(d, "state")}
	for _, dir := range []string{b.podLogs, b.own, b.state} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (b *bed) tailer() *tailer {
	tl, err := newTailer("node-a", b.podLogs, map[string]string{filepath.Join(b.own, "kubelet.log"): "kubelet"}, filepath.Join(b.state, "offsets.json"))
	if err != nil {
		b.t.Fatal(err)
	}
	return tl
}

func (b *bed) appendTo(path, s string) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		b.t.Fatal(err)
	}
}

func cri(i int, tag, msg string) string {
	return fmt.Sprintf("2026-12-05T14:00:%02d.000000001Z stdout %s %s\n", i%60, tag, msg)
}

func decodeAll(t *testing.T, recs [][]byte) []Record {
	var out []Record
	for _, b := range recs {
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		out = append(out, r)
	}
	return out
}

func msgs(rs []Record) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.Msg)
	}
	return strings.Join(s, ",")
}

func (b *bed) poll(tl *tailer) []Record {
	recs, err := tl.poll()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := tl.commit(); err != nil {
		b.t.Fatal(err)
	}
	return decodeAll(b.t, recs)
}

// The tailer reads whole lines with their pod's fields, joins partial
// CRI lines, keeps a half-written line for later, survives a restart at
// its saved offsets without repeating or losing a line, and reads a file
// rotated away (also while it was not running) to its end before the new
// one.
func TestTailer(t *testing.T) {
	b := newBed(t)
	log0 := filepath.Join(b.podLogs, "default_web-0_uid-1", "app", "0.log")
	b.appendTo(log0, cri(1, "F", "one")+cri(2, "P", "two-a ")+cri(2, "P", "two-b ")+cri(2, "F", "two-c")+"2026-12-05T14:00:03Z stdout F thr")
	b.appendTo(filepath.Join(b.own, "kubelet.log"), "I1205 kubelet started\n")
	tl := b.tailer()
	got := b.poll(tl)
	if msgs(got) != "one,two-a two-b two-c,I1205 kubelet started" {
		t.Fatalf("first poll: %q", msgs(got))
	}
	if r := got[0]; r.Namespace != "default" || r.Pod != "web-0" || r.Container != "app" || r.Node != "node-a" || r.Source != SourcePod || r.Stream != "stdout" || r.Time != "2026-12-05T14:00:01.000000001Z" {
		t.Errorf("record fields: %+v", r)
	}
	if r := got[2]; r.Source != "kubelet" || r.Pod != "" || r.Node != "node-a" {
		t.Errorf("own log record: %+v", r)
	}
	b.appendTo(log0, "ee\n"+cri(4, "P", "four-a "))
	if got := msgs(b.poll(tl)); got != "three" {
		t.Fatalf("second poll: %q (a P line must wait for its F)", got)
	}
	tl.close()

	// Restart: nothing repeats; the pending partial line is read whole.
	b.appendTo(log0, cri(4, "F", "four-b"))
	tl = b.tailer()
	if got := msgs(b.poll(tl)); got != "four-a four-b" {
		t.Fatalf("after restart: %q", got)
	}

	// Rotation as the kubelet does it: rename, then a new file.
	b.appendTo(log0, cri(5, "F", "five"))
	if err := os.Rename(log0, log0+".20261205-140005"); err != nil {
		t.Fatal(err)
	}
	b.appendTo(log0+".20261205-140005", cri(6, "F", "six"))
	b.appendTo(log0, cri(7, "F", "seven"))
	if got := msgs(b.poll(tl)); got != "five,six,seven" {
		t.Fatalf("after rotation: %q", got)
	}
	tl.close()

	// Rotated while the shipper was down.
	b.appendTo(log0, cri(8, "F", "eight"))
	if err := os.Rename(log0, log0+".20261205-140008"); err != nil {
		t.Fatal(err)
	}
	b.appendTo(log0, cri(9, "F", "nine"))
	tl = b.tailer()
	if got := msgs(b.poll(tl)); got != "eight,nine" {
		t.Fatalf("rotated while down: %q", got)
	}

	// A deleted pod: what it wrote last is still read.
	b.appendTo(log0, cri(10, "F", "ten"))
	if err := os.RemoveAll(filepath.Dir(filepath.Dir(log0))); err != nil {
		t.Fatal(err)
	}
	if got := msgs(b.poll(tl)); got != "ten" {
		t.Fatalf("deleted pod: %q", got)
	}
	if tl.files() != 1 {
		t.Errorf("following %d files, want 1 (the kubelet log)", tl.files())
	}
}

// A poll of files that did not grow allocates next to nothing: a buffer of
// maxChunk per file and poll once kept the idle node service's collector
// busy. A line longer than a chunk still ships in pieces, and a
// half-written line smaller than a chunk still waits.
func TestTailerIdlePollAndChunks(t *testing.T) {
	b := newBed(t)
	log0 := filepath.Join(b.podLogs, "default_web-0_uid-1", "app", "0.log")
	b.appendTo(log0, cri(1, "F", "one"))
	b.appendTo(filepath.Join(b.own, "kubelet.log"), "I1205 kubelet started\n")
	tl := b.tailer()
	defer tl.close()
	if got := msgs(b.poll(tl)); got != "one,I1205 kubelet started" {
		t.Fatalf("first poll: %q", got)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if recs, err := tl.poll(); err != nil || len(recs) != 0 {
			t.Fatalf("idle poll: %d records, %v", len(recs), err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 100; per > 64<<10 {
		t.Errorf("an idle poll of 2 files allocates %d bytes, want < 64 KiB", per)
	}

	tl.maxChunk = 16
	own := filepath.Join(b.own, "kubelet.log")
	b.appendTo(own, "half")
	if got := msgs(b.poll(tl)); got != "" {
		t.Fatalf("a half-written line shorter than a chunk: %q, want nothing yet", got)
	}
	b.appendTo(own, "-done\n")
	if got := msgs(b.poll(tl)); got != "half-done" {
		t.Fatalf("the line once whole: %q", got)
	}
	b.appendTo(own, strings.Repeat("x", 40)+"\n")
	if got := msgs(b.poll(tl)); got != strings.Repeat("x", 16)+","+strings.Repeat("x", 16)+","+strings.Repeat("x", 8) {
		t.Fatalf("a line of 40 bytes in chunks of 16: %q", got)
	}
}

func readAllSpool(t *testing.T, s *Spool) []string {
	var out []string
	for {
		data, n, pos, err := s.Next(100)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		out = append(out, strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")...)
		if err := s.Commit(pos); err != nil {
			t.Fatal(err)
		}
	}
}

// The spool hands lines out in order, once, across reopen; past its bound
// it drops the oldest segments and counts the lines lost; it never holds
// much more than its bound.
func TestSpoolOrderAndBound(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(dir, 4096) // segments of 512 B
	if err != nil {
		t.Fatal(err)
	}
	line := func(i int) []byte { return []byte(fmt.Sprintf(`{"_msg":"line %04d padding padding padding"}`, i)) } // 45 B + newline
	for i := range 10 {
		if err := s.Append([][]byte{line(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := readAllSpool(t, s)
	if len(got) != 10 || got[0] != string(line(0)) || got[9] != string(line(9)) {
		t.Fatalf("read %d lines: %q", len(got), got)
	}
	s.Close()

	// Reopened: nothing is handed out twice.
	s, err = OpenSpool(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllSpool(t, s); len(got) != 0 {
		t.Fatalf("after reopen: %d lines again", len(got))
	}
	// The store is down: 1000 lines (46 kB) into a 4 KiB bound.
	for i := 10; i < 1010; i++ {
		if err := s.Append([][]byte{line(i)}); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.Pending > 4096+512 {
			t.Fatalf("pending %d bytes past the bound", st.Pending)
		}
	}
	st := s.Stats()
	got = readAllSpool(t, s)
	if uint64(len(got))+st.Dropped != 1000 {
		t.Fatalf("kept %d + dropped %d != 1000 lines", len(got), st.Dropped)
	}
	if st.Dropped == 0 || len(got) < 60 {
		t.Fatalf("kept %d, dropped %d: want the newest ~4 KiB kept", len(got), st.Dropped)
	}
	if got[len(got)-1] != string(line(1009)) {
		t.Errorf("the newest line is %q, want line 1009", got[len(got)-1])
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("out of order: %q after %q", got[i], got[i-1])
		}
	}
	if _, err := OpenSpool(dir, 10); err == nil {
		t.Error("a 10-byte bound was accepted")
	}
}

// Run ships lines in order through the sink; while the sink fails they
// wait on disk and arrive, in order and once, when it works again.
func TestRunBuffersWhileStoreDown(t *testing.T) {
	b := newBed(t)
	var mu sync.Mutex
	down := true
	var got []string
	sink := func(_ context.Context, body []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return fmt.Errorf("503 no endpoints available for service log-store")
		}
		for _, r := range decodeAll(t, splitLines(body)) {
			got = append(got, r.Msg)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o := Options{NodeName: "node-a", PodLogDir: b.podLogs, StateDir: b.state, Poll: 20 * time.Millisecond,
		Sink: sink, Installed: func(context.Context) (bool, error) { return true, nil }}
	go func() { done <- Run(ctx, o, &duty.Health{}) }()
	log0 := filepath.Join(b.podLogs, "default_web-0_uid-1", "app", "0.log")
	for i := range 20 {
		b.appendTo(log0, cri(i, "F", fmt.Sprintf("m%02d", i)))
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	down = false
	mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("store got %q, want %q", got, want)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		out = append(out, []byte(l))
	}
	return out
}
