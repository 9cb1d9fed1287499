package dashboard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"

	"github.com/kubeforge/kubeforge/internal/logsearch"
)

// The test cluster's users, by token: an admin who may do anything and a
// viewer who may only read (the API refuses the viewer's writes with 403,
// as RBAC's view role would).
var users = map[string]string{"admin-token": "admin", "view-token": "viewer"}

func testObjects() []runtime.Object {
	two := int32(2)
	labels := map[string]string{"app": "web"}
	ready := true
	port := int32(8080)
	return []runtime.Object{
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp1", Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}},
			Status: corev1.NodeStatus{
				Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				NodeInfo:    corev1.NodeSystemInfo{KubeletVersion: "v1.37.2"},
				Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.2"}},
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{Replicas: &two, Selector: &metav1.LabelSelector{MatchLabels: labels}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: labels},
			Spec:   corev1.PodSpec{NodeName: "cp1", Containers: []corev1.Container{{Name: "httpd", Image: "busybox"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "lonely", Namespace: "default"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports:     []discoveryv1.EndpointPort{{Port: &port}}},
		&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"}, Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1"}},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web-1.1", Namespace: "default"}, Type: "Normal", Reason: "Started",
			Message: "Started container httpd", InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1"}},
	}
}

// testCluster is one fake API per test, shared by every user's clients;
// reactors play the API server's authentication and RBAC.
type testCluster struct {
	kube    *fake.Clientset
	metrics *metricsfake.Clientset
	logs    *fakeLogs
}

// fakeLogs plays the log store: it records the queries and answers lines.
type fakeLogs struct {
	mu      sync.Mutex
	queries []string
	lines   []logsearch.Line // newest first, as the store sorts them
	err     error
}

func (f *fakeLogs) Search(_ context.Context, q string) ([]logsearch.Line, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return slices.Clone(f.lines), f.err
}

func newTestCluster() *testCluster {
	c := &testCluster{kube: fake.NewClientset(testObjects()...), metrics: metricsfake.NewSimpleClientset(), logs: &fakeLogs{}}
	c.metrics.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &metricsv1beta1.NodeMetricsList{Items: []metricsv1beta1.NodeMetrics{{ObjectMeta: metav1.ObjectMeta{Name: "cp1"},
			Usage: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}, nil
	})
	return c
}

// clients is the ClientFactory: the user's clients are the shared fake
// wrapped so that each call is checked against that user's rights.
func (c *testCluster) clients(token string) (Clients, error) {
	kube := &fake.Clientset{}
	kube.AddReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		user, known := users[token] // looked up per call: a token can be revoked
		gr := schema.GroupResource{Group: a.GetResource().Group, Resource: a.GetResource().Resource}
		switch {
		case !known:
			return true, nil, apierrors.NewUnauthorized("invalid bearer token")
		case a.GetSubresource() == "log":
			return true, &runtime.Unknown{Raw: []byte("fake logs")}, nil
		case gr.Resource == "selfsubjectreviews":
			return true, &authnv1.SelfSubjectReview{Status: authnv1.SelfSubjectReviewStatus{UserInfo: authnv1.UserInfo{Username: user}}}, nil
		case gr.Resource == "selfsubjectaccessreviews":
			r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview)
			v := r.Spec.ResourceAttributes.Verb
			// As RBAC's view role: reads, but not the Service proxy.
			r.Status.Allowed = user == "admin" || (v == "get" || v == "list" || v == "watch") && r.Spec.ResourceAttributes.Subresource != "proxy"
			return true, r, nil
		case user != "admin" && a.GetVerb() != "get" && a.GetVerb() != "list" && a.GetVerb() != "watch":
			return true, nil, apierrors.NewForbidden(gr, "", errForbiddenFor(user, a.GetVerb()))
		}
		obj, err := c.kube.Invokes(a, nil)
		return true, obj, err
	})
	kube.AddWatchReactor("*", func(a k8stesting.Action) (bool, watchIface, error) {
		w, err := c.kube.InvokesWatch(a)
		return true, w, err
	})
	return Clients{Kube: kube, Metrics: c.metrics, Logs: c.logs}, nil
}

