package bench

import (
	"fmt"
	"math"
)

// PullResult is the image pull measurement (part pull, pull_test.go): a
// single node (default settings) pulls an image of random, incompressible
// layers from a real OCI registry on the test bridge (go-containerregistry's,
// TLS with a test CA, basic auth with the node's credentials from
// /etc/kubeforge/registries.yaml), through the CRI of its containerd as
// `crictl pull` does (the image removed between pulls), and as the image
// of a new pod.
type PullResult struct {
	Load LoadSample `json:"load"`
	// Image is the image the CRI pulls, ImageBytes its size on the wire
	// (config and layers as the registry stores them), Layers its layers.
	Image      string `json:"image"`
	ImageBytes int64  `json:"image_bytes"`
	Layers     int    `json:"layers"`
	// PullSeconds is each CRI PullImage (pulled and unpacked);
	// LayersFetched how many of the image's layers the registry served the
	// node during it (all of them, or the pull found some on the node).
	PullSeconds   []float64 `json:"pull_seconds"`
	LayersFetched []int     `json:"layers_fetched"`
	// PodImages are the pods' images: each another image of the same size,
	// not on the node before. PodRunningSeconds is from the pod's creation
	// to its container Running (a watch from the bench); KubeletPullSeconds
	// the pull as the kubelet's Pulled event reports it.
	PodImages          []string  `json:"pod_images"`
	PodRunningSeconds  []float64 `json:"pod_running_seconds"`
	KubeletPullSeconds []float64 `json:"kubelet_pull_seconds"`
	Errors             []string  `json:"errors,omitempty"`
}

// PullFigures are the pull rows.
func PullFigures(p *PullResult) []Figure {
	if p == nil {
		return nil
	}
	s := fmt.Sprintf("image pull from a registry on the test bridge (TLS, basic auth; a %.1f MB image, %d layers: busybox and random bytes; on a single node)",
		float64(p.ImageBytes)/1e6, p.Layers)
	nan := func(v []float64) []float64 {
		if len(v) == 0 {
			return []float64{math.NaN()}
		}
		return v
	}
	var rate []float64
	for _, sec := range p.PullSeconds {
		if sec > 0 && p.ImageBytes > 0 {
			rate = append(rate, float64(p.ImageBytes)/1e6/sec)
		}
	}
	return []Figure{
		NewFigure(s, "pull.50mb.seconds", "CRI PullImage (as `crictl pull`; the image removed between pulls)", "s", nan(p.PullSeconds), "failed"),
		NewFigure(s, "pull.50mb.mb_per_second", "the same as throughput", "MB/s", nan(rate), "failed"),
		NewFigure(s, "pull.50mb.pod_running", "pod created → its container Running (image not on the node)", "s", nan(p.PodRunningSeconds), "failed"),
		NewFigure(s, "pull.50mb.kubelet_pull", "  of which the pull (the kubelet's Pulled event)", "s", nan(p.KubeletPullSeconds), "no Pulled event read"),
	}
}
