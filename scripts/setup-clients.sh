#!/usr/bin/env bash
# Installs the etcd client libraries the tests drive besides etcdctl and the
# Rust etcd-client crate (idempotent):
#   python etcd3 0.12 in a venv at $HOME/.cache/tessera-py. It needs an old
#   protobuf (its generated code predates protobuf 4) and tenacity < 7 (its
#   lock retries use the old tenacity API).
#   node etcd3 1.1.2 under $HOME/.cache/tessera-node (node and npm from the machine).
set -euo pipefail
venv="${TESSERA_PY_VENV:-$HOME/.cache/tessera-py}"
if ! "$venv/bin/python" -c 'import etcd3' >/dev/null 2>&1; then
  echo "setup: installing python etcd3 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'etcd3==0.12.0' 'protobuf<=3.20.3' 'tenacity<7'
fi
node_dir="${TESSERA_NODE_DIR:-$HOME/.cache/tessera-node}"
if [ ! -f "$node_dir/node_modules/etcd3/package.json" ]; then
  echo "setup: installing node etcd3 into $node_dir" >&2
  mkdir -p "$node_dir"
  npm install --silent --no-fund --no-audit --prefix "$node_dir" etcd3@1.1.2
fi
