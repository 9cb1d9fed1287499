package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// Users of the test registry (testbed.Registry): "node" may pull e2e/*,
// the node-level credentials of registries.yaml; "pod" may pull private/*,
// the credentials of an imagePullSecret; "admin" pushes.
const (
	regNodeUser = testbed.RegistryNodeUser
	regPodUser  = testbed.RegistryPodUser
	// regUpstream is a made-up registry name that exists only as a mirror
	// key: nothing may ever resolve it.
	regUpstream = "upstream.kftb.invalid"
)

// TestRegistry pulls workload images from a real OCI registry
// (go-containerregistry's, in this test binary) on the testbed's bridge,
// serving TLS with a test CA and basic auth: through a mirror of a made-up
// upstream name and directly, with node-level credentials from
// /etc/kubeforge/registries.yaml and with an imagePullSecret; a wrong
// password is an ErrImagePull naming the registry; a broken registries.yaml
// is refused by `node restart` while the node keeps running; and a worker
// joined with --air-gapped pulls nothing, yet runs an image it imported
// from /var/lib/kubeforge/agent/images.
func TestRegistry(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	reg := testbed.StartRegistry(t, tb.Gateway)
	cp := tb.AddNode("reg1")
	begin := time.Now()
	defer func() { t.Logf("%s took %v", t.Name(), time.Since(begin).Round(time.Second)) }()
	step := stepper(t)

	// Three images of different digests (a label tells them apart), so
	// that each pod's image is reported by its own name.
	for _, ref := range []string{"e2e/busybox:1", "e2e/busybox:2", "private/busybox:1"} {
		reg.Push(t, ref, testbed.BusyboxRegistryImage(t, ref))
	}
	direct := reg.Host + "/e2e/busybox:1"
	viaMirror := regUpstream + "/e2e/busybox:2"
	private := reg.Host + "/private/busybox:1"

	// The node trusts the test CA for the registry; no credentials yet.
	writeNodeFile(t, cp, testbed.NodeCAFile, reg.CAPEM)
	registriesV1 := fmt.Sprintf(`mirrors:
  %s:
    endpoint: ["https://%s"]
configs:
  "%s":
    tls: {ca_file: /etc/kubeforge/kftb-ca.crt}
`, regUpstream, reg.Host, reg.Host)
	writeNodeFile(t, cp, "/etc/kubeforge/registries.yaml", []byte(registriesV1))

	var initOut string
	step("init", func(t *testing.T) {
		initOut = kf(t, cp, 3*time.Minute, "init", "--config", cp.InitConfigFile(), "--advertise-address", cp.IP.String(), "--single-node")
		netWaitPods(t, cp, 90*time.Second, "kube-system", "k8s-app=kube-dns", 2)
		st := kf(t, cp, 30*time.Second, "node", "status")
		if !strings.Contains(st, "registries: pulls from registries: "+reg.Host+" (tls); mirror "+regUpstream) {
			t.Errorf("node status does not show the registry configuration:\n%s", st)
		}
	})

	step("no-credentials-is-err-image-pull", func(t *testing.T) {
		applyPod(t, cp, regPod("nocreds", cp.Name, direct, ""))
		msg := waitPullError(t, cp, "nocreds")
		if !strings.Contains(msg, reg.Host) || !authFailure(msg) {
			t.Errorf("the pull error does not name the registry and the authorization failure:\n%s", msg)
		}
	})

	step("broken-file-refused", func(t *testing.T) {
		pid := nodeServicePID(t, cp)
		writeNodeFile(t, cp, "/etc/kubeforge/registries.yaml", []byte(registriesV1+"    auth: {username: "+regNodeUser+"}\n"))
		out, err := cp.Kubeforge(context.Background(), "node", "restart")
		if err == nil {
			t.Fatalf("node restart accepted a broken registries.yaml:\n%s", out)
		}
		for _, want := range []string{"/etc/kubeforge/registries.yaml", `configs["` + reg.Host + `"].auth`, "username and password go together", "fix:"} {
			if !strings.Contains(out, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, out)
			}
		}
		if now := nodeServicePID(t, cp); now != pid {
			t.Errorf("the node service was restarted anyway (pid %d, was %d)", now, pid)
		}
	})

	step("node-credentials-mirror-and-direct", func(t *testing.T) {
		registriesV2 := registriesV1 + fmt.Sprintf("    auth: {username: %s, password: %s}\n", regNodeUser, reg.Passwords[regNodeUser])
		writeNodeFile(t, cp, "/etc/kubeforge/registries.yaml", []byte(registriesV2))
		kf(t, cp, 2*time.Minute, "node", "restart")
		poll(t, 60*time.Second, "the node Ready after the restart", func() string {
			out, err := cp.Kubectl("get", "node", cp.Name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil {
				return err.Error()
			}
			if out != "True" {
				return "Ready=" + out
			}
			return ""
		})
		since := reg.Mark()
		kubectlOn(t, cp, "", "delete", "pod", "nocreds", "--wait=false")
		applyPod(t, cp, regPod("direct", cp.Name, direct, ""))
		applyPod(t, cp, regPod("mirror", cp.Name, viaMirror, ""))
		netWaitPods(t, cp, 90*time.Second, "default", "kftb-registry in (direct,mirror)", 2)
		// Both came from the registry, with the node's credentials; the
		// mirror's pull asked for the upstream's repository.
		for _, path := range []string{"/v2/e2e/busybox/manifests/1", "/v2/e2e/busybox/manifests/2"} {
			if !reg.Served(since, regNodeUser, path, cp.IP) {
				t.Errorf("the registry did not serve %s to %s from %s; it saw:\n%s", path, regNodeUser, cp.IP, reg.Log(since))
			}
		}
		if st := podImage(t, cp, "mirror"); !strings.HasPrefix(st, regUpstream+"/e2e/busybox:2") {
			t.Errorf("the mirror pod runs image %q, want the upstream's name", st)
		}
	})

	step("image-pull-secret", func(t *testing.T) {
		since := reg.Mark()
		kubectlOn(t, cp, "", "create", "secret", "docker-registry", "podcreds", "--docker-server="+reg.Host,
			"--docker-username="+regPodUser, "--docker-password="+reg.Passwords[regPodUser])
		applyPod(t, cp, regPod("secret", cp.Name, private, "podcreds"))
		// Without the secret, the node's own credentials do not reach private/.
		applyPod(t, cp, regPod("nosecret", cp.Name, private, ""))
		netWaitPods(t, cp, 90*time.Second, "default", "kftb-registry=secret", 1)
		if !reg.Served(since, regPodUser, "/v2/private/busybox/manifests/1", cp.IP) {
			t.Errorf("the registry did not serve private/busybox to %s; it saw:\n%s", regPodUser, reg.Log(since))
		}
		msg := waitPullError(t, cp, "nosecret")
		if !strings.Contains(msg, reg.Host) {
			t.Errorf("the pull error does not name the registry:\n%s", msg)
		}
	})

	step("wrong-password", func(t *testing.T) {
		kubectlOn(t, cp, "", "create", "secret", "docker-registry", "wrongcreds", "--docker-server="+reg.Host,
			"--docker-username="+regPodUser, "--docker-password=not-the-password")
		applyPod(t, cp, regPod("wrongpw", cp.Name, private, "wrongcreds"))
		msg := waitPullError(t, cp, "wrongpw")
		if !strings.Contains(msg, reg.Host) || !authFailure(msg) {
			t.Errorf("the pull error does not name the registry and the authorization failure:\n%s", msg)
		}
		// The kubelet's usual events, as `kubectl describe` shows them.
		poll(t, 30*time.Second, "the Failed pull event in kubectl describe", func() string {
			out, err := cp.Kubectl("describe", "pod", "wrongpw")
			if err != nil {
				return err.Error()
			}
			for _, want := range []string{"Failed to pull image \"" + private + "\"", "ErrImagePull", reg.Host} {
				if !strings.Contains(out, want) {
					return fmt.Sprintf("no %q in:\n%s", want, out)
				}
			}
			return ""
		})
	})

	step("air-gapped-worker", func(t *testing.T) {
		w := tb.AddNode("reg2")
		// The same registry configuration, credentials included: an
		// air-gapped node still pulls nothing. An image archive dropped
		// into the import directory is what it runs.
		writeNodeFile(t, w, testbed.NodeCAFile, reg.CAPEM)
		writeNodeFile(t, w, "/etc/kubeforge/registries.yaml", []byte(registriesV1+fmt.Sprintf("    auth: {username: %s, password: %s}\n", regNodeUser, reg.Passwords[regNodeUser])))
		archive := filepath.Join(tb.Dir, "import.tar")
		if _, err := testbed.WriteBusyboxImage(archive, "kftb.local/busybox:import"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		writeNodeFile(t, w, "/var/lib/kubeforge/agent/images/busybox.tar", b)
		since := reg.Mark()
		kf(t, w, 3*time.Minute, "join", "--config", netJoinConfig(t, w, initOut), "--air-gapped")
		poll(t, 60*time.Second, "the air-gapped worker's node status", func() string {
			st, err := w.Kubeforge(context.Background(), "node", "status")
			if err != nil {
				return err.Error()
			}
			if !strings.Contains(st, "registries: air-gapped") || !strings.Contains(st, "image archives: 1 imported") {
				return st
			}
			return ""
		})
		imported := regPod("imported", w.Name, "kftb.local/busybox:import", "")
		imported = strings.Replace(imported, "imagePullPolicy: Always", "imagePullPolicy: Never", 1)
		applyPod(t, cp, imported)
		for _, p := range []struct{ name, image, secret string }{
			{"gapped-direct", direct, ""}, {"gapped-mirror", viaMirror, ""}, {"gapped-secret", private, "podcreds"},
		} {
			applyPod(t, cp, regPod(p.name, w.Name, p.image, p.secret))
		}
		netWaitPods(t, cp, 90*time.Second, "default", "kftb-registry=imported", 1)
		for _, p := range []string{"gapped-direct", "gapped-mirror", "gapped-secret"} {
			msg := waitPullError(t, cp, p)
			if !strings.Contains(msg, "127.0.0.1:1") {
				t.Errorf("%s: the pull did not go to the dead loopback port:\n%s", p, msg)
			}
		}
		if l := reg.LogFrom(since, w.IP); l != "" {
			t.Errorf("the air-gapped worker reached the registry:\n%s", l)
		}
	})
}

// regPod is a pod of image on node that pulls every time, with an
// imagePullSecret when secret is set.
func regPod(name, node, image, secret string) string {
	s := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: default, labels: {kftb-registry: %s}}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: %s
    imagePullPolicy: Always
    command: ["/bin/busybox", "sleep", "3600"]
`, name, name, node, image)
	if secret != "" {
		s += "  imagePullSecrets: [{name: " + secret + "}]\n"
	}
	return s
}

func applyPod(t *testing.T, n *testbed.Node, yaml string) {
	t.Helper()
	f := n.WriteConfigFile(fmt.Sprintf("pod-%d.yaml", time.Now().UnixNano()), yaml)
	kubectlOn(t, n, "", "apply", "-f", f)
}

// waitPullError waits until the pod's container waits with ErrImagePull
// (or the back-off after it) and returns the kubelet's Failed events'
// messages for it.
func waitPullError(t *testing.T, n *testbed.Node, pod string) string {
	t.Helper()
	var msg string
	poll(t, 90*time.Second, pod+" failing to pull", func() string {
		out, err := n.Kubectl("get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[0].state.waiting.reason}`)
		if err != nil {
			return err.Error()
		}
		if out != "ErrImagePull" && out != "ImagePullBackOff" {
			return "waiting reason " + out
		}
		ev, err := n.Kubectl("get", "events", "--field-selector", "involvedObject.name="+pod+",reason=Failed",
			"-o", `jsonpath={range .items[*]}{.message}{"\n"}{end}`)
		if err != nil {
			return err.Error()
		}
		if !strings.Contains(ev, "ErrImagePull") && !strings.Contains(ev, "Failed to pull image") {
			return "no Failed pull event yet: " + ev
		}
		msg = ev
		return ""
	})
	t.Logf("%s: %s", pod, strings.TrimSpace(msg))
	return msg
}

// authFailure reports whether a pull error is the registry refusing the
// credentials (or their absence).
func authFailure(msg string) bool {
	return strings.Contains(msg, "401") || strings.Contains(msg, "authoriz") || strings.Contains(msg, "access denied")
}

func podImage(t *testing.T, n *testbed.Node, pod string) string {
	t.Helper()
	return kubectlOn(t, n, "", "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].image}")
}

// nodeServicePID is the pid `node status -o json` reports.
func nodeServicePID(t *testing.T, n *testbed.Node) int {
	t.Helper()
	var st struct {
		PID int `json:"pid"`
	}
	out := kf(t, n, 30*time.Second, "node", "status", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.PID == 0 {
		t.Fatalf("node status -o json: %v\n%s", err, out)
	}
	return st.PID
}

// writeNodeFile writes a file into the node's own filesystem.
func writeNodeFile(t *testing.T, n *testbed.Node, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(n.Path(filepath.Dir(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := n.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
