// Package metricsserver runs metrics-server, the resource metrics API
// (metrics.k8s.io) behind `kubectl top` and the HorizontalPodAutoscaler,
// compiled in from sigs.k8s.io/metrics-server (v0.8.0) with its upstream
// flags.
//
// metrics-server v0.8.0 was built against Kubernetes 0.33 libraries;
// kubeforge links it with the 0.37 ones. Since 0.35 the API types name
// their OpenAPI models themselves (OpenAPIModelName: "io.k8s.metrics.pkg.
// apis.metrics.v1beta1.NodeMetrics"), while metrics-server's generated
// definitions are keyed by Go path ("k8s.io/metrics/pkg/apis/metrics/
// v1beta1.NodeMetrics"): upstream's command exits at start with "unable to
// get openapi models: cannot find model definition for io.k8s.metrics...".
// Run therefore does what upstream's command does (same options, same
// steps) and only adds each definition under its model name as well.
package metricsserver

import (
	goflag "flag"
	"fmt"
	"os"
	"runtime"

	"github.com/spf13/cobra"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/pkg/version"
	"k8s.io/component-base/logs"
	"k8s.io/kube-openapi/pkg/common"
	openapiutil "k8s.io/kube-openapi/pkg/util"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app/options"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs metrics-server with its upstream flags (args excludes the
// program name) and returns its exit code.
func Main(args []string) int {
	// As upstream's main: use every CPU unless GOMAXPROCS says otherwise.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU())
	}
	return k8srun.Run(command(genericapiserver.SetupSignalHandler()), args)
}

// command is upstream's NewMetricsServerCommand with the OpenAPI fix.
func command(stopCh <-chan struct{}) *cobra.Command {
	opts := options.NewOptions()
	cmd := &cobra.Command{
		Use:   "metrics-server",
		Short: "Launch metrics-server",
		RunE: func(*cobra.Command, []string) error {
			return run(opts, stopCh)
		},
	}
	nfs := opts.Flags()
	local := goflag.NewFlagSet("metrics-server", goflag.ExitOnError)
	logs.AddGoFlags(local)
	nfs.FlagSet("logging").AddGoFlagSet(local)
	for _, f := range nfs.FlagSets {
		cmd.Flags().AddFlagSet(f)
	}
	return cmd
}

// run is upstream's runCommand plus modelNamed.
func run(o *options.Options, stopCh <-chan struct{}) error {
	if o.ShowVersion {
		fmt.Println(version.Get().GitVersion)
		return nil
	}
	if errs := o.Validate(); len(errs) > 0 {
		return errs[0]
	}
	cfg, err := o.ServerConfig()
	if err != nil {
		return err
	}
	if c := cfg.Apiserver.OpenAPIConfig; c != nil {
		c.GetDefinitions, c.Definitions = modelNamed(c.GetDefinitions), aliasModelNames(c.Definitions)
	}
	if c := cfg.Apiserver.OpenAPIV3Config; c != nil {
		// DefaultOpenAPIV3Config precomputes Definitions, which the
		// builder prefers to GetDefinitions: alias both.
		c.GetDefinitions, c.Definitions = modelNamed(c.GetDefinitions), aliasModelNames(c.Definitions)
	}
	s, err := cfg.Complete()
	if err != nil {
		return err
	}
	return s.RunUntil(stopCh)
}

// modelNamed adds every definition under its OpenAPI model name
// ("io.k8s.…", what the 0.35+ types' OpenAPIModelName returns) besides
// its Go path key ("k8s.io/…", what metrics-server's generated code uses).
func modelNamed(get common.GetOpenAPIDefinitions) common.GetOpenAPIDefinitions {
	if get == nil {
		return nil
	}
	return func(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
		return aliasModelNames(get(ref))
	}
}

// aliasModelNames is defs plus each definition under its model name.
func aliasModelNames(defs map[string]common.OpenAPIDefinition) map[string]common.OpenAPIDefinition {
	if defs == nil {
		return nil
	}
	out := make(map[string]common.OpenAPIDefinition, 2*len(defs))
	for name, d := range defs {
		if alias := openapiutil.ToRESTFriendlyName(name); alias != name {
			out[alias] = d
		}
	}
	for name, d := range defs {
		out[name] = d // a real definition wins over an alias
	}
	return out
}
