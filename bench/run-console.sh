#!/usr/bin/env bash
# Console page times at fleet size (issue 14): 10,000 devices and 100,000
# actions, on SQLite and on PostgreSQL (127.0.0.1:5432, a fresh database).
#   bench/run-console.sh [DEVICES] [ACTIONS] [SAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
devices=${1:-10000}
actions=${2:-100000}
samples=${3:-200}
cargo build --release --locked -q -p picket-bench --bin picket-console-bench
bin=target/release/picket-console-bench
$bin --devices "$devices" --actions "$actions" --samples "$samples"
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    db="picket_console_bench_$$"
    psql -h 127.0.0.1 -U postgres -d test -qc "CREATE DATABASE $db"
    trap 'psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db"' EXIT
    $bin --devices "$devices" --actions "$actions" --samples "$samples" \
        --database-url "postgres://postgres@127.0.0.1:5432/$db"
else
    echo "PostgreSQL not reachable on 127.0.0.1:5432: its run is skipped"
fi
