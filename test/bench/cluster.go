package bench

// ClusterResult is the `kubeforge cluster` measurement (cluster_test.go):
// `cluster create --workers 2` from start to three nodes Ready and CoreDNS
// answering, the idle memory of that cluster, and `cluster delete`.
type ClusterResult struct {
	// CreateSeconds is each run's `cluster create` wall time.
	CreateSeconds []float64 `json:"create_seconds"`
	// DeleteSeconds is each run's `cluster delete` wall time (host checked clean).
	DeleteSeconds []float64 `json:"delete_seconds"`
	// Idle memory of the three nodes' processes, summed, after IdleSeconds.
	IdleSeconds float64   `json:"idle_seconds"`
	PSSMiB      []float64 `json:"pss_mib"`
	RSSMiB      []float64 `json:"rss_mib"`
	Outputs     []string  `json:"create_outputs,omitempty"`
	Errors      []string  `json:"errors,omitempty"`
}
