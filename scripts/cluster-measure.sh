#!/bin/bash
# Idle cost of a 3-node cluster on this machine (issue [cluster]): starts
# three `tessera serve` processes on loopback with REGIONS regions (default
# 1000), waits until the cluster serves, lets it settle, then samples each
# store's /metrics and CPU time over SECONDS seconds (default 30) and prints,
# per store: peer batches sent per second (what went on the wire), raft
# messages sent per second (what one message per region heartbeat would
# cost), and CPU percent of one core. Then it runs each `tessera bench`
# workload given (quoted, default "range --consistency l" and "put") for
# 10 s against all three endpoints, with the leader store's share of
# linearizable reads served on the lease fast path, each store's server CPU
# over the bench (busiest/least busy) and the calls passed on to the
# leader store, the read pieces served at region leaders and the read
# point requests. With CPU_QUOTA (a fraction of a core, e.g. 0.3) each
# member runs capped at that share (scripts/three-members.sh). Then it kills the leader store with
# kill -9 and prints how long until a survivor reports every region led
# by a live store again (`tessera admin regions`), and until a put
# through a survivor succeeds.
#   scripts/cluster-measure.sh [BINARY] [WORKLOAD...]
set -eu
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}/release/tessera}
shift || true
[ $# -gt 0 ] || set -- "range --consistency l" "put"
regions=${REGIONS:-1000}
seconds=${SECONDS_TO_SAMPLE:-30}
base=${BASE_PORT:-31379}
prefix=tessera-measure
source "$(dirname "$0")/three-members.sh"
start_tessera_members "$regions"
cap_members
sleep 5
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'; }
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A b0 m0 c0
for i in 1 2 3; do
  port=$(client_port $i)
  b0[$i]=$(metric $port tessera_peer_batches_sent_total)
  m0[$i]=$(metric $port tessera_peer_messages_sent_total)
  c0[$i]=$(cpu "${pids[$((i - 1))]}")
done
sleep "$seconds"
hz=$(getconf CLK_TCK)
printf "%-6s %14s %18s %8s\n" store "batches/s" "raft messages/s" "CPU %"
for i in 1 2 3; do
  port=$(client_port $i)
  b=$(metric $port tessera_peer_batches_sent_total)
  m=$(metric $port tessera_peer_messages_sent_total)
  c=$(cpu "${pids[$((i - 1))]}")
  awk -v s="n$i" -v b=$((b - b0[$i])) -v m=$((m - m0[$i])) -v c=$((c - c0[$i])) -v t="$seconds" -v hz="$hz" \
    'BEGIN { printf "%-6s %14.1f %18.1f %8.1f\n", s, b / t, m / t, 100 * c / hz / t }'
done
etcdctl --endpoints "$all" endpoint status -w table
# Region leaders per store (leader balance).
led_by() { "$bin" admin regions --json --endpoints "$1" 2>/dev/null | python3 -c "$2" 2>/dev/null; }
echo "region leaders by store: $(led_by "127.0.0.1:$base" 'import json,sys,collections; print(dict(sorted(collections.Counter(r["leader"] for r in json.load(sys.stdin)).items())))')"

leader=$(etcdctl --endpoints "$all" endpoint status -w json |
  python3 -c 'import json,sys; s=json.load(sys.stdin); print([i for i,e in enumerate(s) if e["Status"]["leader"]==e["Status"]["header"]["member_id"]][0])')
lport=$(client_port $((leader + 1)))
# A counter summed over the three stores (0 where a binary lacks it).
total() { local t=0 i; for i in 1 2 3; do t=$((t + $(metric "$(client_port $i)" "$1" || true) + 0)); done; echo $t; }
for w in "$@"; do
  f0=$(metric $lport tessera_lease_fast_path_reads_total)
  r0=$(metric $lport tessera_read_index_reads_total)
  q0=$(total tessera_revision_requests_total) a0=$(total tessera_revision_asks_total)
  p0=$(total tessera_forwarded_calls_total)
  l0=$(total tessera_region_lease_reads_total) x0=$(total tessera_read_point_requests_total)
  for i in 1 2 3; do c0[$i]=$(cpu "${pids[$((i - 1))]}"); done
  t0=$(date +%s%N)
  echo "== bench $w (10 s, endpoints of all three stores)"
  bench "$w"
  # Server CPU per store over the bench: how evenly the answering spreads.
  t=$(( ($(date +%s%N) - t0) / 1000000 ))
  spread=""
  for i in 1 2 3; do spread="$spread $(( $(cpu "${pids[$((i - 1))]}") - c0[$i] ))"; done
  echo "$spread" | awk -v t="$t" -v hz="$hz" '{ lo = hi = $1; for (i = 1; i <= NF; i++) {
      printf "n%d %.0f%% ", i, 100 * $i / hz / (t / 1000); if ($i < lo) lo = $i; if ($i > hi) hi = $i }
    printf "of a core; busiest/least busy %.2fx\n", (lo > 0 ? hi / lo : 0) }' | sed 's/^/server CPU over the bench: /'
  echo "calls passed on to the leader store: $(( $(total tessera_forwarded_calls_total) - p0 ))"
  f=$(( $(metric $lport tessera_lease_fast_path_reads_total) - f0 ))
  r=$(( $(metric $lport tessera_read_index_reads_total) - r0 ))
  [ $((f + r)) -eq 0 ] || echo "linearizable reads on the lease fast path: $f of $((f + r)) ($((100 * f / (f + r)))%)"
  l=$(( $(total tessera_region_lease_reads_total) - l0 )) x=$(( $(total tessera_read_point_requests_total) - x0 ))
  [ $l -eq 0 ] || echo "read pieces served at region leaders under their leases: $l; read point requests: $x"
  q=$(( $(total tessera_revision_requests_total) - q0 )) a=$(( $(total tessera_revision_asks_total) - a0 ))
  [ $q -eq 0 ] || echo "requests for revisions to the leader store: $q, carrying $a region asks"
done
survivor=$(client_port $(((leader + 1) % 3 + 1)))
killed=$((leader + 1))
echo "kill -9 of n$killed (the leader store)"
start=$(date +%s%N)
kill -9 "${pids[$leader]}"
deadline=$((SECONDS + 60))
live_led='import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["leader"] not in (0, '$killed')))'
until [ "$(led_by "127.0.0.1:$survivor" "$live_led" || echo 0)" -eq "$regions" ]; do
  [ $SECONDS -lt $deadline ] || { echo "regions not all led within 60 s" >&2; exit 1; }
  sleep 0.05
done
echo "all $regions regions led by a live store $(( ($(date +%s%N) - start) / 1000000 )) ms after kill -9"
until etcdctl --endpoints "127.0.0.1:$survivor" --command-timeout=2s put after-kill x > /dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { echo "no write within 60 s" >&2; exit 1; }
  sleep 0.05
done
echo "a put through a survivor succeeded $(( ($(date +%s%N) - start) / 1000000 )) ms after kill -9"
