package logstore

import (
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/kubeforge/kubeforge/components/logstore/storeflags"
)

// TestStoreFlagNames checks that init moved every flag VictoriaLogs
// declares off the standard flag set (in this test binary only
// VictoriaLogs, the standard library and the testing package declare
// flags), and that storeflags.Names names no flag that no longer exists.
func TestStoreFlagNames(t *testing.T) {
	if !slices.IsSorted(storeflags.Names) {
		t.Fatal("storeflags.Names is not sorted")
	}
	var left []string
	flag.CommandLine.VisitAll(func(f *flag.Flag) {
		if !strings.HasPrefix(f.Name, "test.") {
			left = append(left, f.Name)
		}
	})
	if len(left) > 0 {
		t.Errorf("flags left on the standard flag set (add them to storeflags.Names): %q", left)
	}
	for _, name := range storeflags.Names {
		if flags.Lookup(name) == nil {
			t.Errorf("storeflags.Names lists %q, which VictoriaLogs no longer declares", name)
		}
	}
	for _, name := range []string{"storageDataPath", "retentionPeriod", "httpListenAddr", "version"} {
		if flags.Lookup(name) == nil {
			t.Errorf("the store's flag set lacks -%s", name)
		}
	}
}
