#!/usr/bin/env bash
# spane bench of an earlier revision and of this tree, alternating, in one run: each against a
# database of its own on the local PostgreSQL and a private redis-server on a free port.
#   scripts/compare_bench.sh REV [ROUNDS]     (reports land in ./bench-<tree>-<n>.json)
set -euo pipefail
rev=${1:?give the revision to compare with, e.g. a commit id}
rounds=${2:-2}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
before=$(mktemp -d /tmp/spane-before-XXXXXX)
git -C "$here" worktree add --detach "$before" "$rev" >/dev/null
trap 'kill "$(cat "$before.redis.pid")" 2>/dev/null; git -C "$here" worktree remove --force "$before"' EXIT
make -C "$before" venv >/dev/null
make -C "$here" venv >/dev/null
port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
redis-server --port "$port" --save '' --appendonly no --daemonize yes --pidfile "$before.redis.pid" >/dev/null
for round in $(seq "$rounds"); do
  for tree in before here; do
    dir=$before; [ "$tree" = here ] && dir=$here
    db=spane_compare_${tree}_$$
    createdb -h 127.0.0.1 -U postgres "$db"
    redis-cli -p "$port" flushall >/dev/null
    echo "round $round: $tree" >&2
    "$dir/.venv/bin/spane" bench --db "postgresql://postgres@127.0.0.1/$db" \
      --redis "redis://127.0.0.1:$port/0" -o json > "bench-$tree-$round.json"
    dropdb -h 127.0.0.1 -U postgres "$db"
  done
done
for report in bench-*.json; do
  python3 -c "import json, sys; print(sys.argv[1], json.load(open(sys.argv[1]))['ratios'])" "$report"
done
