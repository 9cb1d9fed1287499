package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/join/etcdmember"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
	"github.com/kubeforge/kubeforge/test/testbed"
)

const encryptionFile = "/etc/kubernetes/pki/encryption-config.yaml"

// TestSecretsRotateKey rotates the key that encrypts Secrets at rest on a
// live single-node cluster, twice (the second time killed after its first
// step and run again), while a client keeps writing and reading
// Secrets: no request fails, every Secret stays readable, etcd holds every
// Secret under the new key's prefix, the old key leaves the file, the node
// duty reports the published configuration, the node's own (kubelet)
// credentials cannot read the Secret holding the keys, and upload-certs
// shares the rotated file.
func TestSecretsRotateKey(t *testing.T) {
	testbed.RequireHost(t)
	begin := time.Now()
	defer func() { t.Logf("TestSecretsRotateKey took %v", time.Since(begin).Round(time.Second)) }()
	tb := testbed.New(t)
	holdOnFailure(t, tb)
	n := tb.AddNode("sec1")
	c := &cluster{t: t, n: n}
	step := stepper(t)
	var admin kubernetes.Interface

	step("init", func(t *testing.T) {
		c.t = t
		// Generous: other tests often load the machine (init alone then takes minutes).
		c.kubeforge(6*time.Minute, "init", "--config", n.InitConfigFile(), "--advertise-address", n.IP.String(), "--node-name", n.Name, "--single-node")
		poll(t, 3*time.Minute, "node Ready and control plane Running", func() string {
			if s := c.nodeReady(time.Time{}); s != "" {
				return s
			}
			return c.controlPlaneReady()
		})
		admin = apiClient(t, n, "")
		cfg := fileConfig(t, n)
		if w := cfg.Write(); w.Type != encryption.Secretbox || len(cfg.KeyNames()) != 1 {
			t.Errorf("a new cluster encrypts with %s %v, want one secretbox key", w.Type, cfg.KeyNames())
		}
		m, err := n.ReadFile("/etc/kubernetes/manifests/kube-apiserver.yaml")
		if err != nil || !strings.Contains(string(m), "--encryption-provider-config-automatic-reload=true") {
			t.Errorf("the API server does not reload its encryption configuration by itself (%v)", err)
		}
		// Stored before any rotation, under init's key.
		checkStored(t, n, cfg.Write())
	})

	const before = 40
	step("secrets-before", func(t *testing.T) {
		ctx := context.Background()
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rot"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for i := range before {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "rot", Name: fmt.Sprintf("before-%d", i)},
				Data: map[string][]byte{"v": []byte(fmt.Sprintf("value-%d", i))}}
			if _, err := admin.CoreV1().Secrets("rot").Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})

	// rotate runs rotate-key (the interrupted run first when asked) under
	// a client loop and checks the outcome.
	rotate := func(t *testing.T, interrupt bool) encryption.Provider {
		c.t = t
		old := fileConfig(t, n)
		load := startLoad(t, admin, before)
		var resumeAt encryption.Step
		if interrupt {
			// Kill a run once it recorded its first step (it then waits
			// for the API server to reread the file).
			ctx, cancel := context.WithCancel(context.Background())
			cmd := n.Command(ctx, n.Binary, "secrets", "rotate-key")
			var buf bytes.Buffer
			cmd.Stdout, cmd.Stderr = &buf, &buf
			if err := cmd.Start(); err != nil {
				cancel()
				t.Fatal(err)
			}
			poll(t, 3*time.Minute, "the first step recorded", func() string {
				st, _, err := encryption.LoadState(context.Background(), admin)
				if err != nil {
					return err.Error()
				}
				if st.Step != encryption.StepReadKeyAdded {
					return "step " + string(st.Step)
				}
				return ""
			})
			cancel()
			_ = cmd.Wait()
			st, found, lerr := encryption.LoadState(context.Background(), admin)
			if lerr != nil || !found || st.Step == encryption.StepDone || st.Step == encryption.StepNone {
				t.Fatalf("after the killed run: step %q found %v err %v\n%s", st.Step, found, lerr, buf.String())
			}
			resumeAt = st.Step
		}
		start := time.Now()
		out := c.kubeforge(8*time.Minute, "secrets", "rotate-key")
		t.Logf("rotate-key took %v:\n%s", time.Since(start).Round(time.Second), out)
		if interrupt && !strings.Contains(out, "Recorded rotation: step "+string(resumeAt)) {
			t.Errorf("the second run did not resume the recorded step")
		}
		total, failures := load.stop()
		t.Logf("%d requests during the rotation", total)
		if total < 50 {
			t.Errorf("only %d requests during the rotation", total)
		}
		if len(failures) > 0 {
			t.Errorf("%d of %d requests failed during the rotation, first: %v", len(failures), total, failures[0])
		}

		cfg := fileConfig(t, n)
		key := cfg.Write()
		if key.Type != encryption.Secretbox || len(cfg.KeyNames()) != 1 {
			t.Errorf("after rotation: write key %s %s, keys %v", key.Type, key.Name, cfg.KeyNames())
		}
		b, _ := n.ReadFile(encryptionFile)
		for _, k := range old.KeyNames() {
			if strings.Contains(string(b), k) {
				t.Errorf("old key %s is still in %s", k, encryptionFile)
			}
		}
		// Every Secret readable, with its data.
		ctx := context.Background()
		all, err := admin.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range before {
			s, err := admin.CoreV1().Secrets("rot").Get(ctx, fmt.Sprintf("before-%d", i), metav1.GetOptions{})
			if err != nil || string(s.Data["v"]) != fmt.Sprintf("value-%d", i) {
				t.Errorf("Secret rot/before-%d after the rotation: %v", i, err)
			}
		}
		stored := checkStored(t, n, key)
		if stored < len(all.Items) {
			t.Errorf("etcd holds %d Secrets, the API lists %d", stored, len(all.Items))
		}
		// The duty reports the published configuration.
		poll(t, 30*time.Second, "the secrets-encryption-config duty reports the published file", func() string {
			return dutyMessage(n, "secrets-encryption-config", string(encryption.StepDone))
		})
		return key
	}

	var first encryption.Provider
	step("rotate", func(t *testing.T) { first = rotate(t, false) })

	step("kubelet-cannot-read-keys", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, args := range [][]string{
			{"get", "secret", "-n", "kube-system", encryption.StateSecret},
			{"get", "secrets", "-n", "kube-system"},
		} {
			out, err := n.Run(ctx, "/usr/bin/kubectl", append([]string{"--kubeconfig=/etc/kubernetes/kubelet.conf"}, args...)...)
			if err == nil || !strings.Contains(err.Error(), "forbidden") {
				t.Errorf("kubectl %v with the kubelet's credentials: %v\n%s", args, err, out)
			}
		}
		// The administrator can, and it holds the node's file.
		s, err := admin.CoreV1().Secrets("kube-system").Get(ctx, encryption.StateSecret, metav1.GetOptions{})
		b, _ := n.ReadFile(encryptionFile)
		if err != nil || !bytes.Equal(s.Data[encryption.ConfigDataKey], b) {
			t.Errorf("the published configuration differs from the node's file (%v)", err)
		}
	})

	step("upload-certs-shares-current-file", func(t *testing.T) {
		c.t = t
		key, err := uploadcerts.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		c.kubeforge(time.Minute, "init", "phase", "upload-certs", "--upload-certs", "--certificate-key", key, "--config", n.InitConfigFile())
		raw, _ := uploadcerts.ParseKey(key)
		files, err := uploadcerts.Fetch(context.Background(), admin, raw)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := n.ReadFile(encryptionFile)
		if !bytes.Equal(files["encryption-config.yaml"], b) {
			t.Errorf("upload-certs shared another encryption configuration than the node's current one")
		}
	})

	step("rotate-again-interrupted", func(t *testing.T) {
		second := rotate(t, true)
		if second.Name == first.Name {
			t.Errorf("the second rotation kept key %s", first.Name)
		}
		// The uploaded bundle held the retired key: gone.
		if _, err := admin.CoreV1().Secrets("kube-system").Get(context.Background(), uploadcerts.SecretName, metav1.GetOptions{}); err == nil {
			t.Errorf("kube-system/%s with the retired key survived the rotation", uploadcerts.SecretName)
		}
	})
}

