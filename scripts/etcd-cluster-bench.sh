#!/bin/bash
# The etcd side of scripts/cluster-measure.sh's benches: starts a 3-member
# etcd (3.4, Debian's etcd-server) on loopback, runs each `tessera bench`
# workload given (quoted, default "range --consistency l" and "put") for
# 10 s against all three endpoints and prints its one-line JSON result.
#   scripts/etcd-cluster-bench.sh [TESSERA_BINARY] [WORKLOAD...]
set -eu
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}/release/tessera}
shift || true
[ $# -gt 0 ] || set -- "range --consistency l" "put"
base=${BASE_PORT:-32379}
prefix=etcd-cluster
source "$(dirname "$0")/three-members.sh"
for i in 1 2 3; do
  client="http://127.0.0.1:$(client_port $i)"
  etcd --name "e$i" --data-dir "$dir/e$i" --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$(peer_url $i)" --initial-advertise-peer-urls "$(peer_url $i)" \
    --initial-cluster "$(initial_cluster e)" --initial-cluster-state new > "$dir/e$i.log" 2>&1 &
  pids+=($!)
done
wait_serving 60
for w in "$@"; do
  echo "== etcd 3.4, 3 members: bench $w (10 s, endpoints of all three)"
  bench "$w"
done
