package testbed

import (
	"context"
	"path/filepath"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/kubeforge/kubeforge/internal/testutil"
)

// Helpers for upgrades on a testbed, shared by the upgrade end-to-end tests
// and the bench's upgrade part: the bed starts from an older kubeforge
// (testbed.New(t, WithBinary(old)), old from testutil.OldKubeforge) and the
// build under test is installed next to it.

// InstallBinary copies a kubeforge executable into the testbed as
// bin/NAME, visible in every node at the same path, and returns that path
// and the version it reports.
func (tb *Testbed) InstallBinary(src, name string) (path, version string) {
	tb.t.Helper()
	path = filepath.Join(tb.Dir, "bin", name)
	if err := CopyFile(src, path, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	version, err := testutil.KubeforgeVersion(path)
	if err != nil {
		tb.t.Fatal(err)
	}
	return path, version
}

// WatchAPIGaps asks the API server's /readyz every interval (a second at
// most per request) until the returned function is called; that returns
// the longest time the API did not answer ok.
func WatchAPIGaps(api kubernetes.Interface, interval time.Duration) (stop func() time.Duration) {
	done := make(chan struct{})
	result := make(chan time.Duration, 1)
	go func() {
		var longest time.Duration
		var downSince time.Time
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := api.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			cancel()
			now := time.Now()
			switch {
			case err != nil && downSince.IsZero():
				downSince = now
			case err == nil && !downSince.IsZero():
				longest = max(longest, now.Sub(downSince))
				downSince = time.Time{}
			}
			select {
			case <-done:
				if !downSince.IsZero() {
					longest = max(longest, time.Since(downSince))
				}
				result <- longest
				return
			case <-time.After(interval):
			}
		}
	}()
	return func() time.Duration { close(done); return <-result }
}
