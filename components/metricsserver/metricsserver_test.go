package metricsserver

import (
	"net"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/kube-openapi/pkg/builder3"
	"k8s.io/kube-openapi/pkg/validation/spec"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app/options"
	"sigs.k8s.io/metrics-server/pkg/api"
	generatedopenapi "sigs.k8s.io/metrics-server/pkg/api/generated/openapi"

	"github.com/kubeforge/kubeforge/config"
	"github.com/kubeforge/kubeforge/manifests"
)

// The arguments kubeforge's metrics-server Deployment passes are accepted
// by metrics-server's own flag parsing and validation (a 10 s resolution
// with the default 10 s kubelet timeout, for one, makes it exit at start).
func TestDeploymentArgsValidate(t *testing.T) {
	c := config.New()
	c.Init.NodeRegistration.Name = "n1"
	c.Init.LocalAPIEndpoint.AdvertiseAddress = "10.201.0.2"
	if err := c.Complete(config.HostFacts{Hostname: "n1", CgroupV1: true,
		DefaultAddress: func() (net.IP, error) { return net.ParseIP("10.201.0.2"), nil }}); err != nil {
		t.Fatal(err)
	}
	for _, o := range manifests.MetricsServerObjects(c, manifests.MetricsServerTLS{}) {
		dep, ok := o.(*appsv1.Deployment)
		if !ok {
			continue
		}
		opts := options.NewOptions()
		fs := opts.Flags()
		all := fs.FlagSet("metrics-server")
		for _, f := range fs.FlagSets {
			all.AddFlagSet(f)
		}
		if err := all.Parse(dep.Spec.Template.Spec.Containers[0].Args); err != nil {
			t.Fatalf("metrics-server refuses the Deployment's args: %v", err)
		}
		if errs := opts.Validate(); len(errs) > 0 {
			t.Fatalf("metrics-server's validation refuses the Deployment's args: %v", errs)
		}
		if opts.KubeletClient.InsecureKubeletTLS || opts.KubeletClient.KubeletCAFile == "" {
			t.Errorf("kubelet TLS not verified: insecure %v, CA %q", opts.KubeletClient.InsecureKubeletTLS, opts.KubeletClient.KubeletCAFile)
		}
		return
	}
	t.Fatal("no Deployment")
}

// Every metrics.k8s.io type's OpenAPI model name (what the API server
// machinery of Kubernetes 0.37 looks up) has a definition once modelNamed
// wraps metrics-server's generated ones (keyed by Go path): without it
// metrics-server exits at start with "cannot find model definition".
func TestModelNamedDefinitions(t *testing.T) {
	ref := func(path string) spec.Ref { return spec.MustCreateRef("#/definitions/" + path) }
	plain := generatedopenapi.GetOpenAPIDefinitions(ref)
	defs := modelNamed(generatedopenapi.GetOpenAPIDefinitions)(ref)
	for _, typ := range []interface{ OpenAPIModelName() string }{
		metricsv1beta1.NodeMetrics{}, metricsv1beta1.NodeMetricsList{}, metricsv1beta1.PodMetrics{},
		metricsv1beta1.PodMetricsList{}, metricsv1beta1.ContainerMetrics{},
	} {
		name := typ.OpenAPIModelName()
		if _, ok := plain[name]; ok {
			t.Logf("%s: metrics-server's own definitions have it now; modelNamed may go", name)
		}
		if _, ok := defs[name]; !ok {
			t.Errorf("no definition for %s", name)
		}
	}
	for k := range plain {
		if _, ok := defs[k]; !ok {
			t.Errorf("modelNamed lost %s", k)
		}
	}
}

// The failure itself: building the metrics.k8s.io OpenAPI models as the
// generic API server does (DefaultOpenAPIV3Config precomputes Definitions)
// fails on upstream's configuration and works once aliased.
func TestOpenAPIModelsBuild(t *testing.T) {
	name := metricsv1beta1.NodeMetrics{}.OpenAPIModelName()
	cfg := genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, openapinamer.NewDefinitionNamer(api.Scheme))
	if _, err := builder3.BuildOpenAPIDefinitionsForResources(cfg, name); err == nil {
		t.Log("upstream's definitions build without the aliases now: the workaround may go")
	}
	cfg.GetDefinitions, cfg.Definitions = modelNamed(cfg.GetDefinitions), aliasModelNames(cfg.Definitions)
	if _, err := builder3.BuildOpenAPIDefinitionsForResources(cfg, name); err != nil {
		t.Fatalf("with the aliases: %v", err)
	}
}
