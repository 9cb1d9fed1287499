package gctune

import (
	"runtime/debug"
	"testing"
	"time"
)

func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"no GOGC: switch after the grace", nil, true},
		{"GOGC set: left alone", map[string]string{"GOGC": "100"}, false},
		{"GOGC set empty: still the user's", map[string]string{"GOGC": ""}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var after time.Duration
			scheduled := false
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			timer := func(d time.Duration, f func()) *time.Timer {
				after, scheduled = d, true
				return nil
			}
			got := schedule(lookup, timer, func() {})
			if got != tc.want || scheduled != tc.want {
				t.Fatalf("schedule = %v (timer set: %v), want %v", got, scheduled, tc.want)
			}
			if tc.want && after != StartupGrace {
				t.Errorf("switch after %s, want %s", after, StartupGrace)
			}
		})
	}
}

func TestApply(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	apply()
	if got := debug.SetGCPercent(100); got != SteadyPercent {
		t.Errorf("GC percent after apply = %d, want %d", got, SteadyPercent)
	}
}
