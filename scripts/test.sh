#!/usr/bin/env bash
# Runs every test: unit tests, in-process integration tests through the
# etcd-client crate, and tests that drive the real binary with etcdctl and
# compare with etcd 3.4. One profile (release) for everything; see docs/build.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
"$here/setup.sh"
"$here/setup-clients.sh"
cd "$here/.."
cargo build --release --all-targets
cargo test --release "$@"
