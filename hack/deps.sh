#!/usr/bin/env bash
# Installs the Debian packages kubeforge's node and tests need, if missing.
set -euo pipefail
need=()
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v conntrack >/dev/null || need+=(conntrack)
command -v jq >/dev/null || need+=(jq) # kube-bench's policies checks (test/e2e/cis_test.go)
command -v chromium >/dev/null || need+=(chromium) # the dashboard's browser test (test/e2e/dashboard_test.go)
command -v gcc >/dev/null || need+=(gcc libc6-dev) # go test -race needs cgo (hack/test.sh)
# Debian's containerd 1.6 for the --cri-socket tests (test/e2e/crisocket_test.go start it themselves; without
# systemd as PID 1 the package starts no host service).
command -v containerd >/dev/null && command -v ctr >/dev/null || need+=(containerd)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v go >/dev/null; then
  if [ -x /usr/local/go/bin/go ]; then export PATH=/usr/local/go/bin:$PATH; else
    echo "Go is required (https://go.dev/dl/): put it in PATH" >&2; exit 1
  fi
fi
