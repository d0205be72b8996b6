#!/usr/bin/env bash
# Write unavailability under the fault matrix (builder/tests/faults.rs),
# through PgBouncer (6432) and through HAProxy (5000), on a real 3 db +
# 2 proxy cluster on Docker: runs the matrix RUNS times and prints the
# median (min-max) of each fault's outage per path.
#
# Usage: bash scripts/bench-faults.sh [RUNS] [defaults|example|fast]
#   defaults: nodeimg's timings (ttl 20, loop_wait 5, retry_timeout 5)
#   example:  examples/cluster.toml's (ttl 30, loop_wait 10, retry_timeout 10)
#   fast:     ttl 20, loop_wait 2, retry_timeout 5 (the fastest we measured)
# Every set runs with synchronous mode and fencing on.
#
# An outage is the longest gap between two acknowledged inserts of one
# client (a new connection per insert) after the fault is injected.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
set_name=${2:-defaults}
case $set_name in
    defaults) patroni="" ;;
    example) patroni='ttl = 30\nloop_wait = 10\nretry_timeout = 10\nsynchronous_mode = true\nfence_dead_leader = true\n' ;;
    fast) patroni='ttl = 20\nloop_wait = 2\nretry_timeout = 5\nsynchronous_mode = true\nfence_dead_leader = true\n' ;;
    *) echo "unknown timing set $set_name: defaults, example or fast" >&2; exit 2 ;;
esac
report=$PWD/target/bench/faults-$set_name.jsonl
mkdir -p "$(dirname "$report")"
: > "$report"
for i in $(seq "$runs"); do
    echo "run $i/$runs ($set_name timings)" >&2
    NODEIMG_FAULTS_REPORT=$report NODEIMG_FAULTS_PATRONI=$patroni \
        cargo test --locked --test faults -- --quiet
done
python3 - "$report" "$set_name" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
faults = []
for r in rows:
    if r["fault"] not in faults:
        faults.append(r["fault"])
print(f"| fault ({sys.argv[2]} timings) | through 6432 | through 5000 | whole again |")
print("|---|---|---|---|")
for f in faults:
    cells = []
    for key in ["outage_6432_s", "outage_5000_s", "recovered_s"]:
        v = sorted(r[key] for r in rows if r["fault"] == f)
        cells.append(f"{statistics.median(v):.1f} s ({v[0]:.1f}-{v[-1]:.1f})")
    n = sum(1 for r in rows if r["fault"] == f)
    print(f"| {f} ({n} runs) | " + " | ".join(cells) + " |")
PY
