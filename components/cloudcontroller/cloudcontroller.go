// Package cloudcontroller runs kubeforge's bare-metal cloud controller
// manager: the upstream cloud-controller-manager (k8s.io/cloud-provider's
// app, with its service and cloud-node controllers, leader election and
// flags) with the "kubeforge" cloud provider registered in it.
//
// The provider gives a LoadBalancer Service an address from the configured
// pool, or else the nodes' own InternalIPs (as k3s's ServiceLB does);
// kube-proxy routes traffic for a Service's status.loadBalancer.ingress
// addresses on every node. A pool address is announced on the node network
// by the speaker of one node (components/lbspeaker, a node-service duty),
// as MetalLB's layer-2 mode does.
package cloudcontroller

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/util/wait"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	cloudcontrollerconfig "k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"

	"github.com/kubeforge/kubeforge/components/internal/k8srun"
)

// Main runs the cloud controller manager with the upstream
// cloud-controller-manager flags (args excludes the program name) and
// returns its exit code.
func Main(args []string) int {
	opts, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cloud-controller-manager: %v\n", err)
		return 1
	}
	// The provider registry is the framework's (process-wide); this
	// process runs only this component.
	cloudprovider.RegisterCloudProvider(ProviderName, func(r io.Reader) (cloudprovider.Interface, error) {
		cfg, err := ParseConfig(r)
		if err != nil {
			return nil, err
		}
		return New(cfg)
	})
	cmd := app.NewCloudControllerManagerCommand(opts, initCloud, controllers(), names.CCMControllerAliases(), cliflag.NamedFlagSets{}, wait.NeverStop)
	return k8srun.Run(cmd, args)
}

// controllers are the framework's controllers that apply to bare metal:
// the service controller (LoadBalancer), the cloud-node controller (node
// addresses and provider IDs) and the node lifecycle one. The route
// controller is not offered: the pod network agent makes the routes.
func controllers() map[string]app.ControllerInitFuncConstructor {
	out := map[string]app.ControllerInitFuncConstructor{}
	for _, n := range []string{names.ServiceLBController, names.CloudNodeController, names.CloudNodeLifecycleController} {
		out[n] = app.DefaultInitFuncConstructors[n]
	}
	return out
}

// initCloud builds the provider named by --cloud-provider from
// --cloud-config, as upstream's sample main does, but returns the error
// to the log and exits instead of continuing without a provider.
//
// It exits with klog.Fatalf because upstream's InitCloudFunc has no error
// result: the command's RunE calls it once the flags are parsed and
// logging is set up, and Run calls a nil provider's Initialize (a panic).
// Building the provider in a wrapper before RunE instead would do it
// before --version and the logging flags apply. The process is `kubeforge
// component cloud-controller-manager`, which runs this component alone
// (a component's Main may exit, as the upstream program does).
func initCloud(c *cloudcontrollerconfig.CompletedConfig) cloudprovider.Interface {
	shared := c.ComponentConfig.KubeCloudShared.CloudProvider
	cloud, err := cloudprovider.InitCloudProvider(shared.Name, shared.CloudConfigFile)
	if err != nil {
		klog.Fatalf("cloud provider %q (config %q): %v", shared.Name, shared.CloudConfigFile, err)
	}
	if cloud == nil {
		klog.Fatalf("cloud provider %q is unknown: use --cloud-provider=%s", shared.Name, ProviderName)
	}
	return cloud
}