func newTestServer(t *testing.T, secure bool) (*testCluster, *httptest.Server) {
	t.Helper()
	c := newTestCluster()
	s, err := New(Options{Clients: c.clients, Secure: secure, Certificates: func(context.Context) []CertInfo {
		return []CertInfo{{Name: "cluster CA", Subject: "CN=kubernetes", NotAfter: time.Now().Add(24 * 365 * time.Hour)}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return c, ts
}

// browser is a cookie-keeping client that does not follow redirects.
func browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfRE = regexp.MustCompile(`name="_csrf" value="([^"]+)"`)

func get(t *testing.T, c *http.Client, u string) (int, string, *http.Response) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string, *http.Response) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// signIn signs c in with token and returns the session's CSRF token.
func signIn(t *testing.T, c *http.Client, base, token string) string {
	t.Helper()
	_, body, _ := get(t, c, base+"/login")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field on the sign-in page:\n%s", body)
	}
	code, body, resp := post(t, c, base+"/login", url.Values{"_csrf": {m[1]}, "token": {token}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("sign-in with %s: %d %s\n%s", token, code, resp.Header.Get("Location"), body)
	}
	_, body, _ = get(t, c, base+"/")
	m = csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF field on the overview:\n%s", body)
	}
	return m[1]
}

// Without a session every page and action sends the browser to sign in,
// and changes nothing.
func TestNoSessionRedirectsToSignIn(t *testing.T) {
	c, ts := newTestServer(t, false)
	for _, forged := range []bool{false, true} {
		b := browser(t)
		if forged {
			u, _ := url.Parse(ts.URL)
			b.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: "forged-session-id"}})
		}
		for _, p := range []string{"/", "/namespaces", "/workloads", "/pods/default/web-1", "/pods/default/web-1/log", "/services", "/storage", "/events"} {
			code, _, resp := get(t, b, ts.URL+p)
			if code != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
				t.Errorf("GET %s (forged cookie %v): %d %q, want 303 to /login", p, forged, code, resp.Header.Get("Location"))
			}
		}
		code, _, resp := post(t, b, ts.URL+"/workloads/deployments/default/web/scale", url.Values{"replicas": {"5"}})
		if code != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("POST scale (forged cookie %v): %d %q, want 303 to /login", forged, code, resp.Header.Get("Location"))
		}
	}
	if d, _ := c.kube.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{}); *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d after refused requests, want 2", *d.Spec.Replicas)
	}
}

// A POST with no CSRF token or a wrong one is refused with 403 and does
// nothing; the session's own token works.
func TestCSRFRefused(t *testing.T) {
	c, ts := newTestServer(t, false)
	b := browser(t)
	csrf := signIn(t, b, ts.URL, "admin-token")
	replicas := func() int32 {
		d, err := c.kube.AppsV1().Deployments("default").Get(context.Background(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas
	}
	for name, form := range map[string]url.Values{
		"absent": {"replicas": {"5"}},
		"forged": {"replicas": {"5"}, "_csrf": {"forged" + csrf[6:]}},
		"empty":  {"replicas": {"5"}, "_csrf": {""}},
	} {
		code, body, _ := post(t, b, ts.URL+"/workloads/deployments/default/web/scale", form)
		if code != http.StatusForbidden || !strings.Contains(body, "CSRF") {
			t.Errorf("%s CSRF token: %d, want 403 naming CSRF:\n%s", name, code, body)
		}
	}
	for _, p := range []string{"/pods/default/web-1/delete", "/nodes/cp1/cordon", "/logout"} {
		if code, _, _ := post(t, b, ts.URL+p, nil); code != http.StatusForbidden {
			t.Errorf("POST %s without CSRF token: %d, want 403", p, code)
		}
	}
	if r := replicas(); r != 2 {
		t.Fatalf("replicas %d after refused POSTs, want 2", r)
	}
	code, _, resp := post(t, b, ts.URL+"/workloads/deployments/default/web/scale", url.Values{"replicas": {"5"}, "_csrf": {csrf}})
	if code != http.StatusSeeOther || replicas() != 5 {
		t.Errorf("scale with the session's CSRF token: %d %s, replicas %d, want 303 and 5", code, resp.Header.Get("Location"), replicas())
	}
	// The sign-in form has a CSRF token of its own.
	code, _, _ = post(t, browser(t), ts.URL+"/login", url.Values{"token": {"admin-token"}})
	if code != http.StatusForbidden {
		t.Errorf("sign-in without the form's CSRF token: %d, want 403", code)
	}
}

// A read-only user sees no action buttons, and a POST made anyway gets
// the API server's 403 with its message.
func TestReadOnlyUser(t *testing.T) {
	c, ts := newTestServer(t, false)
	b := browser(t)
	csrf := signIn(t, b, ts.URL, "view-token")
	for _, p := range []string{"/", "/workloads", "/workloads?ns=default", "/pods/default/web-1"} {
		code, body, _ := get(t, b, ts.URL+p)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, code, body)
		}
		if strings.Contains(body, `<button class="action`) {
			t.Errorf("GET %s shows the viewer an action button:\n%s", p, body)
		}
	}
	for _, a := range []struct{ path, want string }{
		{"/workloads/deployments/default/web/scale", "scale deployments default/web to 3"},
		{"/workloads/deployments/default/web/restart", "restart deployments default/web"},
		{"/pods/default/web-1/delete", "delete pod default/web-1"},
		{"/nodes/cp1/cordon", "cordon node cp1"},
	} {
		code, body, _ := post(t, b, ts.URL+a.path, url.Values{"_csrf": {csrf}, "replicas": {"3"}})
		if code != http.StatusForbidden || !strings.Contains(body, a.want) || !strings.Contains(body, "forbidden") || !strings.Contains(body, "viewer") {
			t.Errorf("viewer POST %s: %d, want 403 with the API's message:\n%s", a.path, code, body)
		}
	}
	if _, err := c.kube.CoreV1().Pods("default").Get(context.Background(), "web-1", metav1.GetOptions{}); err != nil {
		t.Errorf("the viewer's delete went through: %v", err)
	}
}

