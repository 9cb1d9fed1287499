package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/netbench"
	"github.com/kubeforge/kubeforge/test/testbed"
)

// TestNetworkPolicy checks NetworkPolicy enforcement (the network policy
// addon, on by default) on a control plane and a worker that joins after
// init: the controller runs on both; a default-deny ingress policy blocks
// pod-to-pod and pod-to-Service traffic across the nodes; an allow rule by
// pod label and port lets exactly that through (another port, another
// client label, another server stay blocked); an egress default-deny and
// an egress allow rule (with DNS to kube-system) do the same on the way
// out; DNS works where allowed; reset removes the controller's tables.
// All traffic stays inside the bed.
func TestNetworkPolicy(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	cp := tb.AddNode("cp1")
	w1 := tb.AddNode("w1")
	resolvConf := netResolvConf(t, tb)
	cfg := netInitConfig(t, cp, resolvConf, "")
	begin := time.Now()
	defer func() { t.Logf("%s took %v", t.Name(), time.Since(begin).Round(time.Second)) }()
	// The policy steps are independent of each other (each starts from
	// its own policies): a failed one does not stop the rest.
	setup := stepperNet(t)
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if name == "cluster" || name == "workload" {
			setup(name, f)
			return
		}
		start := time.Now()
		t.Run(name, f)
		t.Logf("step %s: %v", name, time.Since(start).Round(100*time.Millisecond))
	}

	step("cluster", func(t *testing.T) {
		out := netInit(t, cp, cfg)
		if !strings.Contains(out, "network policy") {
			t.Errorf("init did not report the network policy addon:\n%s", netTail(out, 30))
		}
		netJoinWorkers(t, cp, out, []*testbed.Node{w1})
		// One controller per node, the worker that joined later included;
		// Ready means its nftables table is in place.
		start := time.Now()
		pods := netWaitPods(t, cp, 2*time.Minute, "kube-system", "k8s-app=kube-network-policies", 2)
		t.Logf("network policy controllers ready %v after both nodes were: %v", time.Since(start).Round(100*time.Millisecond), pods)
		for _, n := range []*testbed.Node{cp, w1} {
			out := netRun(t, n, 30*time.Second, "nft", "list", "tables")
			if !strings.Contains(out, "table inet kubeforge-network-policies") && !strings.Contains(out, "table inet kube-network-policies") {
				t.Errorf("node %s has no network policy table:\n%s", n.Name, out)
			}
		}
		netWaitPods(t, cp, 2*time.Minute, "kube-system", "k8s-app=kube-dns", 2)
	})

	step("workload", func(t *testing.T) {
		netImportImage(t, tb, cp, w1)
		// The namespace first: pods are refused until its default
		// ServiceAccount exists.
		netKubectl(t, cp, "create", "namespace", npNS)
		pollEvery(t, time.Minute, 250*time.Millisecond, "ServiceAccount "+npNS+"/default", func() string {
			if _, err := cp.Kubectl("get", "serviceaccount", "-n", npNS, "default"); err != nil {
				return err.Error()
			}
			return ""
		})
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("np-workload.yaml", npWorkloadYAML))
		netWaitPods(t, cp, 2*time.Minute, npNS, "app in (web,db)", 2)
		netWaitPods(t, cp, 2*time.Minute, npNS, "role in (client,other)", 3)
	})
	ips := map[string]string{}
	for _, name := range []string{"web", "db"} {
		ips[name] = strings.TrimSpace(netKubectl(t, cp, "get", "pod", "-n", npNS, name, "-o", "jsonpath={.status.podIP}"))
	}
	webSvc := netServiceIP(t, cp, npNS, "web")
	webAltSvc := netServiceIP(t, cp, npNS, "web-alt")
	// Each target and the server that answers when traffic is let through.
	targets := []struct{ name, url, answer string }{
		{"web:8080", "http://" + ips["web"] + ":8080/", "web"},
		{"web:9090", "http://" + ips["web"] + ":9090/", "web"},
		{"db:8080", "http://" + ips["db"] + ":8080/", "db"},
		{"svc web", "http://" + webSvc + "/", "web"},
		{"svc web-alt", "http://" + webAltSvc + ":90/", "web"},
		{"svc web name", "http://web." + npNS + ".svc.cluster.local/", "web"},
	}
	web8080 := targets[0].url
	want := func(t *testing.T, from string, open map[string]bool) {
		t.Helper()
		for _, tg := range targets {
			if tg.name == "svc web name" && !open["dns"] {
				continue // nothing to resolve the name with
			}
			got := npGet(cp, from, tg.url)
			switch {
			case open[tg.name] && got != tg.answer:
				t.Errorf("%s → %s (%s): want an answer from %s, got %q", from, tg.name, tg.url, tg.answer, got)
			case !open[tg.name] && got != "":
				t.Errorf("%s → %s (%s): want it blocked, got an answer %q", from, tg.name, tg.url, got)
			}
		}
	}
	all := map[string]bool{"web:8080": true, "web:9090": true, "db:8080": true, "svc web": true, "svc web-alt": true, "svc web name": true, "dns": true}

	step("no-policy", func(t *testing.T) {
		for _, from := range []string{"client", "other"} {
			want(t, from, all)
		}
		npLookup(t, cp, "client", true)
	})

	step("ingress-default-deny", func(t *testing.T) {
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("np-deny-ingress.yaml", npDenyIngressYAML))
		took := pollEvery(t, 60*time.Second, 500*time.Millisecond, "default-deny ingress in effect", func() string {
			if got := npGet(cp, "client", web8080); got != "" {
				return "client still reaches web:8080"
			}
			return ""
		})
		t.Logf("default deny in effect %v after the apply", took.Round(100*time.Millisecond))
		for _, from := range []string{"client", "other"} {
			want(t, from, map[string]bool{"dns": true})
		}
		// DNS (CoreDNS is in kube-system, no policy there) still works.
		npLookup(t, cp, "client", true)
	})

	step("ingress-allow-by-label-and-port", func(t *testing.T) {
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("np-allow-ingress.yaml", npAllowIngressYAML))
		took := pollEvery(t, 60*time.Second, 500*time.Millisecond, "allow rule in effect on the same node", func() string {
			if got := npGet(cp, "client-w1", web8080); got != "web" {
				return fmt.Sprintf("client-w1 → web:8080 answers %q", got)
			}
			return ""
		})
		t.Logf("allow rule in effect %v after the apply", took.Round(100*time.Millisecond))
		want(t, "client-w1", map[string]bool{"web:8080": true, "svc web": true, "svc web name": true, "dns": true})
		want(t, "other", map[string]bool{"dns": true})
		// Across nodes the web pod must see the client's own address: a
		// pod network that masqueraded pod-to-pod traffic between nodes
		// would hide it, and the rule could not match (the node agent
		// masquerades only traffic that leaves the pod network).
		if got := npGet(cp, "client", web8080); got != "web" {
			nat, _ := cp.Run(context.Background(), "nft", "list", "table", "ip", "kubeforge-podnet")
			t.Errorf("client on cp1 → web on w1 (allowed by label and port) answers %q while the same rule lets client-w1 through: "+
				"is pod-to-pod traffic between nodes masqueraded? cp1's masquerading table:\n%s", got, nat)
		}
		// Exactly client → web on 8080, directly and through the Service
		// (evaluated after kube-proxy's DNAT), by IP and by name.
		want(t, "client", map[string]bool{"web:8080": true, "svc web": true, "svc web name": true, "dns": true})
	})

	step("egress-default-deny", func(t *testing.T) {
		netKubectl(t, cp, "delete", "networkpolicy", "-n", npNS, "--all")
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("np-deny-egress.yaml", npDenyEgressYAML))
		took := pollEvery(t, 60*time.Second, 500*time.Millisecond, "default-deny egress in effect", func() string {
			if got := npGet(cp, "client", web8080); got != "" {
				return "client still reaches web:8080"
			}
			return ""
		})
		t.Logf("egress default deny in effect %v after the apply", took.Round(100*time.Millisecond))
		want(t, "client", map[string]bool{})
		npLookup(t, cp, "client", false) // no DNS either: egress to CoreDNS is denied
		want(t, "other", all)            // the policy selects role=client only
	})

	step("egress-allow-by-label-and-port", func(t *testing.T) {
		netKubectl(t, cp, "apply", "-f", cp.WriteConfigFile("np-allow-egress.yaml", npAllowEgressYAML))
		pollEvery(t, 60*time.Second, 500*time.Millisecond, "egress allow rule in effect", func() string {
			if got := npGet(cp, "client", web8080); got != "web" {
				return fmt.Sprintf("client → web:8080 answers %q", got)
			}
			return ""
		})
		want(t, "client", map[string]bool{"web:8080": true, "svc web": true, "svc web name": true, "dns": true})
		npLookup(t, cp, "client", true)
		want(t, "other", all)
	})

	step("memory", func(t *testing.T) {
		// What the addon adds per node: the controller's own process,
		// after the steps above (policies, pods and new connections).
		for _, n := range []*testbed.Node{cp, w1} {
			var found bool
			for _, p := range n.Processes() {
				if !hasWords(p.Cmdline, "component", "network-policies") {
					continue
				}
				found = true
				rss, pss := smapsRollup(t, p.PID)
				t.Logf("BENCH network-policies.rss_mib=%.1f network-policies.pss_mib=%.1f (node %s, pid %d)", rss, pss, n.Name, p.PID)
			}
			if !found {
				t.Errorf("no network-policies process on node %s", n.Name)
			}
		}
	})

	step("reset-removes-tables", func(t *testing.T) {
		kf(t, w1, 2*time.Minute, "reset", "--force")
		out := netRun(t, w1, 30*time.Second, "nft", "list", "tables")
		if strings.Contains(out, "kube-network-policies") || strings.Contains(out, "kubeforge-network-policies") {
			t.Errorf("network policy tables left on w1 after reset:\n%s", out)
		}
		netCheckNetworkClean(t, w1)
	})
}

