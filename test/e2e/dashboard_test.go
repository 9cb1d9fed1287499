package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// dashboardWorkload is the Deployment the browser test looks at: one
// busybox pod printing a known line and then a tick a second (for the live
// log tail).
var dashboardWorkload = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: ticker
        image: ` + busyboxRef + `
        imagePullPolicy: Never
        command: ["busybox", "sh", "-c", "echo dashboard-e2e-hello; i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: viewer, namespace: default}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dashboard-e2e-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: ServiceAccount, name: viewer, namespace: default}
`

// TestDashboard checks the dashboard addon on a single node with a real
// headless Chromium: `kubeforge dashboard --admin` port-forwards it to the
// host's loopback and prints a sign-in link; the browser signs in, sees the
// node, opens a pod's live log, scales a Deployment and sees the new pod.
// A read-only user sees no action buttons and gets the API's 403 for a
// POST made anyway; without a session the browser is sent to sign in. The
// phase is idempotent and can be turned off. Screenshots go to
// $KUBEFORGE_SCREENSHOTS when it is set (the README's docs/screenshots).
//
// Chromium talks only to 127.0.0.1: host names resolve to nothing and
// every other address goes to a proxy on 127.0.0.1:9, where nothing
// listens; its background services are off.
func TestDashboard(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed (./hack/deps.sh installs Debian's chromium package)")
	}
	tb := testbed.New(t)
	n := tb.AddNode("dash1")
	c := &cluster{t: t, n: n}
	step := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, func(t *testing.T) { c.t = t; f(t) })
		c.t = t
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}
	shots := os.Getenv("KUBEFORGE_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(n.Dir, "screenshots")
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	cfg := n.InitConfigFile()
	var initDone time.Time
	step("init", func(t *testing.T) {
		out := c.kubeforge(3*time.Minute, "init", "--config", cfg, "--advertise-address", n.IP.String(), "--node-name", n.Name, "--single-node")
		initDone = time.Now()
		if !strings.Contains(out, "dashboard") {
			t.Errorf("init did not report the dashboard addon:\n%s", out)
		}
		tarball := filepath.Join(n.Dir, "busybox.tar")
		if _, err := testbed.WriteBusyboxImage(tarball, busyboxRef); err != nil {
			t.Fatal(err)
		}
		c.kubeforge(2*time.Minute, "images", "import", tarball)
		c.kubectl("apply", "-f", n.WriteConfigFile("web.yaml", dashboardWorkload))
		// (n.Kubectl gives up after a minute: wait in shorter rounds.)
		for _, d := range [][]string{{"-n", "kube-system", "deploy/kubeforge-dashboard"}, {"-n", "default", "deploy/web"}} {
			poll(t, 3*time.Minute, "rollout of "+strings.Join(d, " "), func() string {
				if _, err := n.Kubectl(append([]string{"rollout", "status", "--timeout=40s"}, d...)...); err != nil {
					return err.Error()
				}
				return ""
			})
		}
	})

	step("no-rights", func(t *testing.T) {
		// The dashboard's own identity may do nothing beyond what every
		// identity may, and its pod has no token.
		for _, q := range [][]string{{"list", "pods", "-A"}, {"get", "secrets", "-n", "kube-system"}, {"list", "nodes"},
			{"impersonate", "users"}, {"create", "serviceaccounts/token", "-n", "kube-system"}, {"patch", "deployments", "-A"}} {
			out, _ := n.Kubectl(append([]string{"auth", "can-i", "--as=system:serviceaccount:kube-system:kubeforge-dashboard"}, q...)...)
			if strings.TrimSpace(out) != "no" {
				t.Errorf("kubectl auth can-i %s as the dashboard: %q, want no", strings.Join(q, " "), out)
			}
		}
		mounts := c.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kubeforge-dashboard", "-o", "jsonpath={.items[*].spec.containers[*].volumeMounts[*].mountPath}")
		if strings.Contains(mounts, "serviceaccount") {
			t.Errorf("the dashboard pod mounts a service account token: %s", mounts)
		}
	})

	step("memory", func(t *testing.T) {
		var found bool
		for _, p := range n.Processes() {
			if !hasWords(p.Cmdline, "component", "dashboard") {
				continue
			}
			found = true
			rss, pss := smapsRollup(t, p.PID)
			t.Logf("BENCH dashboard.rss_mib=%.1f dashboard.pss_mib=%.1f (pid %d, %v after init, before any sign-in)", rss, pss, p.PID, time.Since(initDone).Round(time.Second))
		}
		if !found {
			t.Error("no dashboard process on the node")
		}
	})

	step("idempotent", func(t *testing.T) {
		out := c.kubeforge(2*time.Minute, "init", "phase", "addon", "dashboard", "--config", cfg)
		if regexp.MustCompile(`(?m)\b(Created|Updated) `).MatchString(out) || !strings.Contains(out, "is up to date: nothing changed") {
			t.Errorf("a second addon/dashboard changed objects or did not say it changed nothing:\n%s", out)
		}
		off := n.WriteConfigFile("dashboard-off.yaml", n.InitConfigYAML()+
			"---\napiVersion: kubeforge.io/v1alpha1\nkind: KubeforgeConfiguration\naddons:\n  dashboard:\n    enabled: false\n")
		out = c.kubeforge(2*time.Minute, "init", "phase", "addon", "dashboard", "--config", off)
		if !strings.Contains(out, "Skipping the dashboard") {
			t.Errorf("addons.dashboard.enabled: false did not skip the phase:\n%s", out)
		}
	})

	// `kubeforge dashboard --admin` runs on the host with a copy of the
	// admin kubeconfig (its server is the node's address on the test
	// bridge) and forwards a port of the host's loopback.
	admin, err := n.ReadFile("/etc/kubernetes/admin.conf")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(n.Dir, "admin-host.conf")
	if err := os.WriteFile(kubeconfig, admin, 0o600); err != nil {
		t.Fatal(err)
	}
	// The port-forward lives as long as the whole test.
	base, signIn := openDashboard(t, tb.Binary, kubeconfig, n.Dir)

	// One headless Chromium for the rest of the test.
	profile := filepath.Join(n.Dir, "chromium-profile")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox, // root
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("proxy-server", "http://127.0.0.1:9"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-gpu", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browser); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	// run runs browser actions with a time limit.
	run := func(t *testing.T, limit time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, limit)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			html, _ := chromedp.Run(browser, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
			loc, _ := chromedp.Run(browser, chromedp.Location())
			t.Fatalf("browser: %v\nat %s:\n%s", err, redactToken(loc), html)
		}
	}
	shot := func(t *testing.T, name string) {
		t.Helper()
		png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	evalInt := func(t *testing.T, js string) int {
		t.Helper()
		v, err := chromedp.Run(browser, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	location := func(t *testing.T) string {
		loc, err := chromedp.Run(browser, chromedp.Location())
		if err != nil {
			t.Fatal(err)
		}
		return loc
	}

	step("no-session", func(t *testing.T) {
		run(t, 30*time.Second, chromedp.Navigate(base+"workloads"), chromedp.WaitVisible(chromedp.CSS("#login")))
		if loc := location(t); loc != base+"login" {
			t.Errorf("without a session /workloads went to %s, want %slogin", loc, base)
		}
		shot(t, "sign-in")
	})

	step("sign-in-and-node", func(t *testing.T) {
		// From a blank page, as a user opening the link in a new tab.
		run(t, 60*time.Second, chromedp.Navigate("about:blank"), chromedp.Navigate(signIn), chromedp.WaitVisible(chromedp.CSS("#nodes")))
		if loc := location(t); strings.Contains(loc, "token") {
			t.Errorf("the token stayed in the address bar: %s", redactToken(loc))
		}
		user, _ := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#user")))
		if user != "system:serviceaccount:kube-system:kubeforge-dashboard-admin" {
			t.Errorf("signed in as %q", user)
		}
		// The node, Ready.
		nodeRow := func() string {
			row, _ := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`tr.node[data-node="`+n.Name+`"]`)))
			return row
		}
		reload := func(t *testing.T) {
			run(t, 30*time.Second, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#nodes")))
		}
		poll(t, 60*time.Second, "the node Ready on the overview", func() string {
			if row := nodeRow(); !strings.Contains(row, "Ready") {
				reload(t)
				return "node row: " + row
			}
			return ""
		})
		// Its CPU and memory use when the metrics API answers, else the
		// page says why there is none.
		notes := func() string {
			v, _ := chromedp.Run(browser, chromedp.Evaluate[string](`[...document.querySelectorAll(".note")].map(e => e.textContent).join("\n")`))
			return v
		}
		if _, err := n.Kubectl("top", "nodes"); err == nil {
			poll(t, 60*time.Second, "the node's usage on the overview", func() string {
				if row := nodeRow(); !strings.Contains(row, "%") {
					reload(t)
					return "node row: " + row + "; notes: " + notes()
				}
				return ""
			})
		} else {
			t.Logf("the metrics API does not answer on this bed (kubectl top nodes: %v)", err)
			reload(t)
			// metrics-server may have become Ready in between (CI once,
			// 21 s after init): then the page shows the usage instead.
			if nt := notes(); !strings.Contains(nt, "metrics.k8s.io") && !strings.Contains(nodeRow(), "%") {
				t.Errorf("the overview neither shows the node's usage nor says why; notes: %q", nt)
			} else if strings.Contains(nt, "metrics.k8s.io") {
				t.Logf("the overview says: %s", strings.SplitN(nt, "\n", 2)[0])
			}
		}
		if strings.Contains(nodeRow(), "%") {
			t.Logf("node row: %s", nodeRow())
		}
		shot(t, "overview")
	})

	step("pod-logs", func(t *testing.T) {
		run(t, 30*time.Second, chromedp.Navigate(base+"workloads?ns=default"), chromedp.WaitVisible(chromedp.CSS(`section[data-name="default/web"]`)))
		shot(t, "workloads")
		run(t, 30*time.Second, chromedp.Click(chromedp.CSS(`section[data-name="default/web"] tr.pod a`)), chromedp.WaitVisible(chromedp.CSS("#log")))
		// The log has the first line, and keeps growing (live tail).
		run(t, 30*time.Second, chromedp.Poll[chromedp.Void](`document.getElementById("log").textContent.includes("dashboard-e2e-hello")`,
			chromedp.WithPollingTimeout(25*time.Second)))
		ticks := func() int {
			return evalInt(t, `(document.getElementById("log").textContent.match(/tick \d+/g) || []).length`)
		}
		before := ticks()
		run(t, 30*time.Second, chromedp.Poll[chromedp.Void](fmt.Sprintf(`(document.getElementById("log").textContent.match(/tick \d+/g) || []).length >= %d`, before+3),
			chromedp.WithPollingTimeout(25*time.Second)))
		t.Logf("live tail: %d ticks, then %d", before, ticks())
		shot(t, "pod")
	})

	step("scale", func(t *testing.T) {
		before := c.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}")
		run(t, 30*time.Second, chromedp.Navigate(base+"workloads?ns=default"),
			chromedp.SetValue(chromedp.CSS(`section[data-name="default/web"] form.scale input[name=replicas]`), "2"),
			chromedp.Click(chromedp.CSS(`section[data-name="default/web"] form.scale button`)),
			chromedp.WaitVisible(chromedp.CSS(`section[data-name="default/web"]`)))
		// The new pod shows up on the page (reloaded until it does).
		var newPod string
		run(t, 90*time.Second, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			for {
				names, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('section[data-name="default/web"] tr.pod')].map(r => r.dataset.pod + " " + r.cells[1].textContent)`))
				if err != nil {
					return err
				}
				for _, nm := range names {
					f := strings.Fields(nm)
					if len(f) == 2 && !strings.Contains(before, f[0]) && f[1] == "Running" {
						newPod = f[0]
						return nil
					}
				}
				if err := chromedp.Do(ctx, chromedp.Sleep(2*time.Second), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`section[data-name="default/web"]`))); err != nil {
					return fmt.Errorf("pods on the page %v: %w", names, err)
				}
			}
		}))
		t.Logf("scaled to 2: new pod %s (before: %s)", newPod, before)
		if r := strings.TrimSpace(c.kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}")); r != "2" {
			t.Errorf("replicas %s, want 2", r)
		}
		shot(t, "workloads-scaled")
		for _, p := range []struct{ path, sel, name string }{
			{"services", "#services", "services"}, {"storage", "#pvs", "storage"}, {"events?ns=default", "#events", "events"}, {"namespaces", "#namespaces", "namespaces"},
		} {
			run(t, 30*time.Second, chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel)))
			shot(t, p.name)
		}
	})

	// A deleted pod's page shows its lines from the log store.
	step("deleted-pod-logs", func(t *testing.T) {
		pods := strings.Fields(c.kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"))
		if len(pods) == 0 {
			t.Fatal("no web pod")
		}
		gone := pods[0]
		c.kubectl("delete", "pod", gone, "--wait=true")
		run(t, 2*time.Minute, chromedp.Navigate(base+"pods/default/"+gone), chromedp.WaitVisible(chromedp.CSS("#gone")))
		run(t, 2*time.Minute, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			for {
				text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.getElementById("stored-log") || document.querySelector("main")).textContent`))
				if err != nil {
					return err
				}
				if strings.Contains(text, "dashboard-e2e-hello") {
					return nil
				}
				if err := chromedp.Do(ctx, chromedp.Sleep(3*time.Second), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#gone"))); err != nil {
					return fmt.Errorf("stored logs of %s: %w (last page: %s)", gone, err, text)
				}
			}
		}))
		shot(t, "stored-logs")
	})

	step("read-only-user", func(t *testing.T) {
		token := strings.TrimSpace(c.kubectl("create", "token", "viewer", "--duration=10m"))
		run(t, 30*time.Second, chromedp.Click(chromedp.CSS(`form.user button`)), chromedp.WaitVisible(chromedp.CSS("#login")),
			chromedp.SetValue(chromedp.CSS("#token"), token), chromedp.Click(chromedp.CSS("#signin")), chromedp.WaitVisible(chromedp.CSS("#user")))
		user, _ := chromedp.Run(browser, chromedp.Text(chromedp.CSS("#user")))
		if user != "system:serviceaccount:default:viewer" {
			t.Errorf("signed in as %q, want the viewer", user)
		}
		if k := evalInt(t, `document.querySelectorAll("button.action").length`); k != 0 {
			t.Errorf("the overview shows the viewer %d action buttons", k)
		}
		// The view role cannot list nodes: the overview shows the API's refusal.
		if e, _ := chromedp.Run(browser, chromedp.Text(chromedp.CSS("main"))); !strings.Contains(e, "nodes is forbidden") {
			t.Errorf("the viewer's overview does not show the API's refusal to list nodes:\n%s", e)
		}
		run(t, 30*time.Second, chromedp.Navigate(base+"workloads?ns=default"), chromedp.WaitVisible(chromedp.CSS(`section[data-name="default/web"] tr.pod`)))
		if k := evalInt(t, `document.querySelectorAll("button.action").length`); k != 0 {
			t.Errorf("the workloads page shows the viewer %d action buttons", k)
		}
		shot(t, "read-only-workloads")
		// A POST made anyway, with the session's CSRF token: the API's 403.
		res, err := chromedp.Run(browser, chromedp.Evaluate[string](`(async () => {
			const csrf = document.querySelector('form.user input[name=_csrf]').value;
			const r = await fetch("/workloads/deployments/default/web/scale", {method: "POST", body: new URLSearchParams({_csrf: csrf, replicas: "5"})});
			return r.status + " " + (await r.text());
		})()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(res, "403 ") || !strings.Contains(res, "forbidden") || !strings.Contains(res, "system:serviceaccount:default:viewer") {
			t.Errorf("the viewer's scale POST: want the API's 403, got %.600s", res)
		}
		// And one without the CSRF token: refused by the dashboard.
		res, err = chromedp.Run(browser, chromedp.Evaluate[string](`(async () => {
			const r = await fetch("/workloads/deployments/default/web/scale", {method: "POST", body: new URLSearchParams({replicas: "5"})});
			return r.status + " " + (await r.text());
		})()`, chromedp.EvalAwaitPromise))
		if err != nil || !strings.HasPrefix(res, "403 ") || !strings.Contains(res, "CSRF") {
			t.Errorf("a POST without the CSRF token: %v %.300s", err, res)
		}
		if r := strings.TrimSpace(c.kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}")); r != "2" {
			t.Errorf("replicas %s after the viewer's refused POSTs, want 2", r)
		}
	})
}

// openDashboard runs `kubeforge dashboard --admin` on the host until the
// test ends, and returns the dashboard's URL and the sign-in link it
// printed.
func openDashboard(t *testing.T, binary, kubeconfig, home string) (base, signIn string) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, binary, "dashboard", "--kubeconfig", kubeconfig, "--admin")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + home}
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	urlRE := regexp.MustCompile(`(http://127\.0\.0\.1:\d+/)login#token=\S+`)
	timeout := time.After(60 * time.Second)
	for signIn == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("kubeforge dashboard ended without a sign-in link: %v\n%s", <-done, stderr.String())
			}
			t.Logf("kubeforge dashboard: %s", redactToken(line))
			if m := urlRE.FindStringSubmatch(line); m != nil {
				signIn, base = m[0], m[1]
			}
		case <-timeout:
			t.Fatalf("no sign-in link from kubeforge dashboard within 60s\n%s", stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	return base, signIn
}

var tokenRE = regexp.MustCompile(`token=[^\s]+`)

func redactToken(s string) string { return tokenRE.ReplaceAllString(s, "token=<redacted>") }
