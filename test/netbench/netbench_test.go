package netbench

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFields(t *testing.T) {
	f := Fields(`req i=3 ms=1.250 body="web-abc 1" err="dial tcp: refused"`)
	want := map[string]string{"i": "3", "ms": "1.250", "body": "web-abc 1", "err": "dial tcp: refused"}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, f[k], v, f)
		}
	}
}

func TestParseHTTP(t *testing.T) {
	out := "req i=0 ms=2.000 body=\"a\"\nreq i=1 ms=1.000 body=\"b\"\nreq i=2 ms=3.000 err=\"timeout\"\nreq i=3 ms=4.000 body=\"a\"\n" +
		"summary n=4 ok=3 fail=1 p50_ms=2.000 p99_ms=4.000\n"
	r, err := ParseHTTP(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Latencies) != 3 || len(r.Failures) != 1 || r.Bodies["a"] != 2 || r.Bodies["b"] != 1 {
		t.Fatalf("parsed %+v", r)
	}
	if p := r.Percentile(0.5); p != 2*time.Millisecond {
		t.Errorf("p50 %v", p)
	}
	if p := r.Percentile(0.99); p != 4*time.Millisecond {
		t.Errorf("p99 %v", p)
	}
	lines := strings.Join(r.BenchLines("service"), "\n")
	for _, want := range []string{"BENCH service.latency_p50_ms=2.000", "BENCH service.latency_p99_ms=4.000", "BENCH service.requests=4", "BENCH service.failures=1"} {
		if !strings.Contains(lines, want) {
			t.Errorf("bench lines lack %q:\n%s", want, lines)
		}
	}
	if _, err := ParseHTTP("req i=0 ms=1 body=x\n"); err == nil {
		t.Error("output without a summary parsed")
	}
}

// The client builds static and its probes work against nothing: a lookup
// of a name that cannot exist fails, an HTTP request to a closed loopback
// port is reported as a failure.
func TestClient(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip(err)
	}
	bin, err := BuildClient(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("file", bin).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "statically linked") {
		t.Errorf("nbclient is not static: %s", out)
	}
	out, err = exec.Command(bin, "http", "-n", "2", "-timeout", "1s", "http://127.0.0.1:1/").CombinedOutput()
	if err == nil {
		t.Errorf("requests to a closed port succeeded:\n%s", out)
	}
	r, perr := ParseHTTP(string(out))
	if perr != nil || len(r.Failures) != 2 {
		t.Errorf("want 2 failures, parsed %+v (%v):\n%s", r, perr, out)
	}
	if _, err := WriteImage(filepath.Join(t.TempDir(), "img.tar"), ImageRef, bin); err != nil && !strings.Contains(err.Error(), "busybox") {
		t.Error(err)
	}
}