// An admin sees the actions, and they act.
func TestAdminActions(t *testing.T) {
	c, ts := newTestServer(t, false)
	b := browser(t)
	csrf := signIn(t, b, ts.URL, "admin-token")
	_, body, _ := get(t, b, ts.URL+"/workloads")
	for _, want := range []string{">Scale</button>", ">Restart rollout</button>", ">Delete</button>"} {
		if !strings.Contains(body, want) {
			t.Errorf("workloads lack %s", want)
		}
	}
	_, body, _ = get(t, b, ts.URL+"/")
	if !strings.Contains(body, ">Cordon</button>") {
		t.Error("the overview has no Cordon button for the admin")
	}
	ctx := context.Background()
	if code, _, _ := post(t, b, ts.URL+"/nodes/cp1/cordon", url.Values{"_csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("cordon: %d", code)
	}
	if n, _ := c.kube.CoreV1().Nodes().Get(ctx, "cp1", metav1.GetOptions{}); !n.Spec.Unschedulable {
		t.Error("cordon did not mark the node unschedulable")
	}
	_, body, _ = get(t, b, ts.URL+"/")
	if !strings.Contains(body, ">Uncordon</button>") || !strings.Contains(body, "SchedulingDisabled") {
		t.Error("a cordoned node shows no Uncordon button or status")
	}
	if code, _, _ := post(t, b, ts.URL+"/nodes/cp1/uncordon", url.Values{"_csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("uncordon: %d", code)
	}
	if n, _ := c.kube.CoreV1().Nodes().Get(ctx, "cp1", metav1.GetOptions{}); n.Spec.Unschedulable {
		t.Error("uncordon left the node unschedulable")
	}
	if code, _, _ := post(t, b, ts.URL+"/workloads/deployments/default/web/restart", url.Values{"_csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("restart: %d", code)
	}
	if d, _ := c.kube.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{}); d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] == "" {
		t.Error("restart did not stamp the pod template")
	}
	if code, _, _ := post(t, b, ts.URL+"/pods/default/web-1/delete", url.Values{"_csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("delete: %d", code)
	}
	if _, err := c.kube.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the pod is still there: %v", err)
	}
	code, body, _ := get(t, b, ts.URL+"/pods/default/web-1")
	if code != http.StatusNotFound || !strings.Contains(body, "is gone") {
		t.Errorf("a deleted pod's page: %d\n%s", code, body)
	}
	if code, body, _ := post(t, b, ts.URL+"/workloads/deployments/default/web/scale", url.Values{"_csrf": {csrf}, "replicas": {"-1"}}); code != http.StatusBadRequest {
		t.Errorf("scale to -1: %d\n%s", code, body)
	}
	if code, _, resp := post(t, b, ts.URL+"/logout", url.Values{"_csrf": {csrf}}); code != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("sign out: %d", code)
	}
	if code, _, _ := get(t, b, ts.URL+"/"); code != http.StatusSeeOther {
		t.Errorf("after sign-out the overview answered %d, want 303", code)
	}
}

