#!/usr/bin/env bash
# The recovery point (builder/tests/restore.rs bench_recovery_point, ignored
# in CI): seconds of acknowledged writes lost when a cluster's only copy of
# its data is lost, restored from the repository to the latest point.
# Usage: bash scripts/bench-recovery-point.sh [ARCHIVE_TIMEOUT] ["WRITE SECONDS ..."]
#        (default 60 "37 61 83")
set -euo pipefail
cd "$(dirname "$0")/.."
NODEIMG_BENCH_ARCHIVE_TIMEOUT=${1:-60} NODEIMG_BENCH_WRITE_SECONDS=${2:-37 61 83} \
    cargo test --locked --test restore -- --ignored --nocapture bench_recovery_point
python3 - <<'PY'
import json
runs = json.load(open("target/bench/recovery-point.json"))
for r in runs:
    print(f"archive_timeout {r['archive_timeout']} s, writes for {r['write_seconds']} s: "
          f"{r['lost_rows']} of {r['acknowledged']} acknowledged rows lost, {r['lost_seconds']:.1f} s")
print(f"worst: {max(r['lost_seconds'] for r in runs):.1f} s")
PY
