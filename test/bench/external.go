package bench

// ExternalRun is a single-node init on the host's containerd (Debian's
// 1.6, or containerd v2 as kubeforge bundles it, started in the node as a
// host's own) with --cri-socket, next to the bundled one.
type ExternalRun struct {
	Run int `json:"run"`
	// Line is the containerd line: "1.6" or "2".
	Line     string     `json:"line,omitempty"`
	Load     LoadSample `json:"load"`
	Runtime  string     `json:"runtime"`
	InitWall float64    `json:"init_wall_seconds"`
	// Milestones are seconds from init start (see Watcher checks).
	Milestones map[string]float64 `json:"milestones"`
	Errors     []string           `json:"errors,omitempty"`
}
