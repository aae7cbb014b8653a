#!/bin/bash
# The cost of TLS on `tessera bench` (issue 17): one single-node store
# serving http:// and https:// on one port (the same store, the same data),
# with certificates of a CA made here by openssl (ECDSA P-256) and
# --client-cert-auth. Each workload given (quoted; default "put" and
# "range --consistency l") runs ROUNDS times (default 3) for SECONDS (default
# 10) on each scheme, alternating which goes first; prints one line per run
# (with the server's CPU time per operation, less sensitive to a busy
# machine than throughput) and the medians.
#   scripts/tls-bench.sh [BINARY] [WORKLOAD...]
set -eu
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}/release/tessera}
shift || true
[ $# -gt 0 ] || set -- "put" "range --consistency l"
rounds=${ROUNDS:-3}
seconds=${SECONDS_PER_RUN:-10}
port=${PORT:-32479}
dir=$(mktemp -d /tmp/tessera-tls-bench.XXXXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca-key.pem
openssl req -x509 -new -key ca-key.pem -subj /CN=bench-ca -days 2 -out ca.pem 2>/dev/null
for who in server client; do
  key $who-key.pem
  openssl req -new -key $who-key.pem -subj /CN=$who -out $who.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > $who.ext
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile $who.ext -out $who.pem 2>/dev/null
done
"$bin" serve --data-dir data --listen-client-urls "http://127.0.0.1:$port,https://127.0.0.1:$port" \
  --cert-file server.pem --key-file server-key.pem --trusted-ca-file ca.pem --client-cert-auth \
  --initial-split-keys b,m,t > serve.log 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "serving clients" serve.log && break; sleep 0.1; done
tls=(--cacert ca.pem --cert client.pem --key client-key.pem)
declare -A ops cpus
for workload in "$@"; do
  for round in $(seq "$rounds"); do
    order=(http https)
    [ $((round % 2)) -eq 0 ] && order=(https http)
    for scheme in "${order[@]}"; do
      extra=()
      [ "$scheme" = https ] && extra=("${tls[@]}")
      cpu0=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
      # shellcheck disable=SC2086
      json=$("$bin" bench $workload --endpoints "$scheme://127.0.0.1:$port" "${extra[@]}" \
        --duration "${seconds}s" --no-progress --seed "$round" | tail -1)
      line=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f ops/s p50 %.3f ms p99 %.3f ms errors %d" % (d["ops_per_sec"], d["p50_ms"], d["p99_ms"], d["errors"]))' "$json")
      cpu1=$(awk '{ print $14 + $15 }' /proc/$pid/stat)
      n=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ops"])' "$json")
      us=$(( (cpu1 - cpu0) * 1000000 / $(getconf CLK_TCK) / n ))
      echo "$workload | $scheme | round $round | $line | server CPU $us us/op"
      ops["$workload/$scheme"]+="$(echo "$line" | awk '{print $1}') "
      cpus["$workload/$scheme"]+="$us "
    done
  done
done
echo
for workload in "$@"; do
  for scheme in http https; do
    median=$(echo ${ops["$workload/$scheme"]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    cpu=$(echo ${cpus["$workload/$scheme"]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "median $workload $scheme: $median ops/s, server CPU $cpu us/op"
  done
done
