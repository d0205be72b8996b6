#!/usr/bin/env bash
# Boot and failover timings of a real 3 db + 2 haproxy cluster on Docker:
# runs the end-to-end test (builder/tests/cluster.rs) RUNS times and prints
# the median of each measure.
# Usage: bash scripts/bench-cluster.sh [RUNS] [--no-fencing]
#   --no-fencing: the same cluster with `[patroni] fence_dead_leader = false`
#   (hard failover then waits for the leader key's TTL).
#
# healthy_s: first `docker run` to a leader, two streaming replicas (one
#   registered synchronous) and PgBouncer answering;
# graceful_failover_s / hard_failover_s: the longest gap between two
#   acknowledged writes of one client writing through HAProxy's primary
#   port, after `docker stop` / `docker kill` of the leader.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
report=$PWD/target/bench/cluster.jsonl
if [ "${2:-}" = --no-fencing ]; then
    export NODEIMG_E2E_NO_FENCING=1
    report=$PWD/target/bench/cluster-no-fencing.jsonl
fi
mkdir -p "$(dirname "$report")"
: > "$report"
for i in $(seq "$runs"); do
    echo "run $i/$runs" >&2
    NODEIMG_E2E_REPORT=$report cargo test --locked --test cluster a_three_node_cluster -- --quiet
done
python3 - "$report" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for key in ["healthy_s", "graceful_failover_s", "hard_failover_s", "rejoin_s"]:
    values = sorted(r[key] for r in rows)
    print(f"{key}: median {statistics.median(values):.1f} s over {len(values)} runs (min {values[0]:.1f}, max {values[-1]:.1f})")
PY
