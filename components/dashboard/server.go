// Package dashboard is kubeforge's web dashboard (`kubeforge component
// dashboard`): server-rendered pages (html/template) with a little
// embedded CSS and JavaScript, no CDN and no build step.
//
// The dashboard has no rights of its own: its pod mounts no service account
// token. A user signs in with a bearer token, which stays on the server in
// the user's session (the browser only holds a random session id), and
// every API request for that user is made with that token, so the API
// server's authentication and RBAC apply as they would to kubectl. Before
// it renders an action button, the dashboard asks the API server whether
// the user may do it (SelfSubjectAccessReview).
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/internal/logsearch"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

//go:embed templates/*.html static/*
var assets embed.FS

const (
	sessionCookie = "kubeforge_dashboard_session"
	loginCookie   = "kubeforge_dashboard_login"
	csrfField     = "_csrf"
	// maxSessions bounds the sessions kept in memory; the oldest go first.
	maxSessions = 256
)

// Clients are the API clients of one signed-in user (made with that
// user's token). Metrics may be nil: the overview then shows no usage.
// Logs may be nil: pages then offer no stored logs.
type Clients struct {
	Kube    kubernetes.Interface
	Metrics metricsclient.Interface
	Logs    LogSearcher
}

// LogSearcher searches the cluster's log store (the log-store addon), as
// the user: through the API server's Service proxy, so RBAC applies.
type LogSearcher interface {
	Search(ctx context.Context, logsql string) ([]logsearch.Line, error)
}

// ClientFactory makes a user's clients from the token the user signed in
// with.
type ClientFactory func(token string) (Clients, error)

// CertInfo is a certificate the overview lists with its expiry.
type CertInfo struct {
	Name     string
	Subject  string
	NotAfter time.Time
}

// Options configure a Server.
type Options struct {
	// Clients makes a signed-in user's clients.
	Clients ClientFactory
	// Secure marks the session cookie Secure (set when serving TLS).
	Secure bool
	// SessionTTL is how long a session lasts (default 8h).
	SessionTTL time.Duration
	// Certificates returns the certificates the overview shows (the
	// cluster CA, the API server's serving certificate); may be nil.
	Certificates func(ctx context.Context) []CertInfo
	// Log receives diagnostics; nil means slog.Default().
	Log *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Server is the dashboard's HTTP handler.
type Server struct {
	opts  Options
	pages map[string]*template.Template
	mux   *http.ServeMux

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one signed-in user. The token never leaves the server.
type session struct {
	id      string
	user    string
	groups  []string
	csrf    string
	clients Clients
	created time.Time
	expires time.Time
}

// New builds the dashboard's handler.
func New(o Options) (*Server, error) {
	if o.Clients == nil {
		return nil, errors.New("dashboard: no client factory")
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{opts: o, sessions: map[string]*session{}, pages: map[string]*template.Template{}}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs(o.Now)).ParseFS(assets, "templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		s.pages[base] = t
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", s.loginPage)
	m.HandleFunc("POST /login", s.login)
	m.HandleFunc("POST /logout", s.auth(s.logout))
	m.HandleFunc("GET /{$}", s.auth(s.overview))
	m.HandleFunc("GET /namespaces", s.auth(s.namespaces))
	m.HandleFunc("GET /workloads", s.auth(s.workloads))
	m.HandleFunc("GET /pods/{ns}/{name}", s.auth(s.pod))
	m.HandleFunc("GET /pods/{ns}/{name}/log", s.auth(s.podLog))
	m.HandleFunc("GET /pods/{ns}/{name}/stored", s.auth(s.storedLogs))
	m.HandleFunc("GET /services", s.auth(s.services))
	m.HandleFunc("GET /storage", s.auth(s.storage))
	m.HandleFunc("GET /events", s.auth(s.events))
	m.HandleFunc("POST /workloads/{kind}/{ns}/{name}/scale", s.auth(s.scale))
	m.HandleFunc("POST /workloads/{kind}/{ns}/{name}/restart", s.auth(s.restart))
	m.HandleFunc("POST /pods/{ns}/{name}/delete", s.auth(s.deletePod))
	m.HandleFunc("POST /nodes/{name}/cordon", s.auth(s.cordon(true)))
	m.HandleFunc("POST /nodes/{name}/uncordon", s.auth(s.cordon(false)))
	s.mux = m
	return s, nil
}

// ServeHTTP serves the dashboard with headers that keep its pages out of
// frames and its scripts to its own.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

func randomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) cookie(name, value, path string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: s.opts.Secure, SameSite: http.SameSiteStrictMode}
}

// session finds the request's live session.
func (s *Server) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	se := s.sessions[c.Value]
	if se != nil && s.opts.Now().After(se.expires) {
		delete(s.sessions, c.Value)
		return nil
	}
	return se
}

// userHandler is a handler for a signed-in user.
type userHandler func(w http.ResponseWriter, r *http.Request, se *session)

