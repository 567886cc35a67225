#!/usr/bin/env bash
# Automated investigation: detection → quarantine latency under `full`
# automation with GiB of files in the copy search place (made once under
# /var/tmp/picket-bench-search and reused). Release build; coordinator and
# agent in one process (picket-investigation-latency), real TLS, real-time
# protection on a scratch drop directory.
#   bench/run-investigation.sh [GIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${1:-5}
runs=${2:-5}
cargo build --release --locked -q -p picket-bench --bin picket-investigation-latency
target/release/picket-investigation-latency --gib "$gib" --runs "$runs"
