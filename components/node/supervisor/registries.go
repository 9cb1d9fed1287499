package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kubeforge/kubeforge/components/containerd"
	"github.com/kubeforge/kubeforge/components/containerd/registries"
	"github.com/kubeforge/kubeforge/components/image"
	"github.com/kubeforge/kubeforge/components/node"
	"github.com/kubeforge/kubeforge/internal/fsutil"
)

// lastGoodRegistries is a copy of the last registries.yaml that passed the
// checks: a node service started on a broken file keeps the registry
// configuration it had, and says why in `kubeforge node status`.
func (s *supervisor) lastGoodRegistries() string {
	return filepath.Join(s.p.StateDir, "registries.last-good.yaml")
}

// applyRegistries sets the registry part of the containerd options: pulls
// allowed unless init or join recorded the node as air-gapped, and the
// mirrors, TLS and credentials of registries.yaml. A file that fails its
// checks does not stop the node: the last good copy is used instead.
func (s *supervisor) applyRegistries(o *containerd.Options) {
	info, _ := node.ReadInfo(s.p) // none yet on a node being set up: pulls allowed
	o.AllowRegistryPulls = !info.AirGapped
	o.RegistriesSource = registries.DefaultFile
	cfg, err := registries.Load(registries.DefaultFile, s.p.Host(registries.DefaultFile), s.p.Host)
	regErr := ""
	if err != nil {
		regErr = err.Error()
		s.log.Error("the registry configuration is refused; using the last good one", "file", registries.DefaultFile, "err", err)
		s.out.Warnf(node.Phase, "%v; the node keeps its last good registry configuration (%s). Fix the file, then `kubeforge node restart`",
			err, s.lastGoodRegistries())
		cfg, err = registries.Load(s.lastGoodRegistries(), s.p.Host(s.lastGoodRegistries()), s.p.Host)
		if err != nil {
			s.log.Error("the last good registry configuration is not usable either", "err", err)
			cfg = nil
		}
	} else {
		s.keepLastGood()
	}
	o.Registries = cfg
	summary := describeRegistries(o.AllowRegistryPulls, cfg)
	s.update(func(st *node.State) { st.Registries, st.RegistriesError = summary, regErr })
	s.log.Info("registry configuration", "pulls", summary)
}

// keepLastGood copies registries.yaml (or its absence) aside.
func (s *supervisor) keepLastGood() {
	b, err := os.ReadFile(s.p.Host(registries.DefaultFile))
	if err != nil {
		_ = os.Remove(s.p.Host(s.lastGoodRegistries()))
		return
	}
	if _, err := fsutil.WriteFile(s.p.Host(s.lastGoodRegistries()), b, 0o600); err != nil {
		s.log.Warn("cannot keep a copy of the registry configuration", "err", err)
	}
}

// describeRegistries is the one-line summary `node status` shows.
func describeRegistries(allowed bool, c *registries.Config) string {
	if !allowed {
		return "air-gapped: no image is pulled"
	}
	if c == nil || len(c.Mirrors)+len(c.Configs) == 0 {
		return "pulls from registries (no " + registries.DefaultFile + ")"
	}
	var names []string
	for n := range c.Mirrors {
		names = append(names, "mirror "+n)
	}
	for n, rc := range c.Configs {
		var what []string
		if rc.Auth != nil {
			what = append(what, "auth")
		}
		if rc.TLS != nil {
			what = append(what, "tls")
		}
		names = append(names, n+" ("+strings.Join(what, ", ")+")")
	}
	sort.Strings(names)
	return "pulls from registries: " + strings.Join(names, "; ")
}

// refreshAirGap rewrites the registry hosts tree when init or join recorded
// an air-gap choice after containerd started (init starts the node service
// before its kubelet phase writes the node record). containerd's CRI reads
// the hosts tree on every pull, so this takes effect without a restart.
func (s *supervisor) refreshAirGap(o containerd.Options) {
	info, err := node.ReadInfo(s.p)
	if err != nil || info.AirGapped == !o.AllowRegistryPulls {
		return
	}
	o.AllowRegistryPulls = !info.AirGapped
	if err := containerd.WriteRegistryHosts(s.p, o); err != nil {
		s.log.Error("cannot rewrite the registry hosts", "err", err)
		s.out.Warnf(node.Phase, "Cannot apply the air-gap choice to containerd's registry hosts: %v; run `kubeforge node restart`", err)
		return
	}
	summary := describeRegistries(o.AllowRegistryPulls, o.Registries)
	s.update(func(st *node.State) { st.Registries = summary })
	s.log.Info("registry configuration changed by the node record", "pulls", summary)
	if o.AllowRegistryPulls && o.Registries != nil && len(o.Registries.Configs) > 0 {
		s.out.Warnf(node.Phase, "Registry credentials from %s apply after `kubeforge node restart`", registries.DefaultFile)
	}
}

// importArchives imports what was dropped into the image import directory.
// A bad archive is reported, never fatal.
func (s *supervisor) importArchives(ctx context.Context) {
	begin := time.Now()
	res, err := image.ImportFromDir(ctx, s.p, s.p.Host(s.socket), io.Discard)
	var problems []string
	if err != nil {
		problems = append(problems, err.Error())
	}
	for name, why := range res.Failed {
		problems = append(problems, name+": "+why)
	}
	sort.Strings(problems)
	s.update(func(st *node.State) {
		st.ImportedArchives = res.Imported + res.Skipped
		st.ImportError = strings.Join(problems, "; ")
	})
	if res.Imported > 0 {
		s.out.Done(node.Phase, "import", image.ImportDir(s.p), begin, "Imported %d image archive(s) from %s", res.Imported, image.ImportDir(s.p))
	}
	if len(problems) > 0 {
		msg := fmt.Sprintf("Importing image archives from %s: %s", image.ImportDir(s.p), strings.Join(problems, "; "))
		s.log.Error(msg)
		s.out.Warnf(node.Phase, "%s", msg)
	}
}
