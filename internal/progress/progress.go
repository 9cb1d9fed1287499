// Package progress is the output channel for people: one line per action,
// prefixed with the phase ("[certs] Generated "ca" certificate and key (0.04s)"),
// or with --output json the same events as one JSON object per line.
// Diagnostics go to log/slog instead.
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Levels of an event.
const (
	Info    = "info"
	Warning = "warning"
	Error   = "error"
)

// Event is one progress record.
type Event struct {
	Time    time.Time `json:"time"`
	Phase   string    `json:"phase"`
	Level   string    `json:"level"`
	Action  string    `json:"action,omitempty"`
	Message string    `json:"message"`
	Path    string    `json:"path,omitempty"`
	Seconds float64   `json:"seconds,omitempty"`
	// Detail is extra multi-line text (a dry-run file's content); printed
	// after the line in text mode.
	Detail string `json:"detail,omitempty"`
}

// Reporter writes events; it is safe for concurrent use. A nil *Reporter
// discards everything.
type Reporter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
	now  func() time.Time
}

// New returns a reporter writing text (or JSON lines when asJSON) to w.
func New(w io.Writer, asJSON bool) *Reporter {
	return &Reporter{w: w, json: asJSON, now: time.Now}
}

// JSON reports whether the reporter prints JSON lines.
func (r *Reporter) JSON() bool { return r != nil && r.json }

// Emit writes one event.
func (r *Reporter) Emit(e Event) {
	if r == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = r.now()
	}
	if e.Level == "" {
		e.Level = Info
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.json {
		b, _ := json.Marshal(e)
		r.w.Write(append(b, '\n'))
		return
	}
	prefix := topPhase(e.Phase)
	var line strings.Builder
	if prefix != "" {
		fmt.Fprintf(&line, "[%s] ", prefix)
	}
	switch e.Level {
	case Warning:
		line.WriteString("WARNING: ")
	case Error:
		line.WriteString("ERROR: ")
	}
	line.WriteString(e.Message)
	if e.Seconds > 0 {
		fmt.Fprintf(&line, " (%s)", FormatSeconds(e.Seconds))
	}
	line.WriteByte('\n')
	if e.Detail != "" {
		line.WriteString(e.Detail)
		if !strings.HasSuffix(e.Detail, "\n") {
			line.WriteByte('\n')
		}
	}
	io.WriteString(r.w, line.String())
}

// Printf emits an info event for phase.
func (r *Reporter) Printf(phase, format string, a ...any) {
	r.Emit(Event{Phase: phase, Message: fmt.Sprintf(format, a...)})
}

// Warnf emits a warning event for phase.
func (r *Reporter) Warnf(phase, format string, a ...any) {
	r.Emit(Event{Phase: phase, Level: Warning, Message: fmt.Sprintf(format, a...)})
}

// Done emits an action that took the time since start.
func (r *Reporter) Done(phase, action, path string, start time.Time, format string, a ...any) {
	r.Emit(Event{Phase: phase, Action: action, Path: path, Message: fmt.Sprintf(format, a...),
		Seconds: Seconds(time.Since(start))})
}

// Seconds rounds d to milliseconds, as seconds, never 0 for a nonzero d
// (so the duration always shows on an action line).
func Seconds(d time.Duration) float64 {
	s := float64(d.Round(time.Millisecond)) / float64(time.Second)
	if s == 0 && d > 0 {
		s = 0.001
	}
	return s
}

// FormatSeconds prints 0.034s or 2.1s.
func FormatSeconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.3fs", s)
	}
	return fmt.Sprintf("%.2fs", s)
}

func topPhase(p string) string {
	if i := strings.IndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return p
}
