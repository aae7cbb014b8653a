#!/bin/bash
# Latency of puts and reads while regions split and merge (issue
# [split-merge]). On one store with one region holding KEYS keys (default
# 10,000), runs each workload (default "put" and "range --consistency l")
# three times for DURATION (default 8s): alone, while an operator loop
# splits the region at its middle key and merges it back (one split then one
# merge per second), and prints each run's one-line JSON result and how long
# each split and merge took.
#   scripts/split-merge-latency.sh [BINARY] [WORKLOAD...]
set -eu
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}/release/tessera}
shift || true
[ $# -gt 0 ] || set -- "put" "range --consistency l"
duration=${DURATION:-8s}
port=${PORT:-33379}
ep="127.0.0.1:$port"
dir=$(mktemp -d /tmp/tessera-sm-XXXX)
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$bin" serve --data-dir "$dir/data" --listen-client-urls "http://$ep" --auto-split false > "$dir/log" 2>&1 &
pid=$!
until curl -sf "http://$ep/health" > /dev/null; do sleep 0.1; done
"$bin" bench put --endpoints "http://$ep" --total "${KEYS:-10000}" --key-space-size "${KEYS:-10000}" \
  --sequential-keys --no-progress > /dev/null 2>&1

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# Splits region 1 at its middle and merges it back, once a second each,
# until the file $1 appears; prints each operation's duration.
reshape() {
  while [ ! -e "$1" ]; do
    t=$(date +%s%N)
    right=$("$bin" admin split --region 1 --endpoints "$ep" --json | tail -1 | sed 's/.*"id":\([0-9]*\),"start_key".*/\1/')
    echo "split $(ms_since "$t") ms"
    sleep 0.5
    t=$(date +%s%N)
    "$bin" admin merge --left 1 --right "$right" --endpoints "$ep" > /dev/null
    echo "merge $(ms_since "$t") ms"
    sleep 0.5
  done
}

for w in "$@"; do
  echo "== $w, alone"
  # shellcheck disable=SC2086
  "$bin" bench $w --endpoints "http://$ep" --duration "$duration" --key-space-size "${KEYS:-10000}" 2>/dev/null | grep '^{'
  echo "== $w, while region 1 splits and merges back every second"
  rm -f "$dir/stop"
  reshape "$dir/stop" > "$dir/ops" &
  rpid=$!
  # shellcheck disable=SC2086
  "$bin" bench $w --endpoints "http://$ep" --duration "$duration" --key-space-size "${KEYS:-10000}" 2>/dev/null | grep '^{'
  touch "$dir/stop"
  wait "$rpid"
  awk '{ n[$1]++; s[$1] += $2; if ($2 > m[$1]) m[$1] = $2 }
       END { for (op in n) printf "%s: %d done, mean %.0f ms, max %d ms\n", op, n[op], s[op] / n[op], m[op] }' "$dir/ops"
done
