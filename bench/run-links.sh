#!/usr/bin/env bash
# Time-of-click figures (issue 16): the link rewrite at delivery (in process,
# as the Sieve filter process, through a real Dovecot's LMTP with and
# without it, and through the picket-linkwrap LMTP proxy in front of it) and
# the click listener's checks per second with a large blocklist, over HTTPS
# keep-alive. Release build.
#   bench/run-links.sh [BLOCKS] [SECONDS] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=${1:-100000}
seconds=${2:-10}
clients=${3:-8}
cargo build --release --locked -q -p picket-linkwrap
cargo build --release --locked -q -p picket-bench --bin picket-links-bench
target/release/picket-links-bench --blocks "$blocks" --seconds "$seconds" --clients "$clients" --bin-dir target/release
