#!/usr/bin/env bash
# Data-parallel training across two network hosts on one machine (README,
# "Training on several machines"): two Linux network namespaces, nndc-a
# (10.77.0.1) and nndc-b (10.77.0.2), joined by a veth pair, nothing else.
# mpirun runs in nndc-a and starts the process of the other "host" through a
# launcher agent that enters its namespace (where ssh would log in), and
# Open MPI may use only its TCP transport on the veth link (no shared
# memory): every gradient crosses the network stack.  Needs root
# (CAP_NET_ADMIN); removes what it made on exit.
#   bench/mpi_two_hosts.sh [NNDC] -- TRAIN ARGS...
#   bench/mpi_two_hosts.sh build/nndc -- examples/mlp.nnd --batch 32 --threads 1 --epochs 1 \
#       --data x=$D/train-images-idx3-ubyte.gz --data y=$D/train-labels-idx1-ubyte.gz
set -euo pipefail
NNDC=$(realpath "${1:-build/nndc}")
shift || true
[ "${1:-}" = -- ] && shift
tmp=""
cleanup() {
  ip netns del nndc-a 2>/dev/null || true
  ip netns del nndc-b 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
cleanup
tmp=$(mktemp -d)
ip netns add nndc-a
ip netns add nndc-b
ip link add veth-nndc-a type veth peer name veth-nndc-b
ip link set veth-nndc-a netns nndc-a
ip link set veth-nndc-b netns nndc-b
ip -n nndc-a addr add 10.77.0.1/24 dev veth-nndc-a
ip -n nndc-b addr add 10.77.0.2/24 dev veth-nndc-b
for ns in a b; do
  ip -n nndc-$ns link set lo up
  ip -n nndc-$ns link set veth-nndc-$ns up
done
# the "ssh" of this cluster: run the command on host $1 = enter its namespace
cat > "$tmp/agent" <<'AGENT'
#!/bin/sh
host=$1
shift
case $host in
  10.77.0.1) ns=nndc-a ;;
  10.77.0.2) ns=nndc-b ;;
  *) echo "agent: unknown host $host" >&2; exit 1 ;;
esac
exec ip netns exec "$ns" sh -c "$*"
AGENT
chmod +x "$tmp/agent"
printf '10.77.0.1 slots=1\n10.77.0.2 slots=1\n' > "$tmp/hostfile"
ip netns exec nndc-a mpirun --allow-run-as-root --hostfile "$tmp/hostfile" -np 2 --map-by node \
  --mca plm_rsh_agent "$tmp/agent" --mca btl tcp,self \
  --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
  sh -c 'echo "rank $OMPI_COMM_WORLD_RANK runs on $(ip -4 -o addr show scope global | awk "{print \$4}")" >&2; exec "$0" "$@"' \
  "$NNDC" train "$@"
