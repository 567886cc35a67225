#!/usr/bin/env bash
# Retakes the console screenshots the README shows: the browser test signs
# in, works the console in headless Chromium and saves each page here.
# Needs Debian's chromium and chromium-driver (as the tests do).
set -euo pipefail
cd "$(dirname "$0")/../.."
PICKET_SCREENSHOTS="$PWD/docs/console" cargo nextest run -p picket-e2e --test console_browser --locked
ls -l docs/console/*.png
