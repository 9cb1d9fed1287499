// Package logsearch is `kubeforge logs`: it builds a LogsQL query from the
// command's filters, asks the cluster's log store (the log-store addon)
// through the API server's Service proxy, so any machine with the admin
// kubeconfig can search without a port-forward, and prints the lines in
// time order with their source.
package logsearch

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubeforge/kubeforge/manifests"
)

// Query is what `kubeforge logs` searches for.
type Query struct {
	// Filter is a LogsQL filter (words, phrases, field:value, and/or/not);
	// empty matches every line.
	Filter    string
	Namespace string
	Pod       string
	Node      string
	// Since keeps lines newer than now-Since (all when 0).
	Since time.Duration
	// Limit keeps the newest Limit lines (all when 0).
	Limit int
}

// LogsQL renders q as a LogsQL query whose lines come sorted by time.
func (q Query) LogsQL() string {
	return q.filters("") + q.pipes()
}

// after renders q's filters for lines at or after t (follow mode).
func (q Query) after(t time.Time) string {
	return q.filters("_time:>="+t.UTC().Format(time.RFC3339Nano)) + " | sort by (_time)"
}

func (q Query) filters(timeFilter string) string {
	var parts []string
	if timeFilter != "" {
		parts = append(parts, timeFilter)
	} else if q.Since > 0 {
		parts = append(parts, "_time:"+strconv.FormatInt(int64(q.Since.Round(time.Second)/time.Second), 10)+"s")
	}
	for _, f := range []struct{ name, value string }{{"namespace", q.Namespace}, {"pod", q.Pod}, {"node", q.Node}} {
		if f.value != "" {
			parts = append(parts, f.name+":="+strconv.Quote(f.value))
		}
	}
	if s := strings.TrimSpace(q.Filter); s != "" {
		parts = append(parts, "("+s+")")
	}
	if len(parts) == 0 {
		return "*"
	}
	return strings.Join(parts, " ")
}

func (q Query) pipes() string {
	if q.Limit > 0 {
		return fmt.Sprintf(" | sort by (_time desc) limit %d", q.Limit)
	}
	return " | sort by (_time)"
}

// Line is one log line from the store.
type Line struct {
	Time      time.Time
	Msg       string
	Node      string
	Source    string
	Namespace string
	Pod       string
	Container string
	stream    string
}

// Where is the line's source: node/namespace/pod/container for a
// container's line, node/program for the node's own.
func (l Line) Where() string {
	if l.Pod != "" {
		return l.Node + "/" + l.Namespace + "/" + l.Pod + "/" + l.Container
	}
	return l.Node + "/" + l.Source
}

// String is the line as `kubeforge logs` prints it.
func (l Line) String() string {
	return l.Time.UTC().Format("2006-01-02T15:04:05.000000000Z") + " " + l.Where() + ": " + l.Msg
}

// Client asks the store through the API server.
type Client struct {
	http *http.Client
	host string

	mu  sync.Mutex
	key string // the store's query key, once read (see queryKey)
}

// NewClient makes a client with the API server's configuration (the admin
// kubeconfig's).
func NewClient(cfg *rest.Config) (*Client, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("HTTP client for the API server: %w", err)
	}
	return &Client{http: hc, host: strings.TrimSuffix(cfg.Host, "/")}, nil
}