// A node metrics-server holds no samples of yet (it or the node has just
// started) has no usage on the overview, and the page says why.
func TestOverviewNodeWithoutUsage(t *testing.T) {
	c, ts := newTestServer(t, false)
	if _, err := c.kube.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := browser(t)
	signIn(t, b, ts.URL, "admin-token")
	code, body, _ := get(t, b, ts.URL+"/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d\n%s", code, body)
	}
	for _, w := range []string{"500m / 2000m (25%)", "No resource usage yet for w1: metrics.k8s.io has no two samples"} {
		if !strings.Contains(body, w) {
			t.Errorf("the overview lacks %q:\n%s", w, body)
		}
	}
	if strings.Contains(body, "usage yet for cp1") {
		t.Error("the overview says cp1, which has usage, has none")
	}
}

// Every page shows what it is about.
func TestPages(t *testing.T) {
	_, ts := newTestServer(t, false)
	b := browser(t)
	signIn(t, b, ts.URL, "admin-token")
	for _, p := range []struct {
		path string
		want []string
	}{
		{"/", []string{"cp1", "Ready", "control-plane", "v1.37.2", "500m / 2000m (25%)", "1024Mi / 4096Mi (25%)", "cluster CA", "kubeforge token create --print-join-command"}},
		{"/namespaces", []string{"default", "Active"}},
		{"/workloads", []string{"Deployment", "default/web", "web-1", "10.244.0.5"}},
		{"/pods/default/web-1", []string{"httpd", "busybox", "Started container httpd", `data-log-src="/pods/default/web-1/log?container=httpd&amp;follow=1"`}},
		{"/services", []string{"10.96.0.20", "10.244.0.5:8080"}},
		{"/storage", []string{"pv-1", "1Gi", "data"}},
		{"/events", []string{"Started container httpd", "Pod default/web-1"}},
	} {
		code, body, resp := get(t, b, ts.URL+p.path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", p.path, code, body)
			continue
		}
		for _, w := range p.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s lacks %q", p.path, w)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", p.path, csp)
		}
	}
	code, body, _ := get(t, b, ts.URL+"/pods/default/web-1/log?container=httpd")
	if code != http.StatusOK || body != "fake logs" {
		t.Errorf("logs: %d %q", code, body)
	}
	for _, a := range []string{"/static/app.js", "/static/app.css"} {
		if code, _, _ := get(t, b, ts.URL+a); code != http.StatusOK {
			t.Errorf("GET %s: %d", a, code)
		}
	}
}

