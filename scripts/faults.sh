#!/usr/bin/env bash
# Runs the fault harness over many seeds and appends every run to the
# ledger (docs/faults/ledger.tsv). Usage: scripts/faults.sh [MEMBERS] [RUNS] [extra tessera faults flags...]
#   scripts/faults.sh 3 100
#   scripts/faults.sh 1 20 --faults kill,pause,split-merge
#   scripts/faults.sh 3 8 --etcd /usr/bin/etcd      # the same harness against etcd 3.4
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
"$here/setup.sh"
cd "$here/.."
members="${1:-3}"
runs="${2:-10}"
shift $(( $# > 2 ? 2 : $# ))
cargo build --release --bin tessera
exec "$CARGO_TARGET_DIR/release/tessera" faults --members "$members" --runs "$runs" \
  --ledger docs/faults/ledger.tsv "$@"
