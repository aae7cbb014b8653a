#!/bin/bash
# Alternates two tessera binaries on 4 regions, ROUNDS rounds (default 3),
# running each given workload (a `tessera bench` command line, quoted) for
# 8 s on a fresh data dir and printing its one-line JSON result.
#   scripts/bench-before-after.sh /tmp/tessera-before /tmp/tessera-after \
#       put "range --consistency l" "txn-mixed --spread"
set -u
before=$1 after=$2
shift 2
port=23795
for round in $(seq 1 "${ROUNDS:-3}"); do
  for v in before after; do
    bin=${!v}
    dir=$(mktemp -d /tmp/tessera-ba-XXXX)
    "$bin" serve --data-dir "$dir" --listen-client-urls http://127.0.0.1:$port \
      --initial-split-keys 00002500,00005000,00007500 > "$dir.log" 2>&1 &
    pid=$!
    until curl -sf http://127.0.0.1:$port/health > /dev/null; do sleep 0.1; done
    for w in "$@"; do
      echo "== round $round $v $w"
      # shellcheck disable=SC2086
      "$bin" bench $w --endpoints http://127.0.0.1:$port --duration 8s 2>/dev/null | grep '^{'
    done
    kill $pid; wait $pid 2>/dev/null
    rm -rf "$dir" "$dir.log"
  done
done
