# Shared by scripts/cluster-measure.sh and scripts/etcd-cluster-bench.sh:
# three members on loopback, member i (1-3) with its client port at
# base + 10 (i - 1) and its peer port one above. Source it after setting
# `base` and `prefix` (the temp dir's name); it sets `dir`, `pids`, the
# endpoint lists `all` (host:port) and `urls` (http://), and cleans up on exit.
dir=$(mktemp -d "/tmp/$prefix-XXXX")
pids=()
cgroups=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  local g
  for g in "${cgroups[@]}"; do rmdir "$g" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
all="127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"
urls="http://127.0.0.1:$base,http://127.0.0.1:$((base + 10)),http://127.0.0.1:$((base + 20))"

client_port() { echo $((base + ($1 - 1) * 10)); }
peer_url() { echo "http://127.0.0.1:$((base + ($1 - 1) * 10 + 1))"; }
# NAME1=peer-url,NAME2=...,NAME3=... for names with the given prefix letter.
initial_cluster() { echo "$1""1=$(peer_url 1),$1""2=$(peer_url 2),$1""3=$(peer_url 3)"; }

# Waits until a put through any member succeeds (at most $1 seconds).
wait_serving() {
  local deadline=$((SECONDS + $1))
  until etcdctl --endpoints "$all" put ready x > /dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "not serving within $1 s" >&2; tail -n 20 "$dir"/*.log >&2; exit 1; }
    sleep 0.5
  done
}

# With CPU_QUOTA set (a fraction of one core, e.g. 0.3), puts each started
# member in a cgroup (v1 cpu controller) of its own capped at that share;
# the client stays uncapped. Does nothing otherwise.
cap_members() {
  [ -n "${CPU_QUOTA:-}" ] || return 0
  local i g
  for i in "${!pids[@]}"; do
    g=/sys/fs/cgroup/cpu/$(basename "$dir")-n$((i + 1))
    mkdir -p "$g"
    cgroups+=("$g")
    echo 100000 > "$g/cpu.cfs_period_us"
    awk -v q="$CPU_QUOTA" 'BEGIN { printf "%d\n", q * 100000 }' > "$g/cpu.cfs_quota_us"
    echo "${pids[$i]}" > "$g/cgroup.procs"
  done
  echo "each member capped at $CPU_QUOTA of a core" >&2
}

# Runs `tessera bench WORKLOAD` for 10 s against all three members; prints
# its one-line JSON result.
bench() {
  # shellcheck disable=SC2086
  "$bin" bench $1 --endpoints "$urls" --duration 10s 2>/dev/null | grep '^{'
}

# Starts `tessera serve` ($bin) as n1-n3 with $1 regions, split evenly over
# `tessera bench`'s default key space (keys 00000000 to 00009999), logs in
# $dir/nI.log, and waits until the cluster serves.
start_tessera_members() {
  local split
  split=$(for i in $(seq 1 $(($1 - 1))); do printf "%08d\n" $((i * 10000 / $1)); done | paste -sd,)
  for i in 1 2 3; do
    "$bin" serve --name "n$i" --data-dir "$dir/n$i" --initial-cluster "$(initial_cluster n)" \
      --listen-client-urls "http://127.0.0.1:$(client_port $i)" --initial-split-keys "$split" \
      > "$dir/n$i.log" 2>&1 &
    pids+=($!)
  done
  echo "3 stores, $1 regions; waiting for the cluster to serve" >&2
  wait_serving 120
}