const npNS = "np"

// npGet fetches url from pod (namespace np) with a 3 s limit and returns
// the answer's first line, "" when nothing answered.
func npGet(n *testbed.Node, pod, url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.KubectlContext(ctx, "exec", "-n", npNS, pod, "--", "/bin/busybox", "timeout", "3", "/bin/busybox", "wget", "-q", "-O-", url)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
}

// npLookup resolves the web Service's name in pod and checks it resolves
// (ok) or does not.
func npLookup(t *testing.T, n *testbed.Node, pod string, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := n.KubectlContext(ctx, append([]string{"exec", "-n", npNS, pod, "--", "/bin/busybox", "timeout", "8"},
		netbench.LookupCommand("web."+npNS+".svc.cluster.local")...)...)
	resolved := err == nil && netbench.Fields(strings.TrimSpace(out))["addrs"] != ""
	if resolved != ok {
		t.Errorf("DNS from %s: resolved %v, want %v (%v)\n%s", pod, resolved, ok, err, out)
	}
}

// The workload: servers web (ports 8080 and 9090) and db (8080) on the
// worker, clients with labels role=client and role=other on the control
// plane, so that every request crosses nodes; Services web (80 → 8080)
// and web-alt (90 → 9090).
var npWorkloadYAML = fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web, namespace: %[1]s, labels: {app: web}}
spec:
  nodeName: w1
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: %[2]s
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "mkdir -p /tmp/www && echo web > /tmp/www/index.html && busybox httpd -p 9090 -h /tmp/www && exec busybox httpd -f -p 8080 -h /tmp/www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: %[1]s, labels: {app: db}}
spec:
  nodeName: w1
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: %[2]s
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "mkdir -p /tmp/www && echo db > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: %[1]s, labels: {role: client}}
spec:
  nodeName: cp1
  tolerations: [{operator: Exists}]
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: %[2]s, imagePullPolicy: Never, command: ["busybox", "sleep", "100000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: %[1]s, labels: {role: other}}
spec:
  nodeName: cp1
  tolerations: [{operator: Exists}]
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: %[2]s, imagePullPolicy: Never, command: ["busybox", "sleep", "100000"]}
---
apiVersion: v1
kind: Pod
metadata: {name: client-w1, namespace: %[1]s, labels: {role: client}}
spec:
  nodeName: w1
  terminationGracePeriodSeconds: 1
  containers:
  - {name: client, image: %[2]s, imagePullPolicy: Never, command: ["busybox", "sleep", "100000"]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-alt, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{port: 90, targetPort: 9090}]
`, npNS, netbench.ImageRef)

var npDenyIngressYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: ` + npNS + `}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

var npAllowIngressYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: ` + npNS + `}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{protocol: TCP, port: 8080}]
`

var npDenyEgressYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-deny-egress, namespace: ` + npNS + `}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
`

var npAllowEgressYAML = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress-web-and-dns, namespace: ` + npNS + `}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{protocol: TCP, port: 8080}]
  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
`
