#!/usr/bin/env bash
# Backup and restore over sftp (builder/tests/backup_sftp.rs, ignored in
# CI): a real OpenSSH server and a 3 db node cluster on Docker, a
# `pgbench -i -s SCALE` database, then hyperfine times full backups from
# the primary (compressed zst, encrypted) and restore drills on a replica
# (restore of the latest backup, recovery, a check query, cleanup).
# Usage: bash scripts/bench-backup.sh [SCALE] [RUNS]   (default 100 3)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
NODEIMG_BENCH_SCALE=${1:-100} NODEIMG_BENCH_RUNS=${2:-3} \
    cargo test --locked --test backup_sftp -- --ignored --nocapture bench_sftp_backup_and_drill
python3 - <<'PY'
import json
for name in ["full-sftp", "drill-sftp"]:
    r = json.load(open(f"target/bench/backup-{name}.json"))["results"][0]
    print(f"{name}: median {r['median']:.1f} s (min {r['min']:.1f}, max {r['max']:.1f}, {len(r['times'])} runs)")
backups = json.load(open("target/bench/backup-list.json"))
last = backups[-1]
print("last backup:", {k: last.get(k) for k in ("label", "kind", "size", "repository_size")})
PY
