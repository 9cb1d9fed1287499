package logstore

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/logstore/storeflags"
	"github.com/kubeforge/kubeforge/manifests"
)

// TestStoreFlagNames checks that init moved every flag VictoriaLogs
// declares off the standard flag set (in this test binary only
// VictoriaLogs, the standard library and the testing package declare
// flags), and that storeflags.Names names no flag that no longer exists.
func TestStoreFlagNames(t *testing.T) {
	if !slices.IsSorted(storeflags.Names) {
		t.Fatal("storeflags.Names is not sorted")
	}
	var left []string
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "test.") {
			left = append(left, f.Name)
		}
	})
	if len(left) > 0 {
		t.Errorf("flags left on the standard flag set (add them to storeflags.Names): %q", left)
	}
	for _, name := range storeflags.Names {
		if flags.Lookup(name) == nil {
			t.Errorf("storeflags.Names lists %q, which VictoriaLogs no longer declares", name)
		}
	}
	for _, name := range []string{"storageDataPath", "retentionPeriod", "httpListenAddr", "version"} {
		if flags.Lookup(name) == nil {
			t.Errorf("the store's flag set lacks -%s", name)
		}
	}
}

// The insert-only port passes /insert/... to the store, answers /health,
// and refuses a query, the UI, metrics and anything else.
// TestRequireKey: with a query key, the main port serves only requests
// that carry it (the header is removed before the store sees them); a
// wrong, empty or missing key gets 403 naming the Secret.
func TestRequireKey(t *testing.T) {
	var seen []string
	h := requireKey("s3cr3t", func(w http.ResponseWriter, r *http.Request) bool {
		seen = append(seen, r.Header.Get(manifests.LogStoreQueryKeyHeader))
		w.WriteHeader(http.StatusNoContent)
		return true
	})
	for _, tc := range []struct {
		key  string
		code int
	}{{"s3cr3t", http.StatusNoContent}, {"", http.StatusForbidden}, {"s3cr3", http.StatusForbidden}, {"s3cr3t ", http.StatusForbidden}} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "http://store/select/logsql/query?query=*", nil)
		if tc.key != "" {
			r.Header.Set(manifests.LogStoreQueryKeyHeader, tc.key)
		}
		h(w, r)
		if w.Code != tc.code {
			t.Errorf("key %q: %d, want %d", tc.key, w.Code, tc.code)
		}
		if w.Code == http.StatusForbidden && !strings.Contains(w.Body.String(), manifests.LogStoreQueryKeySecret) {
			t.Errorf("the refusal does not name the Secret: %s", w.Body.String())
		}
	}
	if len(seen) != 1 || seen[0] != "" {
		t.Errorf("the store saw %q: one request, without the key", seen)
	}
	// No key configured (a store from before the key): everything passes.
	w := httptest.NewRecorder()
	requireKey("", func(w http.ResponseWriter, r *http.Request) bool { w.WriteHeader(http.StatusNoContent); return true })(w,
		httptest.NewRequest("GET", "http://store/select/logsql/query", nil))
	if w.Code != http.StatusNoContent {
		t.Errorf("without a key: %d", w.Code)
	}
}

// pathCase is a request to a handler and the status it must get.
type pathCase struct {
	method, path string
	code         int
}

// servePaths sends each case to the wrapper around a store that answers
// 204, and returns the paths the store saw.
func servePaths(t *testing.T, wrap func(func(http.ResponseWriter, *http.Request) bool) func(http.ResponseWriter, *http.Request) bool, cases []pathCase) []string {
	t.Helper()
	var got []string
	h := wrap(func(w http.ResponseWriter, r *http.Request) bool {
		got = append(got, r.URL.Path)
		w.WriteHeader(http.StatusNoContent)
		return true
	})
	for _, tc := range cases {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(tc.method, "http://store/", nil)
		r.URL.Path = tc.path // as sent, not cleaned
		h(w, r)
		if w.Code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, w.Code, tc.code)
		}
	}
	return got
}

// TestNoInternal: the main port passes queries and inserts on, and
// refuses upstream's /internal/ endpoints (partition detach, snapshots…),
// which have no key, however the path is spelled.
func TestNoInternal(t *testing.T) {
	got := servePaths(t, noInternal, []pathCase{
		{"GET", "/select/logsql/query", http.StatusNoContent},
		{"POST", "/insert/jsonline", http.StatusNoContent},
		{"GET", "/internal/partition/detach", http.StatusForbidden},
		{"GET", "/internal/partition/snapshot/create", http.StatusForbidden},
		{"GET", "/internal/force_merge", http.StatusForbidden},
		{"GET", "//internal/force_flush", http.StatusForbidden},
		{"GET", "/select/../internal/partition/list", http.StatusForbidden},
		{"GET", "/internal", http.StatusForbidden},
	})
	if !slices.Equal(got, []string{"/select/logsql/query", "/insert/jsonline"}) {
		t.Errorf("the store saw %q", got)
	}
}

func TestInsertOnly(t *testing.T) {
	got := servePaths(t, insertOnly, []pathCase{
		{"POST", "/insert/jsonline", http.StatusNoContent},
		{"GET", "/health", http.StatusOK},
		{"POST", "/select/logsql/query", http.StatusForbidden},
		{"GET", "/select/vmui/", http.StatusForbidden},
		{"GET", "/metrics", http.StatusForbidden},
		{"GET", "/flags", http.StatusForbidden},
		{"GET", "/internal/force_flush", http.StatusForbidden},
		{"POST", "/insert/../select/logsql/query", http.StatusForbidden},
		{"POST", "/health", http.StatusForbidden},
	})
	if !slices.Equal(got, []string{"/insert/jsonline"}) {
		t.Errorf("the store saw %q, want only /insert/jsonline", got)
	}
}
