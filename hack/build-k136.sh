#!/usr/bin/env bash
# Builds bin/kubeforge-1.36: this source against the previous Kubernetes minor (k8s.io/kubernetes v1.36.3
# and its k8s.io/* staging modules at v0.36.3), to test upgrades from a v1.36 cluster
# (`make upgrade-from-1.36`, README "Upgrading from v1.36"). The main build is untouched: the module set is
# generated under build/k136/ from go.mod (go's -modfile; go.mod and go.sum are not changed), every other
# module (etcd, containerd, CoreDNS, grpc, ...) stays at the version go.mod selects unless v1.36 needs a newer
# one, and the few version-dependent sources are chosen by the build tag k8s136.
#
#   hack/build-k136.sh            # or: make build-1.36
#
# Log of the build: build/k136/build.log. A cold build takes 8+ minutes (the k8s.io packages are new to the
# build cache) and adds some GB to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH CGO_ENABLED=0
GO=${GO:-go}
KUBE=v1.36.3           # also in internal/version/kubernetes_k136.go
STAGING=v0.${KUBE#v1.} # v0.36.3
# containerd v2.4's CRI plugin is built on v1.37's k8s.io/cri-api, which renamed the Signal enum values
# (Signal_SIGTERM -> Signal_SIGNAL_SIGTERM) that v1.36's kubelet uses: one k8s.io/cri-api cannot serve
# both. containerd v2.3.7 is built on k8s.io/cri-api v0.36.3: the v1.36 build bundles it.
CONTAINERD=v2.3.7      # also in internal/version/kubernetes_k136.go
CONTAINERD_API=v1.11.1 # the one containerd v2.3.7 is built on (v1.12 adds methods to its sandbox service)
dir=build/k136
out=bin/kubeforge-1.36
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo v0.1.0-dev)}-k8s${KUBE#v}
mkdir -p "$dir" bin

for v in "$KUBE" "$CONTAINERD"; do
  grep -q "\"$v\"" internal/version/kubernetes_k136.go || {
    echo "build-k136: internal/version/kubernetes_k136.go does not say $v: make them agree" >&2; exit 1; }
done

# 1. The module set: go.mod with k8s.io/kubernetes at $KUBE and every k8s.io staging module (the replaces
#    in go.mod, and their requires) at $STAGING; go mod tidy then settles the rest against the source.
cp go.mod "$dir/base.mod"
cp go.sum "$dir/base.sum"
edits=(-require=k8s.io/kubernetes@"$KUBE" -require=github.com/containerd/containerd/v2@"$CONTAINERD"
  -require=github.com/containerd/containerd/api@"$CONTAINERD_API"
  -droprequire=github.com/container-storage-interface/spec)
# (go.mod's CSI spec is v1.37's; v1.36's CSI client uses fields the newer one dropped: tidy re-adds the
# version the v1.36 module graph asks for)
# the staging modules: those go.mod replaces by a k8s.io/X v0.37.x version
for m in $(sed -n 's/^replace \(k8s\.io\/[^ ]*\) => k8s\.io\/[^ ]* v0\.[0-9.]*$/\1/p' go.mod); do
  edits+=(-replace="$m=$m@$STAGING")
  # required at a release (not the v0.0.0 placeholder): require the v1.36 one
  if grep -qE "^[[:space:]]$m v0\.[1-9]" go.mod; then edits+=(-require="$m@$STAGING"); fi
done
$GO mod edit "${edits[@]}" "$dir/base.mod"
echo "build-k136: go mod tidy -modfile $dir/base.mod (k8s.io/kubernetes $KUBE, staging $STAGING)"
$GO mod tidy -modfile "$dir/base.mod"
# What the build uses (a replace wins over the version MVS selects): every k8s.io module at v1.36.
bad=$($GO list -m -modfile "$dir/base.mod" -f '{{.Path}} {{with .Replace}}{{.Version}}{{else}}{{.Version}}{{end}}' all |
  awk -v k="$KUBE" -v s="$STAGING" '$1 ~ /^k8s\.io\// && $2 ~ /^v(0\.3[0-9]|1\.3[0-9])\./ && $2 != k && $2 != s')
if [ -n "$bad" ]; then
  echo "build-k136: these k8s.io modules are not at $KUBE/$STAGING (add them to go.mod's replaces):" >&2
  echo "$bad" >&2
  exit 1
fi
got=$($GO list -m -modfile "$dir/base.mod" -f '{{.Version}}' github.com/containerd/containerd/v2 github.com/containerd/containerd/api | xargs)
if [ "$got" != "$CONTAINERD $CONTAINERD_API" ]; then
  echo "build-k136: go mod tidy raised containerd and its api to $got (a dependency needs them); the v1.36 build needs $CONTAINERD $CONTAINERD_API" >&2
  exit 1
fi

# 2. The same upstream patches as `make build` (hack/patches), applied to the v1.36 modules.
$GO run ./hack/patches -modfile "$dir/base.mod" -o "$dir"

# 3. The embedded runc shim and host-tool trampoline: as `make build` makes them (the main module set).
$GO build -ldflags '-s -w' -o components/containerd/shim.bin ./components/containerd/shimcmd
$GO build -ldflags '-s -w' -o components/hosttools/trampoline.bin ./components/hosttools/trampoline

# 4. The binary.
start=$(date +%s)
echo "build-k136: building $out (kubeforge $VERSION, Kubernetes $KUBE); log: $dir/build.log"
if ! $GO build -modfile "$dir/go.mod" -trimpath -tags embedshim,embedhosttools,k8s136 \
  -ldflags "-s -w -X github.com/kubeforge/kubeforge/internal/version.Version=$VERSION -X github.com/kubeforge/kubeforge/internal/version.Patches=$($GO run ./hack/patches -list)" \
  -o "$out" ./cmd/kubeforge >"$dir/build.log" 2>&1; then
  cat "$dir/build.log" >&2
  echo "build-k136: the build against Kubernetes $KUBE failed after $(($(date +%s) - start)) s (errors above, in $dir/build.log)" >&2
  exit 1
fi
echo "build-k136: built $out in $(($(date +%s) - start)) s"
"$out" version
got=$("$out" version -o json | sed -n 's/.*"kubernetes": *"\([^"]*\)".*/\1/p')
if [ "$got" != "$KUBE" ]; then
  echo "build-k136: $out says Kubernetes $got, want $KUBE" >&2; exit 1
fi
