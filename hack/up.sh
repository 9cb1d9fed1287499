#!/usr/bin/env bash
# Builds kubeforge if needed and brings up a single-node cluster with
# `kubeforge init`.
#
# By default the node gets its own network namespace "kubeforge" joined to
# the host by a veth pair (host 10.201.0.1, node 10.201.0.2), so the cluster
# needs no changes to the host's network and sends nothing off the machine;
# kubectl on the host reaches it through /etc/kubernetes/admin.conf.
# KUBEFORGE_HOST_NETWORK=1 ADVERTISE_ADDRESS=<this host's IP> runs it on the
# host's own network instead, as on a real server.
# `./hack/down.sh` (or `kubeforge reset`) removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
./hack/deps.sh
[ -x bin/kubeforge ] && [ -z "$(find cmd components config internal join manifests phases pki preflight hack/patches go.mod go.sum Makefile -newer bin/kubeforge -print -quit)" ] || make build
KF="$PWD/bin/kubeforge"

if [ -f /etc/kubernetes/admin.conf ]; then
  echo "A cluster is already set up here (/etc/kubernetes/admin.conf exists):"
  kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes || true
  echo "Run ./hack/down.sh to remove it first."
  exit 0
fi

if [ "${KUBEFORGE_HOST_NETWORK:-}" = 1 ]; then
  exec "$KF" init --advertise-address "${ADVERTISE_ADDRESS:?set ADVERTISE_ADDRESS to this host\'s IP}" --single-node "$@"
fi

NS=kubeforge HOST_IF=kf-host NODE_IF=kf-node HOST_IP=10.201.0.1 NODE_IP=10.201.0.2
if ! ip netns list | grep -qw "$NS"; then
  ip netns add "$NS"
  ip link add "$HOST_IF" type veth peer name "$NODE_IF"
  ip link set "$NODE_IF" netns "$NS"
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" addr add "$NODE_IP/24" dev "$NODE_IF"
  ip -n "$NS" link set "$NODE_IF" up
  ip -n "$NS" link set lo up
fi
nsenter --net=/run/netns/$NS sysctl -qw net.ipv4.ip_forward=1
nsenter --net=/run/netns/$NS "$KF" init --advertise-address "$NODE_IP" --node-name kubeforge --single-node "$@"
echo
echo "Node network namespace: $NS ($NODE_IP). From this host: kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes"
