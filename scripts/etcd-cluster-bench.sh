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
dir=$(mktemp -d /tmp/etcd-cluster-XXXX)
cluster="e1=http://127.0.0.1:$((base + 1)),e2=http://127.0.0.1:$((base + 11)),e3=http://127.0.0.1:$((base + 21))"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for i in 1 2 3; do
  client="http://127.0.0.1:$((base + (i - 1) * 10))"
  peer="http://127.0.0.1:$((base + (i - 1) * 10 + 1))"
  etcd --name "e$i" --data-dir "$dir/e$i" --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "$cluster" \
    --initial-cluster-state new > "$dir/e$i.log" 2>&1 &
  pids+=($!)
done
all="127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"
deadline=$((SECONDS + 60))
until etcdctl --endpoints "$all" put ready x > /dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "etcd did not serve within 60 s" >&2; exit 1; }
  sleep 0.5
done
urls="http://127.0.0.1:$base,http://127.0.0.1:$((base + 10)),http://127.0.0.1:$((base + 20))"
for w in "$@"; do
  echo "== etcd 3.4, 3 members: bench $w (10 s, endpoints of all three)"
  # shellcheck disable=SC2086
  "$bin" bench $w --endpoints "$urls" --duration 10s 2>/dev/null | grep '^{'
done
