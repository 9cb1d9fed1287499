package bench

import (
	"os"
	"testing"

	"github.com/kubeforge/kubeforge/internal/testutil"
)

// TestMain removes the kubeforge binaries the tests built when they end.
func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
