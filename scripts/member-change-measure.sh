#!/bin/bash
# How long membership changes take on a 3-node cluster with REGIONS regions
# (default 1000; issue [cluster]): writes KEYS keys (default 10000) over
# the keyspace, then times `etcdctl member add` (a voter added to the meta
# group and every region), the new store's catch-up (started with
# --initial-cluster-state existing until every region and the meta group
# were created from snapshots and its HashKV equals the others' at one
# revision), and `etcdctl member
# remove` of the leader store (it hands over, then every group drops it).
#   scripts/member-change-measure.sh [BINARY]
set -eu
bin=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}/release/tessera}
regions=${REGIONS:-1000}
keys=${KEYS:-10000}
base=${BASE_PORT:-33379}
prefix=tessera-members
source "$(dirname "$0")/three-members.sh"
start_tessera_members "$regions"
"$bin" bench put --endpoints "$urls" --total "$keys" --key-space-size "$keys" --no-progress > /dev/null 2>&1 || true
now() { date +%s%N; }
ms() { echo $((($(now) - $1) / 1000000)); }

t=$(now)
etcdctl --endpoints "$all" member add n4 --peer-urls "$(peer_url 4)" > /dev/null
echo "member add: $(ms "$t") ms"
t=$(now)
"$bin" serve --name n4 --data-dir "$dir/n4" --initial-cluster "$(initial_cluster n),n4=$(peer_url 4)" \
  --initial-cluster-state existing --listen-client-urls "http://127.0.0.1:$(client_port 4)" > "$dir/n4.log" 2>&1 &
pids+=($!)
rev=$(etcdctl --endpoints "$all" put caught-up x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
hash() { etcdctl --endpoints "127.0.0.1:$1" endpoint hashkv --rev "$rev" -w json 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["hash"])' 2>/dev/null || echo none; }
want=$(hash "$(client_port 1)")
created() { grep -c 'created from a snapshot' "$dir/n4.log" || true; }
until [ "$(created)" -ge $((regions + 1)) ] && [ "$(hash "$(client_port 4)")" = "$want" ]; do
  [ "$(ms "$t")" -lt 300000 ] || { echo "n4 did not catch up in 300 s" >&2; tail -5 "$dir/n4.log" >&2; exit 1; }
  sleep 0.2
done
echo "n4 caught up: $(ms "$t") ms after it started ($(created) groups created from snapshots, the meta group's included)"

leader=$(etcdctl --endpoints "$all" endpoint status -w json |
  python3 -c 'import json,sys; s=json.load(sys.stdin); print("%x" % s[0]["Status"]["leader"])')
t=$(now)
etcdctl --endpoints "127.0.0.1:$(client_port 4)" member remove "$leader" > /dev/null
echo "member remove of the leader store: $(ms "$t") ms"
etcdctl --endpoints "127.0.0.1:$(client_port 4)" member list -w table
