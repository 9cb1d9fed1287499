#!/usr/bin/env bash
# Runs every Go fuzz target of the repository (each `func FuzzXxx(f
# *testing.F)` in a fuzz_test.go), one after another, for FUZZTIME each
# (default 30s). An optional argument is a regexp that selects targets by
# name. A failing input is written by go test to the package's
# testdata/fuzz/FuzzXxx/ directory: commit it, and `go test` replays it as a
# regression test from then on (go test also replays the seed corpora).
#
#   ./hack/fuzz.sh                       # every target, 30s each
#   FUZZTIME=5s ./hack/fuzz.sh           # what hack/test.sh runs
#   FUZZTIME=10m ./hack/fuzz.sh Decode   # one target, longer
#
# FUZZMINIMIZETIME (default 1s) bounds go's minimization of each input.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
export CGO_ENABLED=0
FUZZTIME="${FUZZTIME:-30s}"
# Go minimizes every new interesting input (by default for up to 60s),
# which would take most of a short run; a failing input is minimized too.
FUZZMINIMIZETIME="${FUZZMINIMIZETIME:-1s}"
select="${1:-.}"

# "dir name" per target, from the sources (not from go list: cheap, and
# the targets need no build to be found).
targets=$(grep -rHo --include=fuzz_test.go --exclude-dir=build --exclude-dir=bin --exclude-dir=.git \
	-E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
	sed -E 's|^\./(.*)/fuzz_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*|\1 \2|' | sort)
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

# Go's fuzzing coordinator (up to Go 1.26) can end a run that found
# nothing with a bare "context deadline exceeded" failure when -fuzztime
# expires while a worker is busy (golang/go#75804, fixed in Go 1.27). Such
# a run wrote no failing input; it is reported and not counted as a failure.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
inputs() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
failed=()
ran=0
start=$SECONDS
while read -r dir name; do
	[[ "$name" =~ $select ]] || continue
	ran=$((ran + 1))
	t0=$SECONDS
	corpus="$dir/testdata/fuzz/$name"
	before=$(inputs "$corpus")
	echo "=== fuzz $name ./$dir/ ($FUZZTIME)"
	if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "./$dir/" 2>&1 | tee "$log"; then
		echo "--- ok   $name ($((SECONDS - t0))s)"
	elif [ "$(inputs "$corpus")" -eq "$before" ] &&
		grep -qx '    context deadline exceeded' "$log" && ! grep -q -e 'Failing input written' -e '^panic:' -e 'failure while testing seed corpus' "$log"; then
		echo "--- ok   $name ($((SECONDS - t0))s; ended by the fuzzing coordinator's deadline race, golang/go#75804, no failing input)"
	else
		echo "--- FAIL $name ($((SECONDS - t0))s): a failing input is written under $corpus/" >&2
		failed+=("$dir $name")
	fi
done <<<"$targets"

echo "fuzz: $ran targets in $((SECONDS - start))s"
if [ "$ran" -eq 0 ]; then
	echo "fuzz: no target matches $select" >&2
	exit 1
fi
if [ "${#failed[@]}" -gt 0 ]; then
	printf 'fuzz: FAILED: %s\n' "${failed[@]}" >&2
	exit 1
fi