// Search runs a LogsQL query and returns its lines in the order the query
// gives them.
func (c *Client) Search(ctx context.Context, logsql string) ([]Line, error) {
	q := "?" + url.Values{"query": {logsql}}.Encode()
	resp, err := c.get(ctx, manifests.LogStoreQueryProxyPath("/select/logsql/query")+q)
	if err == nil && resp.StatusCode == http.StatusNotFound {
		// A store installed before the query Service existed (an upgraded
		// cluster whose addon was not applied again) serves searches on
		// its only Service.
		resp.Body.Close()
		resp, err = c.get(ctx, manifests.LogStoreProxyPath("/select/logsql/query")+q)
	}
	if err != nil {
		return nil, fmt.Errorf("ask the log store: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		hint := ""
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusServiceUnavailable {
			hint = fmt.Sprintf(" (is the log-store addon installed and running? kubectl -n kube-system get statefulset,pods -l k8s-app=%s)", manifests.LogStoreName)
		}
		return nil, fmt.Errorf("the log store answered %s to %q: %s%s", resp.Status, logsql, strings.TrimSpace(string(msg)), hint)
	}
	return decode(resp.Body)
}

func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	key, err := c.queryKey(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.host+path, nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set(manifests.LogStoreQueryKeyHeader, key)
	}
	return c.http.Do(req)
}

// queryKey reads the store's query key from its Secret with the caller's
// credentials, once: a store made before the key existed has no Secret
// (and asks for none), and a caller who may not read it is told what it
// needs.
func (c *Client) queryKey(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.key != "" {
		return c.key, nil
	}
	path := fmt.Sprintf("/api/v1/namespaces/%s/secrets/%s", metav1.NamespaceSystem, manifests.LogStoreQueryKeySecret)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.host+path, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("read the log store's query key: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", nil
	case http.StatusForbidden, http.StatusUnauthorized:
		return "", fmt.Errorf("reading the cluster's logs needs get on Secret %s/%s (the log store's query key) and on services/proxy %s: %s",
			metav1.NamespaceSystem, manifests.LogStoreQueryKeySecret, manifests.LogStoreQueryName, resp.Status)
	default:
		return "", fmt.Errorf("read the log store's query key (Secret %s/%s): %s", metav1.NamespaceSystem, manifests.LogStoreQueryKeySecret, resp.Status)
	}
	var sec struct {
		Data map[string][]byte `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&sec); err != nil {
		return "", fmt.Errorf("read the log store's query key: %w", err)
	}
	c.key = string(sec.Data[manifests.LogStoreQueryKeyField])
	return c.key, nil
}

// decode reads the store's JSON lines.
func decode(r io.Reader) ([]Line, error) {
	var out []Line
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return out, fmt.Errorf("the log store's answer: %w", err)
		}
		t, err := time.Parse(time.RFC3339Nano, m["_time"])
		if err != nil {
			return out, fmt.Errorf("the log store's answer: _time %q: %w", m["_time"], err)
		}
		out = append(out, Line{Time: t, Msg: m["_msg"], Node: m["node"], Source: m["source"],
			Namespace: m["namespace"], Pod: m["pod"], Container: m["container"], stream: m["_stream_id"]})
	}
	return out, sc.Err()
}

// Run prints q's lines to out, oldest first; with follow it then prints
// new lines as they arrive (asking every interval) until ctx ends.
func (c *Client) Run(ctx context.Context, q Query, follow bool, interval time.Duration, out io.Writer) error {
	lines, err := c.Search(ctx, q.LogsQL())
	if err != nil {
		return err
	}
	if q.Limit > 0 {
		slices.Reverse(lines)
	}
	last := time.Now().Add(-q.Since)
	seen := map[string]bool{} // lines at the last time, printed already
	for _, l := range lines {
		fmt.Fprintln(out, l.String())
		if l.Time.After(last) {
			last, seen = l.Time, map[string]bool{}
		}
		if l.Time.Equal(last) {
			seen[key(l)] = true
		}
	}
	if !follow {
		return nil
	}
	if len(lines) == 0 {
		last = time.Now()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
		lines, err := c.Search(ctx, q.after(last))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, l := range lines {
			if l.Time.Before(last) || (l.Time.Equal(last) && seen[key(l)]) {
				continue
			}
			fmt.Fprintln(out, l.String())
			if l.Time.After(last) {
				last, seen = l.Time, map[string]bool{}
			}
			seen[key(l)] = true
		}
	}
}

func key(l Line) string { return l.stream + "\x00" + l.Where() + "\x00" + l.Msg }
