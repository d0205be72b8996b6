#!/usr/bin/env bash
# What TLS costs on new connections, with pgbench -C (a new connection per
# transaction, select-only), on a demo cluster (nodeimg demo) of the built
# images:
#   1. inside the leader's container, to PostgreSQL on 127.0.0.1 (the only
#      path that still takes plaintext: loopback), sslmode=disable against
#      sslmode=require, the same server in the same run: the handshake's cost;
#   2. from the host through PgBouncer (TLS required, SCRAM) and through
#      HAProxy 5000 (TLS to PostgreSQL), the paths applications use.
# Usage: bash scripts/bench-tls.sh [SECONDS]   (needs images/ built and Docker)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
nodeimg=${NODEIMG:-target/release/nodeimg}
state=$PWD/target/bench/tls-demo
name=bench-tls
"$nodeimg" demo down --name "$name" --state-dir "$state" >/dev/null 2>&1 || true
trap '"$nodeimg" demo down --name "$name" --state-dir "$state" >/dev/null 2>&1 || true' EXIT
"$nodeimg" demo up --name "$name" --state-dir "$state" --subnet 172.29.90.0 --port 16432 >/dev/null
ca=$state/ca.crt
password=$(sed -n 's/^127.0.0.1:[0-9]*:app:app://p' "$state/pgpass")
superuser=$(python3 -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['superuser_password'])" "$state/cluster.secrets.toml")
leader=$("$nodeimg" demo status --name "$name" --state-dir "$state" --json |
    python3 -c "import json,sys; print(next(m['name'] for m in json.load(sys.stdin)['members'] if m['role']=='Leader'))")
container=nodeimg-$name-$leader
pgbench_host=$(ls /usr/lib/postgresql/*/bin/pgbench | tail -1)
export PGPASSWORD=$password
"$pgbench_host" -q -i -s 1 "host=172.29.90.21 port=5000 dbname=app user=app sslmode=verify-full sslrootcert=$ca" >/dev/null 2>&1

tps() { grep -E '^tps' | sed 's/ (without initial connection time)//'; }
echo "pgbench -n -C -S -T $seconds, 1 client, $(date -u +%F)"
for mode in disable require; do
    printf '%-58s' "in $leader, 127.0.0.1:5432, sslmode=$mode:"
    docker exec -e PGPASSWORD="$superuser" "$container" /usr/lib/postgresql/17/bin/pgbench \
        -n -C -S -T "$seconds" "host=127.0.0.1 port=5432 dbname=app user=postgres sslmode=$mode" 2>/dev/null | tps
done
printf '%-58s' "host -> PgBouncer 6432 (proxy-1), TLS required:"
"$pgbench_host" -n -C -S -T "$seconds" "host=172.29.90.21 port=6432 dbname=app user=app sslmode=require" 2>/dev/null | tps
printf '%-58s' "host -> HAProxy 5000 (proxy-1) -> PostgreSQL, TLS:"
"$pgbench_host" -n -C -S -T "$seconds" "host=172.29.90.21 port=5000 dbname=app user=app sslmode=require" 2>/dev/null | tps
