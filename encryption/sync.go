package encryption

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/internal/apiconn"
	"github.com/kubeforge/kubeforge/internal/fsutil"
	"github.com/kubeforge/kubeforge/manifests"
)

// Health is how the sync loop reports (the node service's duty.Health).
type Health interface {
	OK(format string, args ...any)
	Warn(format string, args ...any)
	Fail(err error)
}

// SyncOptions configure RunSync.
type SyncOptions struct {
	// Client reads kube-system/StateSecret with a cluster administrator's
	// credentials (the node's admin.conf): a kubelet's cannot.
	Client kubernetes.Interface
	// File is the API server's encryption configuration on this node (a
	// host path).
	File string
	// Interval between reads; 5 s by default.
	Interval time.Duration
	Log      *slog.Logger
}

// SyncOnce brings File to the published configuration: nothing when no
// rotation was ever published or the file already holds it. A published
// configuration that does not parse, or that would write unencrypted, is
// refused (the file is left alone). found says that the published Secret
// was read and exists, also when err refuses what it holds.
func SyncOnce(ctx context.Context, o SyncOptions) (st State, found bool, res fsutil.Result, err error) {
	st, found, err = LoadState(ctx, o.Client)
	if err != nil || !found {
		return st, found, fsutil.Unchanged, err
	}
	cfg, err := Parse(st.Config, "kube-system/"+StateSecret)
	if err != nil {
		return st, true, fsutil.Unchanged, fmt.Errorf("refusing the published encryption configuration: %w", err)
	}
	// Whoever can write that Secret must not be able to turn encryption
	// off: identity first would store new Secrets in plain text.
	if cfg.Write().Type == Identity {
		return st, true, fsutil.Unchanged, fmt.Errorf("refusing the published encryption configuration in kube-system/%s: its first provider is identity, which would store Secrets unencrypted", StateSecret)
	}
	res, err = WriteConfigFile(o.File, st.Config)
	if err != nil {
		return st, true, res, fmt.Errorf("write the encryption configuration %s: %w", o.File, err)
	}
	return st, true, res, nil
}

// RunSync keeps File equal to the published configuration until ctx ends,
// reporting each round to h. The API server rereads the file by itself
// (--encryption-provider-config-automatic-reload).
//
// The duty starts with the node, before init has started the API server
// and again after a reboot: until it has read the Secret once (present or
// not), an API server that does not serve yet, or that refuses admin.conf
// (init binds its group kubeadm:cluster-admins only after /readyz; RBAC's
// caches fill after a restart), is a warning, asked again every second,
// not a failure.
func RunSync(ctx context.Context, o SyncOptions, h Health) error {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	read := false
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, found, res, err := SyncOnce(rctx, o)
		cancel()
		wait := o.Interval
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !read && !found && apiconn.Unreachable(err):
			h.Warn("waiting for the API server to serve: %v", err)
			wait = min(time.Second, o.Interval)
		case err != nil && !read && !found && apiconn.NotAuthorizedYet(err):
			h.Warn("waiting for the API server to authorize admin.conf (init binds its group %s right after /readyz): %v", manifests.ClusterAdminsGroup, err)
			wait = min(time.Second, o.Interval)
		case err != nil:
			read = read || found // the Secret was read; what it holds was refused
			h.Fail(err)
		case !found:
			read = true
			h.OK("no key rotation published (kube-system/%s absent): %s is init's", StateSecret, o.File)
		default:
			read = true
			if res != fsutil.Unchanged {
				o.Log.Info("wrote the published encryption configuration", "file", o.File, "step", st.Step, "key", st.Key, "hash", Hash(st.Config))
			}
			h.OK("%s matches kube-system/%s (rotation step %s, key %s, %s)", o.File, StateSecret, st.Step, st.Key, Hash(st.Config))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}
