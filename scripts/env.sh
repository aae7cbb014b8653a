# Shared by every script: one cargo profile and one target dir outside the
# clone, so the binary, the tests and CI reuse the same RocksDB build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
