#!/usr/bin/env bash
# Session-scale benchmark: a release coordinator on a fresh data dir (SQLite)
# and picket-loadgen holding N agents over real mutual TLS.
#   bench/run-sessions.sh [AGENTS] [HOLD_SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-10000}
hold=${2:-60}
cargo build --release --locked -q -p picket-coordinator -p picket-bench
dir=$(mktemp -d /tmp/picket-bench.XXXXXX)
target/release/picket-coordinator serve --data-dir "$dir" --agent-listen 127.0.0.1:17443 \
    --api-listen 127.0.0.1:17080 2>"$dir/coordinator.log" >/dev/null &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
export PICKET_SERVER=http://127.0.0.1:17080 PICKET_TOKEN_FILE=$dir/admin.token
for _ in $(seq 1 100); do [ -s "$PICKET_TOKEN_FILE" ] && target/release/picketctl devices list >/dev/null 2>&1 && break; sleep 0.1; done
token_json=$(target/release/picketctl --json enroll-token create --max-uses "$agents" --expires-in-hours 2)
token=$(printf '%s' "$token_json" | sed -n 's/.*"token": "\(pkt_[0-9a-f]*\)".*/\1/p')
fp=$(printf '%s' "$token_json" | sed -n 's/.*"ca_fingerprint": "\([0-9a-f]*\)".*/\1/p')
echo "coordinator pid $pid, data $dir, $(nproc) cores" >&2
target/release/picket-loadgen --coordinator 127.0.0.1:17443 --token "$token" --ca-fingerprint "$fp" \
    --agents "$agents" --hold-secs "$hold" --coordinator-pid "$pid"
