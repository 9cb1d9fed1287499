package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubeforge/kubeforge/test/testbed"
)

// localPathRoot is the default volume root (config.DefaultLocalPathRoot).
const localPathRoot = "/var/lib/kubeforge/storage"

// lpStatefulSet is one pod with a claim from the default StorageClass.
var lpStatefulSet = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default}
spec:
  serviceName: web
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0
      securityContext: {runAsUser: 1000, runAsGroup: 1000}
      containers:
      - name: web
        image: ` + busyboxRef + `
        imagePullPolicy: Never
        command: ["busybox", "sleep", "3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 64Mi}
`

// lpClaimPod is a claim of class CLASS with access mode MODE and volume
// mode VMODE, and a pod using it.
func lpClaimPod(name, class, mode, vmode string) string {
	classLine := ""
	if class != "" {
		classLine = "\n  storageClassName: " + class
	}
	mount := "volumeMounts: [{name: v, mountPath: /data}]"
	if vmode == "Block" {
		mount = "volumeDevices: [{name: v, devicePath: /dev/xvda}]"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %[1]s, namespace: default}
spec:%[2]s
  accessModes: [%[3]s]
  volumeMode: %[4]s
  resources:
    requests: {storage: 16Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: %[1]s, namespace: default}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: %[5]s
    imagePullPolicy: Never
    command: ["busybox", "sleep", "3600"]
    %[6]s
  volumes:
  - name: v
    persistentVolumeClaim: {claimName: %[1]s}
`, name, classLine, mode, vmode, busyboxRef, mount)
}

