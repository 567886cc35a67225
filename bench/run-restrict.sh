#!/usr/bin/env bash
# Exec latency of /usr/bin/true with and without restrict_code (fanotify),
# in a private mount namespace where /usr/bin is bind-mounted onto itself:
# only this namespace's execs are watched, never the host's. Needs root.
#   bench/run-restrict.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000}
cargo build --release --locked -q -p picket-bench --bin picket-exec-latency
exec unshare --mount --propagation private sh -c \
    "mount --bind /usr/bin /usr/bin && exec target/release/picket-exec-latency $runs"
