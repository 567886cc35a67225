#!/usr/bin/env bash
# Quickstart: a coordinator on its embedded defaults (SQLite in a local data
# dir, loopback ports) and a local agent enrolled to it over real mutual TLS.
# Ctrl-C stops both. Data stays in ./quickstart-data (delete it to start over).
#
# Environment: PICKET_QUICKSTART_DIR (./quickstart-data),
# PICKET_AGENT_LISTEN (127.0.0.1:7443), PICKET_API_LISTEN (127.0.0.1:7080).
set -euo pipefail
cd "$(dirname "$0")"

dir=${PICKET_QUICKSTART_DIR:-./quickstart-data}
agent_listen=${PICKET_AGENT_LISTEN:-127.0.0.1:7443}
api_listen=${PICKET_API_LISTEN:-127.0.0.1:7080}
bin=target/release

echo "building (release)…"
cargo build --release --locked -q -p picket-agent -p picket-coordinator
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

coordinator_pid=""
agent_pid=""
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping…"
    [ -n "$agent_pid" ] && kill -TERM "$agent_pid" 2>/dev/null || true
    [ -n "$coordinator_pid" ] && kill -TERM "$coordinator_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    echo "stopped. Data is in $dir"
}
trap stop INT TERM EXIT

"$bin/picket-coordinator" serve --data-dir "$dir/coordinator" \
    --agent-listen "$agent_listen" --api-listen "$api_listen" 2>"$dir/coordinator.log" >"$dir/coordinator.out" &
coordinator_pid=$!

export PICKET_SERVER="https://$api_listen"
export PICKET_TOKEN_FILE="$dir/coordinator/admin.token"
export PICKET_CA_FILE="$dir/coordinator/pki/ca.pem"
for _ in $(seq 1 100); do
    [ -s "$PICKET_TOKEN_FILE" ] && "$bin/picketctl" devices list >/dev/null 2>&1 && break
    if ! kill -0 "$coordinator_pid" 2>/dev/null; then
        echo "the coordinator did not start; its log:" >&2
        cat "$dir/coordinator.log" >&2
        exit 1
    fi
    sleep 0.1
done

if ! "$bin/picket-agent" status --state-dir "$dir/agent" >/dev/null 2>&1; then
    enroll=$("$bin/picketctl" enroll-token create --group quickstart | sed -n 's/^  picket-agent enroll /enroll /p')
    # shellcheck disable=SC2086 # the printed command is split into its arguments on purpose
    "$bin/picket-agent" $enroll --state-dir "$dir/agent"
fi

"$bin/picket-agent" run --state-dir "$dir/agent" 2>"$dir/agent.log" &
agent_pid=$!

device_id=$("$bin/picket-agent" status --state-dir "$dir/agent" --json | sed -n 's/.*"device_id":"\([^"]*\)".*/\1/p')
for _ in $(seq 1 100); do
    "$bin/picketctl" devices show "$device_id" 2>/dev/null | grep -q 'status.*online' && break
    sleep 0.1
done

cat <<MSG

Picket is running.
  API:          https://$api_listen  (certificate from the coordinator's CA:
                $PICKET_CA_FILE, SHA-256 $(sed -n 's/^CA SHA-256: *//p' "$dir/coordinator.out"))
  console:      https://$api_listen/  — sign in as admin with the password in
                $dir/coordinator/admin.password (browsers do not know the
                coordinator's CA: import the ca.pem above as an authority)
  admin token:  $PICKET_TOKEN_FILE
  device id:    $device_id
  logs:         $dir/coordinator.log, $dir/agent.log

Try, in another shell:
  $bin/picketctl login https://$api_listen   # compare the SHA-256 above, answer y
  export PICKET_TOKEN_FILE=$PICKET_TOKEN_FILE
  $bin/picketctl devices list
(or, without login: export PICKET_SERVER=https://$api_listen PICKET_CA_FILE=$PICKET_CA_FILE)

Ctrl-C stops both.
MSG
"$bin/picketctl" devices list
wait "$agent_pid" "$coordinator_pid"
