#!/usr/bin/env bash
# Mail host figures (issue 15): a real Dovecot (Debian's packages; root) with
# MAILBOXES mailboxes of MESSAGES messages each, filled over LMTP; search and
# soft delete / undo of a CLUSTER-per-mailbox cluster, beside doveadm's CLI.
#   bench/run-mail.sh [MAILBOXES] [MESSAGES] [CLUSTER]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p picket-bench --bin picket-mail-bench
target/release/picket-mail-bench --mailboxes "${1:-1000}" --messages "${2:-100}" --cluster "${3:-10}"
