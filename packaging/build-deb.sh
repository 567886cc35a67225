#!/usr/bin/env bash
# Build .deb packages for the agent and the coordinator into target/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo build --release --locked -p picket-agent -p picket-linkwrap -p picket-coordinator
cargo deb --no-build -p picket-agent
cargo deb --no-build -p picket-coordinator
ls -l target/debian/
