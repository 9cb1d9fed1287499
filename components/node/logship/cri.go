package logship

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// criLine is one line of a container log file in the CRI format the
// kubelet's runtime writes: "TIMESTAMP STREAM TAG CONTENT", TIMESTAMP in
// RFC 3339 with nanoseconds, STREAM stdout or stderr, TAG F (the line's
// last or only part) or P (a part of a line longer than the runtime's
// buffer, continued by the next).
type criLine struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte
}

// parseCRI parses one CRI log line (without its newline).
func parseCRI(line []byte) (criLine, error) {
	var l criLine
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return l, fmt.Errorf("not a CRI log line (no timestamp): %.60q", line)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return l, fmt.Errorf("not a CRI log line (timestamp %.40q): %w", ts, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return l, fmt.Errorf("not a CRI log line (stream %.20q)", stream)
	}
	tag, content, ok := bytes.Cut(rest, []byte{' '})
	if !ok { // an empty line: "TS stdout F"
		tag, content = rest, nil
	}
	// The tag is a ':'-separated list; its first item is P or F.
	first, _, _ := bytes.Cut(tag, []byte{':'})
	switch string(first) {
	case "P":
		l.Partial = true
	case "F":
	default:
		return l, fmt.Errorf("not a CRI log line (tag %.20q)", tag)
	}
	l.Time, l.Stream, l.Content = t, string(stream), content
	return l, nil
}

// podLogMeta is what a container log's path says:
// PODLOGDIR/NAMESPACE_POD_UID/CONTAINER/N.log.
type podLogMeta struct {
	Namespace, Pod, UID, Container string
}

// parsePodLogPath reads the pod and container from a container log path
// relative to the pod log directory. Namespaces and pod names cannot hold
// '_' (DNS labels and subdomains), so the directory splits cleanly.
func parsePodLogPath(rel string) (podLogMeta, bool) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) != 3 || !strings.HasSuffix(parts[2], ".log") {
		return podLogMeta{}, false
	}
	ids := strings.Split(parts[0], "_")
	if len(ids) != 3 || ids[0] == "" || ids[1] == "" || parts[1] == "" {
		return podLogMeta{}, false
	}
	return podLogMeta{Namespace: ids[0], Pod: ids[1], UID: ids[2], Container: parts[1]}, true
}
