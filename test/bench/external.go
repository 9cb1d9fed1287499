package bench

// ExternalRun is a single-node init on the host's containerd (Debian's
// 1.6, started in the node) with --cri-socket, next to the bundled one.
type ExternalRun struct {
	Run      int        `json:"run"`
	Load     LoadSample `json:"load"`
	Runtime  string     `json:"runtime"`
	InitWall float64    `json:"init_wall_seconds"`
	// Milestones are seconds from init start (see Watcher checks).
	Milestones map[string]float64 `json:"milestones"`
	Errors     []string           `json:"errors,omitempty"`
}
