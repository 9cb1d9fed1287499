package node

import (
	"context"
	"fmt"
	"time"

	"github.com/kubeforge/kubeforge/components/containerd/registries"
	"github.com/kubeforge/kubeforge/config"
)

// CheckConfig checks the files the node service reads when it starts
// (today /etc/kubeforge/registries.yaml), so that Start and Restart refuse
// a broken one before they change anything. The error names the file, the
// field and the fix.
func CheckConfig(p config.Paths) error {
	if _, err := registries.Load(registries.DefaultFile, p.Host(registries.DefaultFile), p.Host); err != nil {
		return fmt.Errorf("%w\n(the node service was left as it was: fix the file and run the command again)", err)
	}
	return nil
}

// Restart stops the node service and starts it again, so that it reads its
// configuration anew (registries.yaml, the node record); containers keep
// running, as with `systemctl restart`. A configuration the node service
// would refuse is refused first, and a running service is left alone.
func Restart(ctx context.Context, p config.Paths, o StartOptions) error {
	if err := CheckConfig(p); err != nil {
		return err
	}
	if o.CRISocket == "" {
		if st, err := ReadState(p); err == nil && st.ExternalRuntime {
			o.CRISocket = st.CRISocket
		}
	}
	begin := time.Now()
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := Stop(stopCtx, p)
	cancel()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	o.Progress.Done(Phase, "stop", "", begin, "Stopped the node service (containers keep running)")
	return Start(ctx, p, o)
}
