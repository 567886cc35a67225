#!/usr/bin/env bash
# Session and dispatch benchmark: a release coordinator on a fresh data dir
# (SQLite) and picket-loadgen holding N agents over real mutual TLS.
#   bench/run-sessions.sh AGENTS HOLD_SECS [extra picket-loadgen flags…]
# e.g. bench/run-sessions.sh 10000 60
#      bench/run-sessions.sh 1000 5 --latency-samples 300
#      bench/run-sessions.sh 10000 5 --latency-samples 300 --bulk
set -euo pipefail
cd "$(dirname "$0")/.."
agents=${1:-10000}
hold=${2:-60}
shift 2 || true
cargo build --release --locked -q -p picket-coordinator -p picket-bench
dir=$(mktemp -d /tmp/picket-bench.XXXXXX)
# Dispatch measurements approve `scan` actions: make them need approval.
cat > "$dir/coordinator.toml" <<TOML
data_dir = "$dir/data"
agent_listen = "127.0.0.1:17443"
api_listen = "127.0.0.1:17080"
[actions]
approval_required_kinds = ["scan"]
two_person_rule = false
TOML
target/release/picket-coordinator serve --config "$dir/coordinator.toml" 2>"$dir/coordinator.log" >/dev/null &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
export PICKET_SERVER=https://127.0.0.1:17080 PICKET_TOKEN_FILE=$dir/data/admin.token PICKET_CA_FILE=$dir/data/pki/ca.pem
for _ in $(seq 1 100); do [ -s "$PICKET_TOKEN_FILE" ] && target/release/picketctl devices list >/dev/null 2>&1 && break; sleep 0.1; done
token_json=$(target/release/picketctl --json enroll-token create --max-uses "$agents" --expires-in-hours 2)
token=$(printf '%s' "$token_json" | sed -n 's/.*"token": "\(pkt_[0-9a-f]*\)".*/\1/p')
fp=$(printf '%s' "$token_json" | sed -n 's/.*"ca_fingerprint": "\([0-9a-f]*\)".*/\1/p')
echo "coordinator pid $pid, data $dir, $(nproc) cores" >&2
target/release/picket-loadgen --coordinator 127.0.0.1:17443 --token "$token" --ca-fingerprint "$fp" \
    --agents "$agents" --hold-secs "$hold" --coordinator-pid "$pid" \
    --api "$PICKET_SERVER" --api-token-file "$PICKET_TOKEN_FILE" --api-ca-file "$PICKET_CA_FILE" "$@"