// TestLocalPath checks the local-path storage addon on two nodes (both
// schedulable): the default StorageClass; a StatefulSet's claim gets a
// directory on the node that runs its pod, whose data survives the pod,
// the node service's restart and the node's crash and restart; deleting
// the claim removes the directory on that node; a Retain class keeps it;
// ReadWriteMany and block claims are refused with an event; the
// provisioner cannot create pods or read Secrets; the phase reruns without
// a change; reset lists and deletes the volumes.
func TestLocalPath(t *testing.T) {
	testbed.RequireHost(t)
	if err := testbed.RequireStaticBusybox(); err != nil {
		t.Fatal(err)
	}
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	cp := tb.AddNode("lp-cp")
	w := tb.AddNode("lp-w")
	nodes := map[string]*testbed.Node{cp.Name: cp, w.Name: w}
	step := stepper(t)
	k := func(t *testing.T, args ...string) string { t.Helper(); return kubectlOn(t, cp, "", args...) }
	get := func(args ...string) string {
		out, _ := kubectlTry(cp, "", append([]string{"get"}, args...)...)
		return strings.TrimSpace(out)
	}

	cfg := cp.InitConfigFile()
	step("init-join", func(t *testing.T) {
		out := kf(t, cp, 3*time.Minute, "init", "--config", cfg, "--advertise-address", cp.IP.String(), "--node-name", cp.Name, "--single-node")
		if !strings.Contains(out, "local-path storage") {
			t.Errorf("init did not report the local-path addon:\n%s", out)
		}
		join, _ := joinCommands(t, out)
		kf(t, w, 3*time.Minute, append(join, "--config", w.JoinConfigFile())...)
		tarball := filepath.Join(tb.Dir, "busybox.tar")
		if _, err := testbed.WriteBusyboxImage(tarball, busyboxRef); err != nil {
			t.Fatal(err)
		}
		for _, n := range []*testbed.Node{cp, w} {
			kf(t, n, 2*time.Minute, "images", "import", tarball)
		}
	})
	api := apiClient(t, cp, "")
	var provisionerUp time.Time
	step("provisioner", func(t *testing.T) {
		poll(t, 2*time.Minute, "both nodes Ready", func() string { return nodesReady(api, cp.Name, w.Name) })
		poll(t, 2*time.Minute, "a local-path provisioner Ready on each node", func() string {
			_, s := podsReady(api, "kube-system", "k8s-app=local-path-provisioner", 2)
			return s
		})
		provisionerUp = time.Now()
		sc := get("storageclass", "local-path", "-o",
			`jsonpath={.provisioner} {.volumeBindingMode} {.reclaimPolicy} {.metadata.annotations.storageclass\.kubernetes\.io/is-default-class}`)
		if sc != "kubeforge.io/local-path WaitForFirstConsumer Delete true" {
			t.Errorf("StorageClass local-path: %q", sc)
		}
		// Least privilege: no pods, no Secrets, no other namespace's
		// writes beyond volumes and claims.
		sa := "--as=system:serviceaccount:kube-system:local-path-provisioner"
		for _, c := range []struct{ verb, res, want string }{
			{"create", "persistentvolumes", "yes"}, {"delete", "persistentvolumes", "yes"},
			{"watch", "persistentvolumeclaims", "yes"}, {"create", "pods", "no"}, {"get", "secrets", "no"},
			{"delete", "persistentvolumeclaims", "no"}, {"create", "storageclasses", "no"},
			{"update", "nodes", "no"}, {"create", "pods/exec", "no"},
		} {
			out, _ := kubectlTry(cp, "", "auth", "can-i", c.verb, c.res, "-A", sa)
			if strings.TrimSpace(out) != c.want {
				t.Errorf("can the provisioner %s %s? %q, want %s", c.verb, c.res, strings.TrimSpace(out), c.want)
			}
		}
	})

	step("idempotent", func(t *testing.T) {
		out := kf(t, cp, 2*time.Minute, "init", "phase", "addon", "local-path", "--config", cfg)
		if !strings.Contains(out, "local-path storage (default StorageClass local-path, volumes under "+localPathRoot+" on each node) is up to date: nothing changed") {
			t.Errorf("a second addon/local-path changed something:\n%s", out)
		}
	})

	// The volume: its node, its directory there, and the pod's node.
	var node *testbed.Node
	var dir, pvName string
	token := fmt.Sprintf("kubeforge-%d", time.Now().UnixNano())
	podNode := func() string { return get("pod", "web-0", "-o", "jsonpath={.spec.nodeName}") }
	step("statefulset", func(t *testing.T) {
		k(t, "apply", "-f", cp.WriteConfigFile("lp-sts.yaml", lpStatefulSet))
		poll(t, 2*time.Minute, "web-0 Running", func() string {
			if s := get("pod", "web-0", "-o", "jsonpath={.status.phase}"); s != "Running" {
				return "web-0: " + s + " " + get("pvc", "data-web-0", "-o", "jsonpath={.status.phase}") +
					" " + get("events", "--field-selector", "involvedObject.name=data-web-0", "-o", "jsonpath={.items[*].message}")
			}
			return ""
		})
		k(t, "exec", "web-0", "--", "busybox", "sh", "-c", "echo "+token+" > /data/f && busybox mkdir /data/sub && echo x > /data/sub/g")
		pvName = get("pvc", "data-web-0", "-o", "jsonpath={.spec.volumeName}")
		dir = get("pv", pvName, "-o", "jsonpath={.spec.local.path}")
		affinity := get("pv", pvName, "-o", "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}")
		policy := get("pv", pvName, "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}")
		name := podNode()
		node = nodes[name]
		if node == nil || affinity != name || policy != "Delete" {
			t.Fatalf("pod on %q, PV %s pinned to %q with policy %q", name, pvName, affinity, policy)
		}
		if want := localPathRoot + "/" + pvName + "_default_data-web-0"; dir != want {
			t.Errorf("volume directory %s, want %s", dir, want)
		}
		if b, err := node.ReadFile(dir + "/f"); err != nil || strings.TrimSpace(string(b)) != token {
			t.Errorf("on node %s, %s/f: %q %v", node.Name, dir, b, err)
		}
		if st, err := os.Stat(node.Path(localPathRoot)); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("volume root on %s: %v %v, want mode 0700", node.Name, st, err)
		}
		for _, other := range nodes {
			if other != node {
				if _, err := os.Stat(other.Path(dir)); !os.IsNotExist(err) {
					t.Errorf("the volume directory is also on %s: %v", other.Name, err)
				}
			}
		}
		t.Logf("web-0 runs on %s, its volume is %s", node.Name, dir)
	})

	readBack := func(t *testing.T, what string) {
		t.Helper()
		poll(t, 3*time.Minute, "web-0 Running again ("+what+")", func() string {
			if s := get("pod", "web-0", "-o", "jsonpath={.status.phase}{.status.containerStatuses[0].ready}"); s != "Runningtrue" {
				return "web-0: " + s
			}
			return ""
		})
		if got := podNode(); got != node.Name {
			t.Errorf("after %s, web-0 runs on %s, not on %s where its volume is", what, got, node.Name)
		}
		var out string
		poll(t, 30*time.Second, "reading the file back", func() string {
			var err error
			out, err = kubectlTry(cp, "", "exec", "web-0", "--", "busybox", "cat", "/data/f", "/data/sub/g")
			if err != nil {
				return err.Error()
			}
			return ""
		})
		if out != token+"\nx\n" {
			t.Errorf("after %s, the volume holds %q, want %q", what, out, token+"\nx\n")
		}
	}
	step("pod-deleted", func(t *testing.T) {
		uid := get("pod", "web-0", "-o", "jsonpath={.metadata.uid}")
		k(t, "delete", "pod", "web-0", "--wait=true")
		poll(t, 3*time.Minute, "a new web-0", func() string {
			if get("pod", "web-0", "-o", "jsonpath={.metadata.uid}") == uid {
				return "still the old pod"
			}
			return ""
		})
		readBack(t, "the pod was deleted")
	})
	step("node-service-restart", func(t *testing.T) {
		kf(t, node, 2*time.Minute, "node", "restart")
		readBack(t, "the node service restarted")
	})
	step("node-crash", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := node.Crash(ctx); err != nil {
			t.Fatal(err)
		}
		kf(t, node, 2*time.Minute, "node", "start")
		poll(t, 3*time.Minute, "both nodes Ready after the crash", func() string { return nodesReady(api, cp.Name, w.Name) })
		readBack(t, "the node crashed and restarted")
	})

	step("memory", func(t *testing.T) {
		time.Sleep(time.Until(provisionerUp.Add(30 * time.Second)))
		found := false
		for _, n := range []*testbed.Node{cp, w} {
			for _, p := range n.Processes() {
				if hasWords(p.Cmdline, "component", "local-path-provisioner") {
					found = true
					rss, pss := smapsRollup(t, p.PID)
					t.Logf("BENCH local-path-provisioner.rss_mib=%.1f local-path-provisioner.pss_mib=%.1f (node %s, pid %d)", rss, pss, n.Name, p.PID)
				}
			}
		}
		if !found {
			t.Error("no local-path-provisioner process on the nodes")
		}
	})

	step("refusals", func(t *testing.T) {
		k(t, "apply", "-f", cp.WriteConfigFile("lp-rwx.yaml", lpClaimPod("rwx", "", "ReadWriteMany", "Filesystem")))
		k(t, "apply", "-f", cp.WriteConfigFile("lp-block.yaml", lpClaimPod("block", "", "ReadWriteOnce", "Block")))
		for claim, want := range map[string]string{"rwx": "ReadWriteMany", "block": "does not support block volume"} {
			poll(t, 90*time.Second, "claim "+claim+" refused", func() string {
				ev := get("events", "--field-selector", "involvedObject.name="+claim+",involvedObject.kind=PersistentVolumeClaim,reason=ProvisioningFailed",
					"-o", "jsonpath={.items[*].message}")
				if !strings.Contains(ev, want) {
					return "events: " + ev
				}
				return ""
			})
			if p := get("pvc", claim, "-o", "jsonpath={.status.phase}"); p != "Pending" {
				t.Errorf("claim %s is %s, want Pending", claim, p)
			}
		}
		for _, n := range nodes {
			entries, _ := os.ReadDir(n.Path(localPathRoot))
			for _, e := range entries {
				if strings.Contains(e.Name(), "_rwx") || strings.Contains(e.Name(), "_block") {
					t.Errorf("a refused claim got a directory on %s: %s", n.Name, e.Name())
				}
			}
		}
		k(t, "delete", "pod", "rwx", "block", "--wait=false")
		k(t, "delete", "pvc", "rwx", "block", "--wait=false")
	})

	step("claim-deleted", func(t *testing.T) {
		k(t, "delete", "statefulset", "web", "--wait=true")
		poll(t, time.Minute, "web-0 gone", func() string {
			if _, err := kubectlTry(cp, "", "get", "pod", "web-0"); err == nil {
				return "web-0 still there"
			}
			return ""
		})
		k(t, "delete", "pvc", "data-web-0", "--wait=true")
		poll(t, time.Minute, "volume "+pvName+" and its directory deleted", func() string {
			if _, err := kubectlTry(cp, "", "get", "pv", pvName); err == nil {
				return "PV still there: " + get("pv", pvName, "-o", "jsonpath={.status.phase}") + " " +
					get("events", "--field-selector", "involvedObject.name="+pvName, "-o", "jsonpath={.items[*].message}")
			}
			if _, err := os.Stat(node.Path(dir)); !os.IsNotExist(err) {
				return fmt.Sprintf("%s still on %s: %v", dir, node.Name, err)
			}
			return ""
		})
	})

	var kept string
	step("retain", func(t *testing.T) {
		k(t, "apply", "-f", cp.WriteConfigFile("lp-retain-class.yaml", `apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local-retain}
provisioner: kubeforge.io/local-path
reclaimPolicy: Retain
volumeBindingMode: WaitForFirstConsumer
`))
		k(t, "apply", "-f", cp.WriteConfigFile("lp-keep.yaml", lpClaimPod("keep", "local-retain", "ReadWriteOnce", "Filesystem")))
		poll(t, 2*time.Minute, "pod keep Running", func() string {
			if s := get("pod", "keep", "-o", "jsonpath={.status.phase}"); s != "Running" {
				return "keep: " + s
			}
			return ""
		})
		k(t, "exec", "keep", "--", "busybox", "sh", "-c", "echo kept > /data/f")
		pv := get("pvc", "keep", "-o", "jsonpath={.spec.volumeName}")
		kept = get("pv", pv, "-o", "jsonpath={.spec.local.path}")
		n := nodes[get("pod", "keep", "-o", "jsonpath={.spec.nodeName}")]
		if n == nil || get("pv", pv, "-o", "jsonpath={.spec.persistentVolumeReclaimPolicy}") != "Retain" {
			t.Fatalf("pod keep on %v, PV %s", n, pv)
		}
		node = n
		// A canary on the same node, of the Delete class: its provisioner
		// deletes the canary's volume after it has seen keep's released
		// and deleted volume (the provisioner library's volume queue is
		// first in, first out, and keep's updates are queued before the
		// canary's claim is even deleted), so keep's directory still there
		// then means seen and declined, not not looked at yet.
		canary := strings.Replace(lpClaimPod("canary", "local-path", "ReadWriteOnce", "Filesystem"),
			"spec:\n  terminationGracePeriodSeconds: 0\n", "spec:\n  terminationGracePeriodSeconds: 0\n  nodeSelector: {kubernetes.io/hostname: "+n.Name+"}\n", 1)
		k(t, "apply", "-f", cp.WriteConfigFile("lp-canary.yaml", canary))
		poll(t, 2*time.Minute, "pod canary Running", func() string {
			if s := get("pod", "canary", "-o", "jsonpath={.status.phase}"); s != "Running" {
				return "canary: " + s
			}
			return ""
		})
		canaryPV := get("pvc", "canary", "-o", "jsonpath={.spec.volumeName}")
		canaryDir := get("pv", canaryPV, "-o", "jsonpath={.spec.local.path}")
		k(t, "delete", "pod", "keep", "--wait=true")
		k(t, "delete", "pvc", "keep", "--wait=true")
		poll(t, time.Minute, "PV "+pv+" Released", func() string {
			if p := get("pv", pv, "-o", "jsonpath={.status.phase}"); p != "Released" {
				return "phase " + p
			}
			return ""
		})
		k(t, "delete", "pv", pv, "--wait=true")
		k(t, "delete", "pod", "canary", "--wait=true")
		k(t, "delete", "pvc", "canary", "--wait=true")
		poll(t, time.Minute, "the canary's volume "+canaryPV+" and its directory deleted", func() string {
			if _, err := kubectlTry(cp, "", "get", "pv", canaryPV); err == nil {
				return "PV still there"
			}
			if _, err := os.Stat(n.Path(canaryDir)); !os.IsNotExist(err) {
				return fmt.Sprintf("%s still on %s: %v", canaryDir, n.Name, err)
			}
			return ""
		})
		if b, err := n.ReadFile(kept + "/f"); err != nil || string(b) != "kept\n" {
			t.Errorf("Retain: the released volume's data on %s: %q %v", n.Name, b, err)
		}
		if _, err := os.Stat(n.Path(kept)); err != nil {
			t.Errorf("Retain: deleting the PV removed its directory on %s: %v", n.Name, err)
		}
	})

	step("reset", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := node.Kubeforge(ctx, "reset", "--force")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "local-path volume(s) and their data: "+kept) {
			t.Errorf("reset did not list the volume %s:\n%s", kept, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "local-path volume") {
				t.Logf("reset on %s: %s", node.Name, l)
			}
		}
		if _, err := os.Stat(node.Path(localPathRoot)); !os.IsNotExist(err) {
			t.Errorf("after reset, %s on %s: %v", localPathRoot, node.Name, err)
		}
	})
}
