#!/usr/bin/env bash
# Removes the cluster hack/up.sh made: kubeforge reset inside its network
# namespace, then the namespace and the veth pair.
set -euo pipefail
cd "$(dirname "$0")/.."
KF="$PWD/bin/kubeforge"
NS=kubeforge
if ip netns list | grep -qw "$NS"; then
  nsenter --net=/run/netns/$NS "$KF" reset --force
  ip netns delete "$NS"
  ip link delete kf-host 2>/dev/null || true
else
  "$KF" reset --force
fi
