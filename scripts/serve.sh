#!/usr/bin/env bash
# Builds tessera (release) and starts a single-node store on
# 127.0.0.1:2379 with its data in ./tessera-data. Extra arguments go to
# `tessera serve` (see `tessera serve --help`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
"$here/setup.sh"
cd "$here/.."
cargo build --release --bin tessera
exec "$CARGO_TARGET_DIR/release/tessera" serve "$@"
