#!/usr/bin/env bash
# Push time of both role images to Debian's docker-registry on loopback:
# cold (an empty registry each run; haproxy uploaded whole, or mounting
# the blobs it shares with db via --mount-from) and warm (every blob there).
# Usage: bash scripts/bench-push.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
need=()
for tool in hyperfine docker-registry; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then apt-get update && apt-get install -y "${need[@]}"; fi
cargo build --release --locked
bin=$PWD/target/release/nodeimg
work=$PWD/target/bench/push
rm -rf "$work" && mkdir -p "$work"
"$bin" --quiet fetch recipes/db.toml
"$bin" --quiet fetch recipes/haproxy.toml
"$bin" --quiet build --all --offline --output "$work/images"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry=$!
trap 'kill $registry' EXIT
until curl -sf "http://127.0.0.1:$port/v2/" >/dev/null; do sleep 0.2; done

push_both="$bin push $work/images/db 127.0.0.1:$port/nodeimg/db:bench 2>/dev/null && $bin push $work/images/haproxy 127.0.0.1:$port/nodeimg/haproxy:bench 2>/dev/null"
push_both_mounting="$bin push $work/images/db 127.0.0.1:$port/nodeimg/db:bench 2>/dev/null && $bin push $work/images/haproxy 127.0.0.1:$port/nodeimg/haproxy:bench --mount-from nodeimg/db 2>/dev/null"
# Cold: the registry's storage emptied before each run (the registry keeps
# no blob cache of its own in memory: storage is its only state).
hyperfine --runs "$runs" --warmup 1 --export-json "$work/push-cold.json" --export-markdown "$work/push-cold.md" \
    --prepare "rm -rf $work/registry/docker" \
    -n "push db + haproxy, cold (empty registry)" "$push_both" \
    -n "push db + haproxy --mount-from nodeimg/db, cold" "$push_both_mounting"
hyperfine --runs "$runs" --warmup 1 --export-json "$work/push-warm.json" --export-markdown "$work/push-warm.md" \
    -n "push db + haproxy, warm (every blob there)" "$push_both"
"$bin" push "$work/images/db" "127.0.0.1:$port/nodeimg/db:bench" --json 2>/dev/null
"$bin" push "$work/images/haproxy" "127.0.0.1:$port/nodeimg/haproxy:bench" --json 2>/dev/null
rm -rf "$work/registry/docker"
"$bin" push "$work/images/db" "127.0.0.1:$port/nodeimg/db:bench" --json 2>/dev/null
"$bin" push "$work/images/haproxy" "127.0.0.1:$port/nodeimg/haproxy:bench" --mount-from nodeimg/db --json 2>/dev/null
du -sb "$work/images/db/blobs" "$work/images/haproxy/blobs"
python3 scripts/hyperfine-medians.py "$work/push-cold.json" "$work/push-warm.json"
cat "$work/push-cold.md" "$work/push-warm.md"
