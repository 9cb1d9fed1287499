package phases

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/encryption"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/internal/progress"
	"github.com/kubeforge/kubeforge/join/uploadcerts"
)

// RotateData is what the key-rotation phases share. The cluster access is
// injected (the command wires real API servers and etcd; tests fakes).
type RotateData struct {
	Client kubernetes.Interface
	// Servers finds every control-plane node's API server.
	Servers func(ctx context.Context) ([]encryption.APIServer, error)
	// Hashes asks one API server which configuration it runs with.
	Hashes encryption.LoadedHashes
	// Raw reads the stored Secrets from etcd.
	Raw encryption.RawSecrets
	// LocalFile is this node's encryption configuration (a host path).
	LocalFile string
	Out       *progress.Reporter
	Now       func() time.Time
	// Poll and Timeout bound each wait for the API servers (they reread
	// the file once a minute).
	Poll, Timeout time.Duration
	PageSize      int64

	// State is the rotation as recorded in the cluster.
	State   encryption.State
	servers []encryption.APIServer
	newKey  encryption.Provider
}

const rotatePhase = "rotate-key"

// RotateKeyWorkflow rotates the key that encrypts Secrets at rest, on every
// control-plane node, without an outage. Each step is recorded in
// kube-system/kubeforge-encryption-config before the API servers are
// waited for, so a run that stops anywhere continues where it stopped.
func RotateKeyWorkflow() *Workflow[*RotateData] {
	at := func(steps ...encryption.Step) func(d *RotateData) bool {
		return func(d *RotateData) bool {
			for _, s := range steps {
				if d.State.Step == s {
					return true
				}
			}
			return false
		}
	}
	return &Workflow[*RotateData]{Name: "secrets rotate-key", Phases: []Phase[*RotateData]{
		{Name: "resume", Short: "Read the recorded rotation and wait until every API server runs with its configuration", Run: runRotateResume},
		{Name: "add-read-key", Short: "Add a new secretbox key that decrypts only, on every control-plane node",
			RunIf: at(encryption.StepNone, encryption.StepDone), Run: runRotateTransition},
		{Name: "switch-write-key", Short: "Make the new key the one that encrypts, on every control-plane node",
			RunIf: at(encryption.StepReadKeyAdded), Run: runRotateTransition},
		{Name: "rewrite-secrets", Short: "Store every Secret again under the new key and check it in etcd",
			RunIf: at(encryption.StepWriteKeySwitched), Run: runRotateRewrite},
		{Name: "retire-old-keys", Short: "Remove the old keys from every control-plane node",
			RunIf: at(encryption.StepSecretsRewritten), Run: runRotateRetire},
	}}
}

func runRotateResume(ctx context.Context, d *RotateData) error {
	servers, err := d.Servers(ctx)
	if err != nil {
		return err
	}
	d.servers = servers
	st, found, err := encryption.LoadState(ctx, d.Client)
	if err != nil {
		return err
	}
	if !found {
		local, err := os.ReadFile(d.LocalFile)
		if err != nil {
			return fmt.Errorf("read this node's encryption configuration: %w (run rotate-key on a control-plane node)", err)
		}
		if _, err := encryption.Parse(local, d.LocalFile); err != nil {
			return err
		}
		st = encryption.State{Step: encryption.StepNone, Config: local}
		d.Out.Printf(rotatePhase, "No rotation recorded: starting from %s (%s)", d.LocalFile, encryption.Hash(local))
	} else {
		d.Out.Printf(rotatePhase, "Recorded rotation: step %s, key %s", st.Step, st.Key)
		if err := d.writeLocal(st.Config); err != nil {
			return err
		}
	}
	d.State = st
	return d.waitAll(ctx)
}

// runRotateTransition publishes the next configuration (a new read key, or
// the switch of the write key) and waits until every API server runs with it.
func runRotateTransition(ctx context.Context, d *RotateData) error {
	var key encryption.Provider
	if d.State.Step == encryption.StepNone || d.State.Step == encryption.StepDone {
		k, err := encryption.NewKey(d.Now())
		if err != nil {
			return err
		}
		key = k
	}
	return d.advance(ctx, key)
}

