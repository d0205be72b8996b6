#!/usr/bin/env bash
# Backup and restore over sftp and s3 (builder/tests/backup_sftp.rs and
# backup_s3.rs, ignored in CI): a real OpenSSH server or a real S3 server
# (Ceph's radosgw) and a 3 db node cluster on Docker, a
# `pgbench -i -s SCALE` database, then hyperfine times full backups on
# the primary and from a standby (what the schedule takes; compressed zst,
# encrypted) and restore drills on a replica (restore of the latest
# backup, recovery, a check query, cleanup).
# Usage: bash scripts/bench-backup.sh [SCALE] [RUNS] [KINDS]
#        (default 100 3 "sftp s3")
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
kinds=${3:-sftp s3}
for kind in $kinds; do
    case "$kind" in
        sftp|s3) ;;
        *) echo "unknown repository kind $kind: use sftp and/or s3" >&2; exit 2 ;;
    esac
    NODEIMG_BENCH_SCALE=${1:-100} NODEIMG_BENCH_RUNS=${2:-3} \
        cargo test --locked --test "backup_$kind" -- --ignored --nocapture "bench_${kind}_backup_and_drill"
done
KINDS="$kinds" python3 - <<'PY'
import json, os
for kind in os.environ["KINDS"].split():
    for step in ["full", "full-standby", "drill"]:
        r = json.load(open(f"target/bench/backup-{step}-{kind}.json"))["results"][0]
        print(f"{step} over {kind}: median {r['median']:.1f} s (min {r['min']:.1f}, max {r['max']:.1f}, {len(r['times'])} runs)")
    for name, cost in json.load(open(f"target/bench/backup-cpu-{kind}.json")).items():
        print(f"{name}: primary {cost['primary_cpu_seconds_per_backup']} CPU s per backup, the node that ran it {cost['runner_cpu_seconds_per_backup']} CPU s (primary idle {cost['primary_idle_cpu_per_second']} CPU s/s, subtracted)")
    last = json.load(open(f"target/bench/backup-list-{kind}.json"))[-1]
    print(f"last {kind} backup:", {k: last.get(k) for k in ("label", "kind", "size", "repository_size")})
PY
