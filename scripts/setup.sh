#!/usr/bin/env bash
# Installs the system packages the build and the tests need (idempotent):
#   libclang-dev       RocksDB's bindgen step
#   protobuf-compiler  protoc 3.x for raft-proto and etcd-client
#   etcd-client        etcdctl 3.4, driven by the tests
#   etcd-server        etcd 3.4, the reference the compatibility tests compare with
#   prometheus         promtool, which checks /metrics (tests/metrics.rs)
set -euo pipefail
packages=(libclang-dev protobuf-compiler etcd-client etcd-server prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi
# Debian's etcd-server package starts a system etcd on :2379 where an init
# system runs; tessera uses that port by default, so keep that service off.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl disable --now etcd || true
fi
# Likewise the prometheus package's server (:9090): only promtool is used.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl disable --now prometheus || true
fi
