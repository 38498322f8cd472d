#!/usr/bin/env bash
# Starts a local ring of N allidbd nodes (default 3) on loopback, each with its own data dir,
# replication factor 3, and waits until every node is ready. For trying the ring, not for
# production (one shared secret in a file, plaintext on loopback).
#
#   scripts/dev-cluster.sh [--nodes N] [--dir DIR] [--bin PATH] [--base-port P]
#
# Node i (0-based) listens on gRPC 127.0.0.1:(P+10i), HTTP +1, admin +2, gossip UDP +3, with
# P = 7100 unless --base-port says otherwise; node 0 is the seed. Logs: DIR/nI/allidbd.log.
# Stop with: kill $(cat DIR/pids)
set -euo pipefail

nodes=3
dir="${TMPDIR:-/tmp}/allidb-dev-cluster"
bin=""
port=7100
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --base-port) port="$2"; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "dev-cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$port" in
  ''|*[!0-9]*) echo "dev-cluster: --base-port $port is not a port number" >&2; exit 2 ;;
esac
if [ "$port" -lt 1024 ] || [ $((port + 10 * nodes)) -gt 65535 ]; then
  echo "dev-cluster: --base-port $port leaves no room for $nodes nodes in 1024..65535" >&2
  exit 2
fi
if [ -z "$bin" ]; then
  root="$(cd "$(dirname "$0")/.." && pwd)"
  (cd "$root" && cargo build --release -p allidb-cmd --bins)
  bin="$root/target/release/allidbd"
fi

mkdir -p "$dir"
: > "$dir/pids"
seed="127.0.0.1:$((port + 3))"
for i in $(seq 0 $((nodes - 1))); do
  base=$((port + 10 * i))
  node="$dir/n$i"
  mkdir -p "$node"
  cat > "$node/allidb.toml" <<TOML
[server]
grpc_addr = "127.0.0.1:$base"
http_addr = "127.0.0.1:$((base + 1))"
admin_addr = "127.0.0.1:$((base + 2))"

[storage]
data_dir = "$node/data"

[cluster]
enabled = true
name = "dev"
node_name = "n$i"
secret = "dev-cluster-secret-not-for-production"
listen_addr = "127.0.0.1:$((base + 3))"
seeds = ["$seed"]
replication_factor = 3
gossip_interval_ms = 200
TOML
  "$bin" --config "$node/allidb.toml" > "$node/allidbd.out" 2> "$node/allidbd.log" &
  echo $! >> "$dir/pids"
  # The seed first, so the others take their tokens against a ring they can see.
  for _ in $(seq 1 300); do
    grep -q '^allidbd: ready' "$node/allidbd.out" 2>/dev/null && break
    sleep 0.1
  done
  grep -q '^allidbd: ready' "$node/allidbd.out" || {
    echo "dev-cluster: n$i did not start; see $node/allidbd.log" >&2
    exit 1
  }
  echo "n$i ready: grpc 127.0.0.1:$base, http 127.0.0.1:$((base + 1)), admin 127.0.0.1:$((base + 2))"
done
# Ready is not settled: wait until every node sees every node normal at the same ring version,
# so that writes sent right away reach every replica of their range.
settled=""
for _ in $(seq 1 600); do
  python3 - "$nodes" "$port" <<'PY' && settled=1 && break
import json, sys, urllib.request
nodes, port = int(sys.argv[1]), int(sys.argv[2])
seen = set()
for i in range(nodes):
    status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port + 2 + 10 * i}/cluster/status"))
    if len(status["nodes"]) != nodes or any(n["status"] != "normal" for n in status["nodes"]):
        sys.exit(1)
    seen.add(status["ring_version"])
sys.exit(0 if len(seen) == 1 else 1)
PY
  sleep 0.1
done
[ -n "$settled" ] || {
  echo "dev-cluster: the nodes did not all see each other normal within a minute" >&2
  exit 1
}
echo "stop with: kill \$(cat $dir/pids)"