// auth sends a request without a session to the sign-in page and refuses
// a POST whose CSRF token is not the session's.
func (s *Server) auth(h userHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		se := s.session(r)
		if se == nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			got := r.PostFormValue(csrfField)
			if got == "" {
				got = r.Header.Get("X-CSRF-Token")
			}
			if subtle.ConstantTimeCompare([]byte(got), []byte(se.csrf)) != 1 {
				s.fail(w, r, se, http.StatusForbidden, "This form's CSRF token is missing or wrong: reload the page and try again.")
				return
			}
		}
		h(w, r, se)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.renderLogin(w, r, http.StatusOK, "")
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	// Sign-in has its own CSRF token (a cookie and the same value in the
	// form), so that no other site can sign a browser in as someone else.
	v := randomID()
	http.SetCookie(w, s.cookie(loginCookie, v, "/login", 600))
	s.render(w, r, code, "login", &view{Title: "Sign in", CSRF: v, Error: msg})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue(csrfField))) != 1 {
		s.renderLogin(w, r, http.StatusForbidden, "The sign-in form expired or did not come from this dashboard: sign in again.")
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	token = strings.TrimPrefix(token, "Bearer ")
	if token == "" {
		s.renderLogin(w, r, http.StatusBadRequest, "Paste a bearer token (`kubeforge dashboard` prints a sign-in link with one).")
		return
	}
	cl, err := s.opts.Clients(token)
	if err != nil {
		s.renderLogin(w, r, http.StatusInternalServerError, err.Error())
		return
	}
	review, err := cl.Kube.AuthenticationV1().SelfSubjectReviews().Create(r.Context(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		code := http.StatusBadGateway
		msg := "The API server could not be asked who this token belongs to: " + err.Error()
		if apierrors.IsUnauthorized(err) {
			code, msg = http.StatusUnauthorized, "The API server did not accept this token (expired or unknown)."
		}
		s.renderLogin(w, r, code, msg)
		return
	}
	now := s.opts.Now()
	se := &session{id: randomID(), csrf: randomID(), clients: cl, created: now, expires: now.Add(s.opts.SessionTTL),
		user: review.Status.UserInfo.Username, groups: review.Status.UserInfo.Groups}
	if se.user == "" {
		se.user = "(unnamed)"
	}
	s.mu.Lock()
	for id, old := range s.sessions {
		if now.After(old.expires) {
			delete(s.sessions, id)
		}
	}
	for len(s.sessions) >= maxSessions {
		var oldest *session
		for _, o := range s.sessions {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		delete(s.sessions, oldest.id)
	}
	s.sessions[se.id] = se
	s.mu.Unlock()
	s.opts.Log.Info("signed in", "user", se.user)
	http.SetCookie(w, s.cookie(loginCookie, "", "/login", -1))
	http.SetCookie(w, s.cookie(sessionCookie, se.id, "/", int(s.opts.SessionTTL.Seconds())))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, se *session) {
	s.endSession(w, se)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (s *Server) endSession(w http.ResponseWriter, se *session) {
	s.mu.Lock()
	delete(s.sessions, se.id)
	s.mu.Unlock()
	http.SetCookie(w, s.cookie(sessionCookie, "", "/", -1))
}

// access is one question for SelfSubjectAccessReview.
type access struct {
	verb, group, resource, subresource, namespace, name string
}

// can asks the API server, as the user, whether the user may do a.
// Anything but a clear yes (including an error) is no.
func (se *session) can(ctx context.Context, a access) bool {
	r, err := se.clients.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
		Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace, Name: a.name}},
	}, metav1.CreateOptions{})
	return err == nil && r.Status.Allowed
}

// view is what every page template gets.
type view struct {
	Title     string
	User      string
	CSRF      string
	Namespace string
	Nav       string
	Error     string
	Notice    string
	Data      any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, page string, v *view) {
	t := s.pages[page]
	if t == nil {
		http.Error(w, "no page "+page, http.StatusInternalServerError)
		return
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		s.opts.Log.Error("render", "page", page, "err", err)
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(b.String()))
}

// page renders a page for a signed-in user.
func (s *Server) page(w http.ResponseWriter, r *http.Request, se *session, page, title string, data any) {
	s.render(w, r, http.StatusOK, page, &view{Title: title, User: se.user, CSRF: se.csrf,
		Namespace: r.URL.Query().Get("ns"), Nav: page, Data: data})
}

// fail shows an error page with the status code: the API server's own
// code and message when the error is the API's.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, se *session, code int, msg string) {
	v := &view{Title: http.StatusText(code), Error: msg}
	if se != nil {
		v.User, v.CSRF = se.user, se.csrf
	}
	s.render(w, r, code, "error", v)
}

// apiFail shows an API error with the API's status code (403 when RBAC
// refused the user).
func (s *Server) apiFail(w http.ResponseWriter, r *http.Request, se *session, what string, err error) {
	if apierrors.IsUnauthorized(err) {
		// The token expired or was revoked: the session ends with it.
		s.endSession(w, se)
		s.renderLogin(w, r, http.StatusUnauthorized, "The API server no longer accepts your token (expired or revoked): sign in again.")
		return
	}
	code := http.StatusBadGateway
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Code != 0 {
		code = int(st.Status().Code)
	}
	s.fail(w, r, se, code, fmt.Sprintf("%s: the API server answered: %v", what, err))
}