// fileConfig parses the node's encryption configuration.
func fileConfig(t *testing.T, n *testbed.Node) encryption.Config {
	t.Helper()
	b, err := n.ReadFile(encryptionFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := encryption.Parse(b, encryptionFile)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkStored reads every Secret's raw value from the node's etcd and
// fails on any not under key's prefix; it returns how many there are.
func checkStored(t *testing.T, n *testbed.Node, key encryption.Provider) int {
	t.Helper()
	ec, err := etcdmember.Client(config.DefaultPaths().WithRoot(n.Path("/")), []string{etcdEndpoint(n)})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := encryption.EtcdSecrets(ec, "/registry")(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		t.Fatal("no Secrets in etcd under /registry/secrets/")
	}
	if bad := encryption.NotUnder(raw, key); len(bad) > 0 {
		t.Errorf("%d of %d Secrets are not stored under %s, e.g. %s: %q", len(bad), len(raw),
			encryption.StoragePrefix(key.Type, key.Name), bad[0], raw[bad[0]])
	}
	return len(raw)
}

// dutyMessage reports "" when `node status -o json` shows duty name OK
// with a message containing want.
func dutyMessage(n *testbed.Node, name, want string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := n.Kubeforge(ctx, "node", "status", "-o", "json")
	if err != nil {
		return err.Error()
	}
	var st struct {
		State struct {
			Duties []struct{ Name, Status, Message string }
		}
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return err.Error() + ": " + out
	}
	for _, d := range st.State.Duties {
		if strings.EqualFold(d.Name, name) {
			if strings.EqualFold(d.Status, "ok") && strings.Contains(d.Message, want) {
				return ""
			}
			return d.Status + ": " + d.Message
		}
	}
	return "no duty " + name + " in " + out
}

// load is a client writing and reading Secrets until stopped.
type load struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	total    atomic.Int64
	mu       sync.Mutex
	failures []error
}

func startLoad(t *testing.T, c kubernetes.Interface, before int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("during-%d-%d", time.Now().UnixNano(), i)
			rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
			var err error
			switch i % 3 {
			case 0:
				_, err = c.CoreV1().Secrets("rot").Create(rctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "rot", Name: name},
					Data: map[string][]byte{"v": []byte(name)}}, metav1.CreateOptions{})
			case 1:
				want := fmt.Sprintf("value-%d", i%before)
				var s *corev1.Secret
				s, err = c.CoreV1().Secrets("rot").Get(rctx, fmt.Sprintf("before-%d", i%before), metav1.GetOptions{})
				if err == nil && string(s.Data["v"]) != want {
					err = fmt.Errorf("rot/before-%d holds %q, want %q", i%before, s.Data["v"], want)
				}
			case 2:
				_, err = c.CoreV1().Secrets("rot").List(rctx, metav1.ListOptions{Limit: 20})
			}
			rcancel()
			if ctx.Err() != nil {
				return
			}
			l.total.Add(1)
			if err != nil {
				l.mu.Lock()
				l.failures = append(l.failures, fmt.Errorf("%s: %w", time.Now().Format(time.TimeOnly), err))
				l.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return l
}

func (l *load) stop() (int64, []error) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total.Load(), l.failures
}
