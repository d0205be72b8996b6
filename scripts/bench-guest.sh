#!/usr/bin/env bash
# The qemu guest test's timings (TCG): power-on to PostgreSQL answering on
# first boot, after the reboot, and for the air-gapped bundle. Runs
# builder/tests/guest_boot.rs N times (default 1) and prints the lines it
# reports, plus the test's wall time.
# Usage: bash scripts/bench-guest.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}
mkdir -p target/bench/guest
for i in $(seq "$runs"); do
    start=$(date +%s)
    cargo test --locked --test guest_boot -- --nocapture --test-threads 2 \
        >"target/bench/guest/run-$i.log" 2>&1
    echo "run $i: $(($(date +%s) - start)) s in all"
    grep -E '^(guest|reboot|air-gapped)' "target/bench/guest/run-$i.log"
done
