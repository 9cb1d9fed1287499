#!/usr/bin/env bash
# Builds kube-bench (github.com/aquasecurity/kube-bench, the CIS Kubernetes
# Benchmark runner) at a pinned version from its Go module, once, into a
# cache directory, and prints that directory. It holds:
#
#   kube-bench   the static binary
#   cfg/         kube-bench's own benchmark definitions (cis-1.12, …) of that
#                version, as the module ships them
#
# kube-bench's code and benchmark files are not part of this repository:
# they come from the Go module proxy by version. kubeforge's own settings
# for it (which processes and files are kubeforge's) are in
# testdata/kube-bench/config.yaml; test/e2e/cis_test.go runs it.
#
#   ./hack/kube-bench.sh                 # build if needed, print the directory
#   KUBE_BENCH_DIR=/var/cache/x ./hack/kube-bench.sh
#
# The proxy refuses kube-bench's version list (so `go install …@latest`
# fails); a named version works: `go mod download` it and build it in a
# writable copy of the module, with its own go.mod.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
version="${KUBE_BENCH_VERSION:-v0.16.0}"
out="${KUBE_BENCH_DIR:-$PWD/build/kube-bench-$version}"
module=github.com/aquasecurity/kube-bench

ready() { [ -x "$out/kube-bench" ] && [ -d "$out/cfg" ] && [ "$(cat "$out/.version" 2>/dev/null)" = "$version" ]; }
if ready; then
	echo "$out"
	exit 0
fi

mkdir -p "$(dirname "$out")"
# One build at a time (two test processes may ask at once).
exec 9>"$out.lock"
flock 9
if ready; then
	echo "$out"
	exit 0
fi

start=$SECONDS
src=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -f "$src/go.mod" ]; then
	echo "kube-bench.sh: go mod download $module@$version gave no module directory" >&2
	exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kube-bench-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$src" "$tmp/src"
chmod -R u+w "$tmp/src"
(
	cd "$tmp/src"
	export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
	go mod download
	go build -trimpath -ldflags "-s -w -X $module/cmd.KubeBenchVersion=$version" -o "$tmp/kube-bench" .
) >&2
mkdir -p "$tmp/out"
mv "$tmp/kube-bench" "$tmp/out/kube-bench"
cp -r "$src/cfg" "$tmp/out/cfg"
chmod -R u+w,go+rX "$tmp/out"
echo "$version" >"$tmp/out/.version"
rm -rf "$out"
mv "$tmp/out" "$out"
echo "kube-bench.sh: built $module@$version into $out in $((SECONDS - start))s" >&2
echo "$out"
