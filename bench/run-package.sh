#!/usr/bin/env bash
# Investigation package: time from `picketctl collect-package` to the
# package stored on the coordinator (collection + chunked upload), and its
# size. Release build; coordinator and agent started by quickstart.sh on
# private ports and a scratch data dir, on this machine.
#   bench/run-package.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
dir=$(mktemp -d /tmp/picket-bench-package.XXXXXX)
export PICKET_QUICKSTART_DIR=$dir PICKET_AGENT_LISTEN=127.0.0.1:17443 PICKET_API_LISTEN=127.0.0.1:17080
setsid ./quickstart.sh > "$dir/quickstart.out" 2>&1 &
qs=$!
trap 'kill -INT -- -$qs 2>/dev/null || true; wait $qs 2>/dev/null || true; rm -rf "$dir"' EXIT
export PICKET_SERVER=https://127.0.0.1:17080 PICKET_TOKEN_FILE=$dir/coordinator/admin.token PICKET_CA_FILE=$dir/coordinator/pki/ca.pem
ctl=target/release/picketctl
device=""
for _ in $(seq 1 600); do
    device=$("$ctl" devices list --json 2>/dev/null | python3 -c 'import json,sys; d=[x for x in json.load(sys.stdin) if x["status"]=="online"]; print(d[0]["id"] if d else "")' 2>/dev/null || true)
    [ -n "$device" ] && break
    sleep 1
done
[ -n "$device" ] || { echo "no device came online; see $dir" >&2; exit 1; }
for i in $(seq 1 "$runs"); do
    start=$(date +%s.%N)
    id=$("$ctl" collect-package "$device" --comment "benchmark run $i" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    while :; do
        status=$("$ctl" actions show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
        case $status in succeeded|failed) break ;; esac
        sleep 0.05
    done
    end=$(date +%s.%N)
    "$ctl" actions show "$id" --json | python3 -c "
import json,sys
a=json.load(sys.stdin); o=(a.get('result') or {}).get('output') or {}
print('run $i: %s in %.2f s (agent: collected in %.2f s), %d items, %d errors, %.1f MiB uncompressed, %.2f MiB package' % (
    a['status'], $end-$start, o.get('seconds',0), o.get('items',0), o.get('errors',0), o.get('bytes_uncompressed',0)/1048576, o.get('size',0)/1048576))"
done
