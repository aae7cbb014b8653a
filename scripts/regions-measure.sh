#!/usr/bin/env bash
# What many regions cost one store (issue [regions] 19). Creates a store of
# $REGIONS regions (default 100000) from a keys file and prints:
#   - time from the start of `tessera serve` until it prints its address,
#     and until `etcdctl endpoint status` answers (when etcdctl is there);
#   - resident memory (VmRSS) at idle, and bytes per idle region: the RSS
#     difference to an 8-region store, divided by the difference in regions;
#   - idle CPU (% of one core) over 10 s, from /proc/PID/stat, taken after
#     $SETTLE seconds (default 30: the auto-split checker's first look at
#     every region, 10 s after the start, is over by then);
#   - time for a restart to serve, after SIGTERM and after kill -9;
#   - time of `tessera admin split --keys-file` at the same keys on a new
#     one-region store (one call).
# Usage: REGIONS=10000 scripts/regions-measure.sh   (TESSERA_BIN to skip the build)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

regions=${REGIONS:-100000}
settle=${SETTLE:-30}
bin=${TESSERA_BIN:-$CARGO_TARGET_DIR/release/tessera}
if [ -z "${TESSERA_BIN:-}" ]; then
  nice -n 19 cargo build --release --bin tessera >&2
fi
dir=$(mktemp -d /tmp/tessera-regions-XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

# keys FILE N: N-1 keys k0000001.. (N regions).
keys() {
  seq 1 $(($2 - 1)) | awk '{ printf "k%07d\n", $1 }' > "$1"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start DATA_DIR LOG [ARGS...]: starts tessera in the background (pid in
# $pid) and waits until it prints its address (ms taken in $took).
start() {
  local data=$1 log=$2 t0
  shift 2
  t0=$(now_ms)
  "$bin" serve --data-dir "$data" --listen-client-urls http://127.0.0.1:0 --log-level warn "$@" > "$log" 2>&1 &
  pid=$!
  until grep -q "serving clients on" "$log"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "tessera exited:" >&2
      tail -20 "$log" >&2
      exit 1
    fi
    sleep 0.02
  done
  took=$(($(now_ms) - t0))
}

endpoint() { grep -o "127.0.0.1:[0-9]*" "$1" | head -1; }

# Waits until etcdctl endpoint status answers; echoes the ms since $1.
status_after() {
  local t0=$1 ep=$2
  if ! command -v etcdctl > /dev/null; then
    echo "-"
    return
  fi
  until ETCDCTL_API=3 etcdctl --endpoints "$ep" endpoint status > /dev/null 2>&1; do sleep 0.02; done
  echo $(($(now_ms) - t0))
}

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# CPU (utime + stime) of $1 over 10 s, as % of one core.
idle_cpu() {
  local a b hz
  hz=$(getconf CLK_TCK)
  a=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
  sleep 10
  b=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
  awk -v d=$((b - a)) -v hz="$hz" 'BEGIN { printf "%.2f", d * 100 / (10 * hz) }'
}

stop() {
  kill -TERM "$pid"
  wait "$pid" 2> /dev/null || true
  pid=""
}

keys "$dir/keys" "$regions"
keys "$dir/keys8" 8

# The 8-region store: the memory every store has.
start "$dir/small" "$dir/small.log" --initial-split-keys-file "$dir/keys8"
sleep "$settle"
small_rss=$(rss_kb "$pid")
stop

t0=$(now_ms)
start "$dir/big" "$dir/big.log" --initial-split-keys-file "$dir/keys"
serve_ms=$took
status_ms=$(status_after "$t0" "$(endpoint "$dir/big.log")")
sleep "$settle"
cpu=$(idle_cpu "$pid")
big_rss=$(rss_kb "$pid")
stop

t0=$(now_ms)
start "$dir/big" "$dir/restart.log"
restart_ms=$took
restart_status_ms=$(status_after "$t0" "$(endpoint "$dir/restart.log")")
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
pid=""
start "$dir/big" "$dir/crash.log"
crash_restart_ms=$took
stop

start "$dir/split" "$dir/split.log"
t0=$(now_ms)
split_out=$("$bin" admin --endpoints "$(endpoint "$dir/split.log")" split --keys-file "$dir/keys" 2>&1) ||
  split_out="failed: $split_out"
split_ms=$(($(now_ms) - t0))
stop

per_region=$(((big_rss - small_rss) * 1024 / (regions - 8)))
echo "regions:                         $regions"
echo "create, until the address:       ${serve_ms} ms (etcdctl endpoint status answered after ${status_ms} ms)"
echo "resident at idle:                $((big_rss / 1024)) MiB (8 regions: $((small_rss / 1024)) MiB)"
echo "bytes per idle region:           $per_region"
echo "idle CPU over 10 s:              ${cpu}% of one core"
echo "restart after SIGTERM:           ${restart_ms} ms (etcdctl endpoint status after ${restart_status_ms} ms)"
echo "restart after kill -9:           ${crash_restart_ms} ms"
echo "admin split at $((regions - 1)) keys, one call, on a one-region store: ${split_ms} ms"
echo "  ${split_out%%$'\n'*}"