func runRotateRewrite(ctx context.Context, d *RotateData) error {
	start := time.Now()
	cfg, err := encryption.Parse(d.State.Config, "the published encryption configuration")
	if err != nil {
		return err
	}
	key := cfg.Write()
	if key.Name != d.State.Key {
		return fmt.Errorf("the published write key is %q, not the rotation's key %q: delete kube-system/%s only if you know every node's file, then run again", key.Name, d.State.Key, encryption.StateSecret)
	}
	n, err := encryption.RewriteSecrets(ctx, d.Client, d.PageSize, nil)
	if err != nil {
		return err
	}
	d.Out.Done(rotatePhase, "rewrite", "", start, "Rewrote %d Secrets under key %s", n, key.Name)
	// Every API server encrypts with the new key now; a Secret still under
	// an old one was written by a request that began before the switch.
	// Rewrite those once more, then they must all be under the new key.
	var stale []string
	for attempt := 0; attempt < 3; attempt++ {
		raw, err := d.Raw(ctx)
		if err != nil {
			return err
		}
		stale = encryption.NotUnder(raw, key)
		if len(stale) == 0 {
			d.Out.Printf(rotatePhase, "All %d Secrets in etcd start with %s", len(raw), encryption.StoragePrefix(key.Type, key.Name))
			break
		}
		only := map[string]bool{}
		for _, s := range stale {
			only[s] = true
		}
		if _, err := encryption.RewriteSecrets(ctx, d.Client, d.PageSize, only); err != nil {
			return err
		}
	}
	if len(stale) > 0 {
		return fmt.Errorf("these Secrets are still not stored under key %s in etcd after rewriting them: %s (run the command again; if it persists, check each API server's --encryption-provider-config)",
			key.Name, strings.Join(stale, ", "))
	}
	// The rewrite updated the state Secret too: continue from its new
	// version, unless another run changed the rotation meanwhile.
	cur, found, err := encryption.LoadState(ctx, d.Client)
	if err != nil {
		return err
	}
	if !found || cur.Step != d.State.Step || cur.Key != d.State.Key {
		return fmt.Errorf("kube-system/%s changed during the rewrite (now step %q key %q, was %q %q): is another rotate-key running?",
			encryption.StateSecret, cur.Step, cur.Key, d.State.Step, d.State.Key)
	}
	d.State = cur
	return d.advance(ctx, encryption.Provider{})
}

func runRotateRetire(ctx context.Context, d *RotateData) error {
	if err := d.advance(ctx, encryption.Provider{}); err != nil {
		return err
	}
	// An uploaded control-plane bundle holds the configuration of its
	// upload time, with a key that is now retired: drop it.
	err := d.Client.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, uploadcerts.SecretName, metav1.DeleteOptions{})
	switch {
	case err == nil:
		d.Out.Printf(rotatePhase, "Deleted kube-system/%s (it held the retired key): run `kubeforge init phase upload-certs --upload-certs` before the next control-plane join", uploadcerts.SecretName)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("delete the uploaded certificates kube-system/%s, which hold the retired key: %w", uploadcerts.SecretName, err)
	}
	d.Out.Printf(rotatePhase, "Secrets are encrypted with %s key %s alone", encryption.Secretbox, d.State.Key)
	return nil
}

// advance records the next step, writes this node's file and waits until
// every API server runs with the configuration.
func (d *RotateData) advance(ctx context.Context, key encryption.Provider) error {
	next, err := encryption.Next(d.State, key)
	if err != nil {
		return err
	}
	saved, err := encryption.SaveState(ctx, d.Client, next)
	if err != nil {
		return err
	}
	d.State = saved
	d.Out.Printf(rotatePhase, "Recorded step %s (key %s) in kube-system/%s", saved.Step, saved.Key, encryption.StateSecret)
	if err := d.writeLocal(saved.Config); err != nil {
		return err
	}
	return d.waitAll(ctx)
}

func (d *RotateData) writeLocal(data []byte) error {
	res, err := encryption.WriteConfigFile(d.LocalFile, data)
	if err != nil {
		return fmt.Errorf("write this node's encryption configuration: %w", err)
	}
	if res != fsutil.Unchanged {
		d.Out.Printf(rotatePhase, "Wrote %s (%s)", d.LocalFile, encryption.Hash(data))
	}
	return nil
}

func (d *RotateData) waitAll(ctx context.Context) error {
	start := time.Now()
	if err := encryption.WaitLoaded(ctx, d.servers, d.Hashes, d.State.Config, d.Poll, d.Timeout); err != nil {
		return err
	}
	names := make([]string, len(d.servers))
	for i, s := range d.servers {
		names[i] = s.Node
	}
	d.Out.Done(rotatePhase, "wait", "", start, "The API servers on %s run with %s", strings.Join(names, ", "), encryption.Hash(d.State.Config))
	return nil
}
