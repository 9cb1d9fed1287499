package bench

// UpgradeResult is the upgrade measurement (upgrade_test.go): a control-plane
// node and a worker made by an older kubeforge (the same source with another
// version stamp, or $KUBEFORGE_UPGRADE_FROM) upgraded to the build under test
// the way the README says.
type UpgradeResult struct {
	Load LoadSample `json:"load"`
	From string     `json:"from_version"`
	To   string     `json:"to_version"`
	// ApplySeconds is the first `upgrade apply`'s wall time (on the
	// control-plane node, from the bench); APIGapSeconds the longest time
	// the API server's /readyz, asked every 100 ms from the bench through
	// the node's address, did not answer ok during it.
	ApplySeconds  float64 `json:"apply_seconds"`
	APIGapSeconds float64 `json:"api_unavailable_max_seconds"`
	// NodeSeconds is the worker's `upgrade node`; AddonsSeconds the second
	// `upgrade apply` (the addons, once every node runs the new version).
	NodeSeconds   float64 `json:"node_seconds"`
	AddonsSeconds float64 `json:"addons_apply_seconds"`
	// ApplyPhases are the first apply's phase-done events.
	ApplyPhases []PhaseTime `json:"apply_phases"`
	Errors      []string    `json:"errors,omitempty"`
}
