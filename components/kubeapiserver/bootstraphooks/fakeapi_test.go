package bootstraphooks

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// fakeAPI is the least of an API server the bootstrap hooks talk to: GET,
// LIST, POST, PUT and DELETE of any resource, kept as JSON in a map (one
// mutex around it: the handler runs on many goroutines, and the race
// detector is to find races in the hooks, not here). It records what the
// hooks did: writes, the most requests in flight at once, when the first
// request came, and any request it does not serve.
type fakeAPI struct {
	// writeDelay holds each write this long before it is answered, as an
	// etcd commit would, so that writes the hook sends at once overlap.
	writeDelay time.Duration
	// failCreate names the objects ("resource/name") whose first create
	// fails (500), so that the hook records failures and tries again.
	failCreate map[string]bool

	mu          sync.Mutex
	objects     map[string]map[string]map[string]any // "group/version/namespace/resource" -> name -> object
	rv          int
	writes      int
	inFlight    int
	peak        int
	first       time.Time
	unsupported []string
}

func newFakeAPI(t *testing.T) (*fakeAPI, *rest.Config) {
	a := &fakeAPI{writeDelay: 2 * time.Millisecond, failCreate: map[string]bool{}, objects: map[string]map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	// QPS < 0: no client-side rate limit (the loopback client has none),
	// so the rate limiter does not hide how many requests the hook sends at
	// once. JSON: the fake reads and writes JSON only.
	return a, &rest.Config{Host: srv.URL, QPS: -1, ContentConfig: rest.ContentConfig{ContentType: "application/json"}}
}

// reset forgets what was recorded (not the objects) before the next run.
func (a *fakeAPI) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.writes, a.peak, a.first, a.unsupported = 0, 0, time.Time{}, nil
}

func (a *fakeAPI) stats() (writes, peak int, first time.Time, unsupported []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.writes, a.peak, a.first, append([]string(nil), a.unsupported...)
}

// pendingFailures counts the injected failures not answered yet.
func (a *fakeAPI) pendingFailures() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.failCreate)
}

// list returns the objects of a resource ("" namespace: cluster-scoped),
// decoded into T.
func list[T any](t *testing.T, a *fakeAPI, gv, namespace, resource string) map[string]T {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]T{}
	for name, obj := range a.objects[gv+"/"+namespace+"/"+resource] {
		b, _ := json.Marshal(obj)
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s/%s: %v", resource, namespace, name, err)
		}
		out[name] = v
	}
	return out
}

// namespaces lists the namespaced collections of a resource that hold objects.
func (a *fakeAPI) namespaces(gv, resource string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for k, objs := range a.objects {
		if len(objs) > 0 && strings.HasPrefix(k, gv+"/") && strings.HasSuffix(k, "/"+resource) {
			if ns := strings.TrimSuffix(strings.TrimPrefix(k, gv+"/"), "/"+resource); ns != "" {
				out = append(out, ns)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (a *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if a.first.IsZero() {
		a.first = time.Now()
	}
	a.inFlight++
	a.peak = max(a.peak, a.inFlight)
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.inFlight--
		a.mu.Unlock()
	}()

	gv, namespace, resource, name, ok := parsePath(r.URL.Path)
	switch {
	case !ok:
	case r.Method == http.MethodGet:
	case r.Method == http.MethodPost && name == "":
	case (r.Method == http.MethodPut || r.Method == http.MethodDelete) && name != "":
	default:
		ok = false
	}
	if !ok {
		a.mu.Lock()
		a.unsupported = append(a.unsupported, r.Method+" "+r.URL.Path)
		a.mu.Unlock()
		writeStatus(w, apierrors.NewMethodNotSupported(schema.GroupResource{Resource: r.URL.Path}, r.Method))
		return
	}
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		b, err := io.ReadAll(r.Body)
		if err == nil {
			err = json.Unmarshal(b, &body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if name == "" {
			name, _ = meta(body)["name"].(string)
		}
	}
	if r.Method != http.MethodGet {
		time.Sleep(a.writeDelay)
	}
	group, _, _ := strings.Cut(gv, "/")
	if !strings.Contains(gv, "/") {
		group = "" // the core group: /api/v1
	}
	gr := schema.GroupResource{Group: group, Resource: resource}
	key := gv + "/" + namespace + "/" + resource

	a.mu.Lock()
	defer a.mu.Unlock()
	objs := a.objects[key]
	if objs == nil {
		objs = map[string]map[string]any{}
		a.objects[key] = objs
	}
	switch r.Method {
	case http.MethodGet:
		if name == "" {
			items := []any{}
			for _, obj := range objs {
				items = append(items, obj)
			}
			// No kind: the client decodes the list into its own list type.
			writeJSON(w, http.StatusOK, map[string]any{"metadata": map[string]any{}, "items": items})
		} else if obj, ok := objs[name]; ok {
			writeJSON(w, http.StatusOK, obj)
		} else {
			writeStatus(w, apierrors.NewNotFound(gr, name))
		}
		return
	case http.MethodPost:
		if a.failCreate[resource+"/"+name] {
			delete(a.failCreate, resource+"/"+name)
			writeStatus(w, apierrors.NewInternalError(fmt.Errorf("injected failure")))
			return
		}
		if _, ok := objs[name]; ok {
			writeStatus(w, apierrors.NewAlreadyExists(gr, name))
			return
		}
	case http.MethodPut:
		old, ok := objs[name]
		if !ok {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		if rv := meta(body)["resourceVersion"]; rv != nil && rv != meta(old)["resourceVersion"] {
			writeStatus(w, apierrors.NewConflict(gr, name, fmt.Errorf("resourceVersion %v is not the latest", rv)))
			return
		}
	case http.MethodDelete:
		if _, ok := objs[name]; !ok {
			writeStatus(w, apierrors.NewNotFound(gr, name))
			return
		}
		delete(objs, name)
		a.writes++
		writeJSON(w, http.StatusOK, map[string]any{"apiVersion": "v1", "kind": "Status", "status": "Success"})
		return
	}
	a.rv++
	m := meta(body)
	m["resourceVersion"] = strconv.Itoa(a.rv)
	if namespace != "" {
		m["namespace"] = namespace
	}
	body["metadata"] = m
	objs[name] = body
	a.writes++
	code := http.StatusOK
	if r.Method == http.MethodPost {
		code = http.StatusCreated
	}
	writeJSON(w, code, body)
}

// parsePath splits /api/v1/... and /apis/GROUP/VERSION/... into the group
// version, the namespace ("" when cluster-scoped), the resource and the name
// ("" for the collection).
func parsePath(p string) (gv, namespace, resource, name string, ok bool) {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case len(segs) >= 3 && segs[0] == "api":
		gv, segs = segs[1], segs[2:]
	case len(segs) >= 4 && segs[0] == "apis":
		gv, segs = segs[1]+"/"+segs[2], segs[3:]
	default:
		return "", "", "", "", false
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		namespace, segs = segs[1], segs[2:]
	}
	switch len(segs) {
	case 1:
		return gv, namespace, segs[0], "", true
	case 2:
		return gv, namespace, segs[0], segs[1], true
	}
	return "", "", "", "", false
}

func meta(obj map[string]any) map[string]any {
	m, _ := obj["metadata"].(map[string]any)
	if m == nil {
		m = map[string]any{}
	}
	return m
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.APIVersion, st.Kind = "v1", "Status"
	writeJSON(w, int(st.Code), st)
}
