#!/bin/bash
# Alternates two tessera binaries (/tmp/tessera-before, /tmp/tessera-after)
# on 4 regions, 3 rounds each: txn-put, txn-mixed, and (after) txn-mixed --spread.
# Results: docs/bench/txn-2pc-2026-11-23.md.
for round in 1 2 3; do
  for v in before after; do
    B=/tmp/tessera-$v
    rm -rf /tmp/bd-$v
    $B serve --data-dir /tmp/bd-$v --listen-client-urls http://127.0.0.1:23795 --initial-split-keys 00002500,00005000,00007500 > /tmp/bd-$v.log 2>&1 &
    pid=$!
    sleep 1.5
    echo "== round $round $v txn-put"
    $B bench txn-put --endpoints http://127.0.0.1:23795 --duration 8s 2>/dev/null | grep '^{'
    echo "== round $round $v txn-mixed (one region)"
    $B bench txn-mixed --endpoints http://127.0.0.1:23795 --duration 8s 2>/dev/null | grep '^{'
    if [ $v = after ]; then
      echo "== round $round $v txn-mixed --spread (cross-region)"
      $B bench txn-mixed --spread --endpoints http://127.0.0.1:23795 --duration 8s 2>/dev/null | grep '^{'
    fi
    kill $pid; wait $pid 2>/dev/null
  done
done