// An unknown token is refused at sign-in; the cookies are HttpOnly,
// SameSite=Strict, and Secure when the dashboard serves TLS.
func TestSignInAndCookies(t *testing.T) {
	for _, secure := range []bool{false, true} {
		_, ts := newTestServer(t, secure)
		b := browser(t)
		_, body, resp := get(t, b, ts.URL+"/login")
		csrf := csrfRE.FindStringSubmatch(body)[1]
		for _, ck := range resp.Cookies() {
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure != secure {
				t.Errorf("cookie %s: HttpOnly %v SameSite %v Secure %v", ck.Name, ck.HttpOnly, ck.SameSite, ck.Secure)
			}
		}
		code, body, _ := post(t, b, ts.URL+"/login", url.Values{"_csrf": {csrf}, "token": {"stolen-token"}})
		if code != http.StatusUnauthorized || !strings.Contains(body, "did not accept this token") {
			t.Errorf("unknown token: %d\n%s", code, body)
		}
		_, body, _ = get(t, b, ts.URL+"/login")
		csrf = csrfRE.FindStringSubmatch(body)[1]
		resp, err := b.PostForm(ts.URL+"/login", url.Values{"_csrf": {csrf}, "token": {"Bearer admin-token\n"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var session *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie {
				session = ck
			}
		}
		if resp.StatusCode != http.StatusSeeOther || session == nil {
			t.Fatalf("sign-in: %d, session cookie %v", resp.StatusCode, session)
		}
		if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure != secure || strings.Contains(session.Value, "admin-token") {
			t.Errorf("session cookie: %+v", session)
		}
	}
}

type watchIface = watch.Interface

func errForbiddenFor(user, verb string) error {
	return fmt.Errorf("User %q cannot %s this resource", user, verb)
}

// A session whose token the API server stops accepting ends: the user is
// asked to sign in again.
func TestExpiredTokenEndsSession(t *testing.T) {
	_, ts := newTestServer(t, false)
	b := browser(t)
	signIn(t, b, ts.URL, "admin-token")
	delete(users, "admin-token")
	defer func() { users["admin-token"] = "admin" }()
	code, body, _ := get(t, b, ts.URL+"/namespaces")
	if code != http.StatusUnauthorized || !strings.Contains(body, "sign in again") {
		t.Errorf("expired token: %d\n%s", code, body)
	}
	if code, _, resp := get(t, b, ts.URL+"/namespaces"); code != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("after the expired token the session lives on: %d", code)
	}
}

// A deleted pod's page shows its lines from the log store, oldest first,
// to a user who may search the store; a viewer (no Service proxy right)
// is told why there are none, and the store is not asked for them.
func TestStoredLogs(t *testing.T) {
	c, ts := newTestServer(t, false)
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	c.logs.lines = []logsearch.Line{
		{Time: t0.Add(2 * time.Second), Msg: "second <b>line</b>", Node: "w1", Namespace: "default", Pod: "gone-1", Container: "app"},
		{Time: t0, Msg: "first line", Node: "w1", Namespace: "default", Pod: "gone-1", Container: "app"},
	}
	admin := browser(t)
	signIn(t, admin, ts.URL, "admin-token")
	code, body, _ := get(t, admin, ts.URL+"/pods/default/gone-1")
	if code != http.StatusNotFound || !strings.Contains(body, `id="gone"`) {
		t.Fatalf("a deleted pod's page: %d\n%s", code, body)
	}
	first, second := strings.Index(body, "first line"), strings.Index(body, "second &lt;b&gt;line&lt;/b&gt;")
	if first < 0 || second < 0 || first > second || !strings.Contains(body, "2026-12-05T10:00:00.000Z w1/app: first line") {
		t.Errorf("the stored lines, oldest first and escaped, are not on the page:\n%s", body)
	}
	if len(c.logs.queries) != 1 || !strings.Contains(c.logs.queries[0], `namespace:="default"`) || !strings.Contains(c.logs.queries[0], `pod:="gone-1"`) {
		t.Errorf("queries to the store: %q", c.logs.queries)
	}

	// A live pod links to its stored logs; the store's error is shown.
	_, body, _ = get(t, admin, ts.URL+"/pods/default/web-1")
	if !strings.Contains(body, `href="/pods/default/web-1/stored"`) {
		t.Errorf("the pod page does not link to the stored logs:\n%s", body)
	}
	c.logs.err = fmt.Errorf("the log store answered 503 Service Unavailable")
	code, body, _ = get(t, admin, ts.URL+"/pods/default/web-1/stored")
	if code != http.StatusOK || !strings.Contains(body, "503 Service Unavailable") {
		t.Errorf("stored logs with the store down: %d\n%s", code, body)
	}

	viewer := browser(t)
	signIn(t, viewer, ts.URL, "view-token")
	n := len(c.logs.queries)
	code, body, _ = get(t, viewer, ts.URL+"/pods/default/gone-1")
	if code != http.StatusNotFound || !strings.Contains(body, "You may not search the log store") || strings.Contains(body, "first line") {
		t.Errorf("a viewer on a deleted pod's page: %d\n%s", code, body)
	}
	if len(c.logs.queries) != n {
		t.Errorf("the store was asked for a user who may not search it: %q", c.logs.queries[n:])
	}
}
