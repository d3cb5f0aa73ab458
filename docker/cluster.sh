#!/usr/bin/env bash
# Brings the local cluster of docker/compose.yml up or down.
#   docker/cluster.sh up <env file>    compose up -d; waits until the LB answers /readyz and every
#                                      agent has registered (at most CLUSTER_WAIT_S, default 300 s)
#   docker/cluster.sh down <env file>  compose down -v (containers, networks, the Postgres volume),
#                                      then the agents' preview sandboxes and preview networks, which
#                                      the agents made themselves and leave behind when stopped
# Inputs: the env file (docker/cluster.env.example), CLUSTER_NAME in it (the compose project name).
# Uses `docker compose` (v2 plugin) when present, else `docker-compose` (v1, Debian's package).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}; env_file=${2:-}
[ -n "$cmd" ] && [ -f "$env_file" ] || { echo "usage: $0 up|down <env file>" >&2; exit 2; }
env_file=$(cd "$(dirname "$env_file")" && pwd)/$(basename "$env_file")
name=$(sed -n 's/^CLUSTER_NAME=//p' "$env_file" | tail -1)
name=${name:-preview-cluster}
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
compose+=(-p "$name" -f "$here/compose.yml" --env-file "$env_file")
nodes=("$name-node-1" "$name-node-2" "$name-node-3")

case $cmd in
  up)
    "${compose[@]}" up -d >&2
    lb_port=$(sed -n 's/^LB_PORT=//p' "$env_file" | tail -1)
    lb_port=${lb_port:-8080}
    pg_port=$(sed -n 's/^PG_PORT=//p' "$env_file" | tail -1)
    deadline=$((SECONDS + ${CLUSTER_WAIT_S:-300}))
    until curl -fsS "http://127.0.0.1:${lb_port:-8080}/readyz" >/dev/null 2>&1; do
      [ $SECONDS -lt $deadline ] || { echo "the load balancer did not become ready" >&2; "${compose[@]}" ps >&2; exit 1; }
      sleep 1
    done
    # Every agent registered (the node table) and heartbeating (its `node:<id>` liveness key in
    # Redis, which the routers' placement reads): only then does a create find room on the nodes.
    alive_nodes() {
      local ids id n=0
      ids=$("${compose[@]}" exec -T postgres psql -U postgres -d preview -tAc \
        "SELECT id FROM preview_nodes WHERE name IN ('${nodes[0]}','${nodes[1]}','${nodes[2]}') AND state = 'active'" 2>/dev/null) || true
      for id in $ids; do
        [ "$("${compose[@]}" exec -T redis redis-cli EXISTS "$name:node:$id" 2>/dev/null | tr -d '\r')" = 1 ] && n=$((n + 1))
      done
      echo "$n"
    }
    until [ "$(alive_nodes)" = 3 ]; do
      [ $SECONDS -lt $deadline ] || { echo "not every agent registered and heartbeating" >&2; "${compose[@]}" ps >&2; exit 1; }
      sleep 1
    done
    # And every agent's API answers (an agent registers before it listens; 401 = up).
    for i in 1 2 3; do
      port=$(sed -n "s/^AGENT_${i}_PORT=//p" "$env_file" | tail -1)
      port=${port:-707$i}
      until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/capacity" 2>/dev/null)" = 401 ]; do
        [ $SECONDS -lt $deadline ] || { echo "agent $i does not answer on $port" >&2; "${compose[@]}" ps >&2; exit 1; }
        sleep 1
      done
    done
    echo "cluster $name up: http://127.0.0.1:$lb_port"
    ;;
  down)
    "${compose[@]}" down -v --remove-orphans >&2
    for node in "${nodes[@]}"; do
      ids=$(docker ps -aq --filter "label=preview.node=$node")
      [ -z "$ids" ] || docker rm -fv $ids >/dev/null
    done
    for i in 1 2 3; do docker network rm "$name-previews-$i" >/dev/null 2>&1 || true; done
    echo "cluster $name down"
    ;;
  *) echo "usage: $0 up|down <env file>" >&2; exit 2 ;;
esac
