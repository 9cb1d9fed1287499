package logsearch

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestLogsQL(t *testing.T) {
	for _, c := range []struct {
		q    Query
		want string
	}{
		{Query{}, "* | sort by (_time)"},
		{Query{Filter: "error"}, "(error) | sort by (_time)"},
		{Query{Filter: ` "x" or y `, Namespace: "kube-system", Pod: "etcd-cp", Node: "cp", Since: 90 * time.Minute},
			`_time:5400s namespace:="kube-system" pod:="etcd-cp" node:="cp" ("x" or y) | sort by (_time)`},
		{Query{Pod: `we"ird`, Limit: 20}, `pod:="we\"ird" | sort by (_time desc) limit 20`},
	} {
		if got := c.q.LogsQL(); got != c.want {
			t.Errorf("%+v:\n got %s\nwant %s", c.q, got, c.want)
		}
	}
	at := time.Date(2026, 12, 5, 14, 0, 1, 5, time.UTC)
	if got, want := (Query{Namespace: "default"}).after(at), `_time:>=2026-12-05T14:00:01.000000005Z namespace:="default" | sort by (_time)`; got != want {
		t.Errorf("after: %s, want %s", got, want)
	}
}

// The client asks the store's select endpoint through the API server's
// Service proxy path and prints lines with their source; an error answer
// names the query and how to check the store.
func TestClientRun(t *testing.T) {
	var gotPath, gotQuery, gotKey string
	secretReads := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/namespaces/kube-system/secrets/log-store-query-key" {
			secretReads++
			w.Write([]byte(`{"kind":"Secret","data":{"key":"czNjcjN0"}}`)) // "s3cr3t"
			return
		}
		gotPath, gotQuery, gotKey = r.URL.Path, r.URL.Query().Get("query"), r.Header.Get("X-Kubeforge-Log-Key")
		if strings.Contains(gotQuery, "broken") {
			http.Error(w, "no endpoints available for service \"log-store\"", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"_msg":"hello one","_stream_id":"s1","_time":"2026-12-05T14:00:01.000000001Z","container":"app","namespace":"default","node":"n1","pod":"web-0","source":"pod"}
{"_msg":"kubelet line","_stream_id":"s2","_time":"2026-12-05T14:00:02Z","node":"n1","source":"kubelet"}
`))
	}))
	defer srv.Close()
	c, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := c.Run(context.Background(), Query{Namespace: "default"}, false, time.Second, &out); err != nil {
		t.Fatal(err)
	}
	if gotPath != "/api/v1/namespaces/kube-system/services/log-store-query/proxy/select/logsql/query" {
		t.Errorf("path %s", gotPath)
	}
	if gotQuery != `namespace:="default" | sort by (_time)` {
		t.Errorf("query %s", gotQuery)
	}
	// The store's query key, read once from its Secret, goes with each search.
	if gotKey != "s3cr3t" {
		t.Errorf("the search carried key %q, want the Secret's", gotKey)
	}
	want := "2026-12-05T14:00:01.000000001Z n1/default/web-0/app: hello one\n2026-12-05T14:00:02.000000000Z n1/kubelet: kubelet line\n"
	if out.String() != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
	err = c.Run(context.Background(), Query{Filter: "broken"}, false, time.Second, &out)
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "log-store addon") {
		t.Errorf("error %v, want the status and a hint", err)
	}
	if secretReads != 1 {
		t.Errorf("the key was read %d times, want once", secretReads)
	}
}

// A caller who may not read the store's key is told what reading logs
// needs, and nothing is asked of the store.
func TestClientWithoutTheKeyRight(t *testing.T) {
	searched := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/secrets/") {
			http.Error(w, `secrets "log-store-query-key" is forbidden`, http.StatusForbidden)
			return
		}
		searched = true
	}))
	defer srv.Close()
	c, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Search(context.Background(), "*")
	if err == nil || !strings.Contains(err.Error(), "get on Secret kube-system/log-store-query-key") || searched {
		t.Errorf("without the right to read the key: %v (searched %v)", err, searched)
	}
}

// A store made before the query Service existed (404 for it) is searched
// through its one Service.
func TestClientFallsBackToTheOldService(t *testing.T) {
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/secrets/") {
			http.Error(w, `secrets "log-store-query-key" not found`, http.StatusNotFound) // an old store has no key
			return
		}
		if r.Header.Get("X-Kubeforge-Log-Key") != "" {
			t.Errorf("a key sent with no Secret: %q", r.Header.Get("X-Kubeforge-Log-Key"))
		}
		paths = append(paths, r.URL.Path)
		if strings.Contains(r.URL.Path, "/log-store-query/") {
			http.Error(w, `services "log-store-query" not found`, http.StatusNotFound)
			return
		}
		w.Write([]byte(`{"_msg":"old store","_time":"2026-12-05T14:00:01Z","node":"n1","source":"kubelet"}` + "\n"))
	}))
	defer srv.Close()
	c, err := NewClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	lines, err := c.Search(context.Background(), "*")
	if err != nil || len(lines) != 1 || lines[0].Msg != "old store" {
		t.Fatalf("lines %v, err %v", lines, err)
	}
	if len(paths) != 2 || !strings.Contains(paths[1], "/services/log-store/proxy/") {
		t.Errorf("paths asked: %q", paths)
	}
}
